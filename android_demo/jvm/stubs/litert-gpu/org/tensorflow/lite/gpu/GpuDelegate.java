// JVM stub of LiteRT 1.0.1's GPU delegate (com.google.ai.edge.litert:litert-gpu, org.tensorflow.lite.gpu),
// from its published Java API. As in the real class, the no-argument constructor builds a
// GpuDelegateFactory.Options, a class that ships in the separate litert-gpu-api artifact: without it
// on the classpath, new GpuDelegate() throws NoClassDefFoundError (see stubs/litert-gpu-api).
package org.tensorflow.lite.gpu;

import org.tensorflow.lite.Delegate;

public class GpuDelegate implements Delegate {
    public GpuDelegate(GpuDelegateFactory.Options options) { throw new RuntimeException("Stub!"); }

    public GpuDelegate() { this(new GpuDelegateFactory.Options()); }

    @Override
    public long getNativeHandle() { throw new RuntimeException("Stub!"); }

    @Override
    public void close() { throw new RuntimeException("Stub!"); }
}
