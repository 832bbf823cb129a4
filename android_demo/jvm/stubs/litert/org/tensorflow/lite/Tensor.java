// JVM stub of LiteRT 1.0.1 (com.google.ai.edge.litert:litert, package org.tensorflow.lite), from its
// published Java API (the TensorFlow Lite Java API it ships, as in google-ai-edge/LiteRT tflite/java).
// Only the members the app calls; bodies throw, as the native runtime is not here.
package org.tensorflow.lite;

public interface Tensor {
    class QuantizationParams {
        private final float scale;
        private final int zeroPoint;

        public QuantizationParams(final float scale, final int zeroPoint) {
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }

        public float getScale() { return scale; }

        public int getZeroPoint() { return zeroPoint; }
    }

    DataType dataType();

    int numBytes();

    int[] shape();

    QuantizationParams quantizationParams();
}
