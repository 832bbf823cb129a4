// JVM stub of LiteRT 1.0.1 (com.google.ai.edge.litert:litert, package org.tensorflow.lite), from its
// published Java API (the TensorFlow Lite Java API it ships, as in google-ai-edge/LiteRT tflite/java).
// Only the members the app calls; bodies throw, as the native runtime is not here.
// On the platform Interpreter extends InterpreterImpl (run, getInputTensor, getOutputTensor, close);
// the stub flattens that hierarchy.
package org.tensorflow.lite;

import java.nio.ByteBuffer;

public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options() {}

        public Options setNumThreads(int numThreads) { throw new RuntimeException("Stub!"); }

        public Options setUseXNNPACK(boolean useXNNPACK) { throw new RuntimeException("Stub!"); }

        public Options addDelegate(Delegate delegate) { throw new RuntimeException("Stub!"); }
    }

    public Interpreter(ByteBuffer byteBuffer, Options options) { throw new RuntimeException("Stub!"); }

    public void run(Object input, Object output) { throw new RuntimeException("Stub!"); }

    public Tensor getInputTensor(int inputIndex) { throw new RuntimeException("Stub!"); }

    public Tensor getOutputTensor(int outputIndex) { throw new RuntimeException("Stub!"); }

    @Override
    public void close() { throw new RuntimeException("Stub!"); }
}
