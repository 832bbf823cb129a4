// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.os;

public final class Bundle {
    public Bundle() {}

    public String getString(String key) { throw new RuntimeException("Stub!"); }

    public int getInt(String key, int defaultValue) { throw new RuntimeException("Stub!"); }
}
