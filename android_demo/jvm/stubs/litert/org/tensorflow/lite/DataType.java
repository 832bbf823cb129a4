// JVM stub of LiteRT 1.0.1 (com.google.ai.edge.litert:litert, package org.tensorflow.lite), from its
// published Java API (the TensorFlow Lite Java API it ships, as in google-ai-edge/LiteRT tflite/java).
// Only the members the app calls; bodies throw, as the native runtime is not here.
package org.tensorflow.lite;

public enum DataType { FLOAT32, INT32, UINT8, INT64, STRING, BOOL, INT16, INT8 }
