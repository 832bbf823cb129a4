// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.content.pm;

public abstract class PackageManager {
    public static class NameNotFoundException extends Exception {
        public NameNotFoundException() {}
    }

    public abstract PackageInfo getPackageInfo(String packageName, int flags) throws NameNotFoundException;
}
