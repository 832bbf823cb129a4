// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
package android.view;

import android.content.Context;

public class View {
    public View(Context context) { throw new RuntimeException("Stub!"); }
}
