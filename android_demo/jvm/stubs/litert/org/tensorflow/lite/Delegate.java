// JVM stub of LiteRT 1.0.1 (com.google.ai.edge.litert:litert, package org.tensorflow.lite), from its
// published Java API (the TensorFlow Lite Java API it ships, as in google-ai-edge/LiteRT tflite/java).
// Only the members the app calls; bodies throw, as the native runtime is not here.
package org.tensorflow.lite;

import java.io.Closeable;

public interface Delegate extends Closeable {
    long getNativeHandle();

    @Override
    default void close() {}
}
