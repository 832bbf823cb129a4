// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.content;

import android.content.pm.PackageManager;
import java.io.File;

public abstract class Context {
    public static final String POWER_SERVICE = "power";

    public abstract PackageManager getPackageManager();

    public abstract String getPackageName();

    public abstract Object getSystemService(String name);

    public abstract File getFilesDir();
}
