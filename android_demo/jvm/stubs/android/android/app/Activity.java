// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
// Activity extends ContextThemeWrapper -> ContextWrapper -> Context on the platform; the stub keeps
// only the Context members the app calls.
package android.app;

import android.content.Context;
import android.content.Intent;
import android.content.pm.PackageManager;
import android.os.Bundle;
import android.view.View;
import java.io.File;

public class Activity extends Context {
    public Activity() {}

    protected void onCreate(Bundle savedInstanceState) { throw new RuntimeException("Stub!"); }

    public void setContentView(View view) { throw new RuntimeException("Stub!"); }

    public Intent getIntent() { throw new RuntimeException("Stub!"); }

    public final void runOnUiThread(Runnable action) { throw new RuntimeException("Stub!"); }

    public void finish() { throw new RuntimeException("Stub!"); }

    @Override
    public PackageManager getPackageManager() { throw new RuntimeException("Stub!"); }

    @Override
    public String getPackageName() { throw new RuntimeException("Stub!"); }

    @Override
    public Object getSystemService(String name) { throw new RuntimeException("Stub!"); }

    @Override
    public File getFilesDir() { throw new RuntimeException("Stub!"); }
}
