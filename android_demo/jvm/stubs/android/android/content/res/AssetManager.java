// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.content.res;

import java.io.IOException;
import java.io.InputStream;

public final class AssetManager {
    private AssetManager() {}

    public InputStream open(String fileName) throws IOException { throw new RuntimeException("Stub!"); }
}
