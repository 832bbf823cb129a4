// JVM stub of LiteRT 1.0.1's GPU delegate API (com.google.ai.edge.litert:litert-gpu-api,
// org.tensorflow.lite.gpu), from its published Java API: only what GpuDelegate() needs.
package org.tensorflow.lite.gpu;

public class GpuDelegateFactory {
    public static class Options {
        public Options() {}
    }
}
