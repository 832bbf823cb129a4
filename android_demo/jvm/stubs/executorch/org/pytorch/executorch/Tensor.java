// JVM stub of ExecuTorch 0.6.0 (org.pytorch:executorch-android, package org.pytorch.executorch), from its
// published Java API (pytorch/executorch v0.6.0, extension/android/executorch_android). Only the members
// the app calls; bodies throw, as the native runtime is not here.
package org.pytorch.executorch;

public abstract class Tensor {
    Tensor() {}

    public static Tensor fromBlob(float[] data, long[] shape) { throw new RuntimeException("Stub!"); }

    public float[] getDataAsFloatArray() { throw new RuntimeException("Stub!"); }
}
