// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.os;

public final class PowerManager {
    private PowerManager() {}

    public int getCurrentThermalStatus() { throw new RuntimeException("Stub!"); } // API 29
}
