// JVM stub of ExecuTorch 0.6.0 (org.pytorch:executorch-android, package org.pytorch.executorch), from its
// published Java API (pytorch/executorch v0.6.0, extension/android/executorch_android). Only the members
// the app calls; bodies throw, as the native runtime is not here.
package org.pytorch.executorch;

public class Module {
    private Module() {}

    public static Module load(final String modelPath) { throw new RuntimeException("Stub!"); }

    public EValue[] forward(EValue... inputs) { throw new RuntimeException("Stub!"); }

    public int loadMethod(String methodName) { throw new RuntimeException("Stub!"); }

    public void destroy() { throw new RuntimeException("Stub!"); }
}
