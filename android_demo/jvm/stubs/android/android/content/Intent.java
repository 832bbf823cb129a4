// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.content;

import android.os.Bundle;

public class Intent {
    public Bundle getExtras() { throw new RuntimeException("Stub!"); }
}
