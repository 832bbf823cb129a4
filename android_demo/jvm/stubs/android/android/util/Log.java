// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.util;

public final class Log {
    private Log() {}

    public static int e(String tag, String msg, Throwable tr) { throw new RuntimeException("Stub!"); }
}
