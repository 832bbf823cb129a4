// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
// Fields are assigned in a static block, as in android.jar, so the compiler cannot inline them.
package android.os;

public class Build {
    public static final String HARDWARE;
    public static final String MANUFACTURER;
    public static final String MODEL;
    public static final String SOC_MANUFACTURER; // API 31
    public static final String SOC_MODEL; // API 31
    public static final String[] SUPPORTED_ABIS;

    static {
        HARDWARE = "stub";
        MANUFACTURER = "stub";
        MODEL = "stub";
        SOC_MANUFACTURER = "stub";
        SOC_MODEL = "stub";
        SUPPORTED_ABIS = new String[0];
    }

    public static class VERSION {
        public static final String RELEASE;
        public static final int SDK_INT;

        static {
            RELEASE = "stub";
            SDK_INT = 0;
        }
    }
}
