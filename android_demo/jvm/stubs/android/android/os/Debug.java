// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.os;

public final class Debug {
    private Debug() {}

    public static long getPss() { throw new RuntimeException("Stub!"); }
}
