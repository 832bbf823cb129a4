package org.mobilesr.demo

import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import kotlin.math.roundToInt

/**
 * One super-resolution model at its fixed input size. [run] takes and returns RGB in [0, 1], HWC,
 * whatever the model's own layout and dtype are: the conversion lives here, once per backend.
 */
interface SrEngine : AutoCloseable {
    val spec: ModelSpec
    val runtime: String
    fun run(hwc: FloatArray): FloatArray

    companion object {
        /**
         * The engine the sidecar's format asks for. [backend] is "xnnpack" or "gpu" (LiteRT only);
         * throws IllegalArgumentException for a format or backend this app cannot run, and whatever the
         * runtime throws for a missing or corrupt file (callers turn that into a message, never a crash).
         */
        fun create(file: File, spec: ModelSpec, backend: String, threads: Int): SrEngine {
            require(file.isFile && file.length() > 0) { "model file ${file.name} is missing or empty" }
            return when (spec.format) {
                "tflite" -> {
                    require(backend == "xnnpack" || backend == "gpu") { "LiteRT backend $backend is not in this app (xnnpack, gpu)" }
                    LiteRtEngine(file, spec, threads, backend == "gpu")
                }
                "executorch" -> {
                    require(backend == "xnnpack") { "ExecuTorch backend $backend is not in this app (xnnpack)" }
                    ExecuTorchEngine(file, spec)
                }
                else -> throw IllegalArgumentException("the Android app cannot run ${spec.format} models")
            }
        }
    }
}

/** Index of (y, x, c) in a tensor of the given layout, batch 1. */
private fun index(t: TensorSpec, y: Int, x: Int, c: Int): Int =
    if (t.layout == "NHWC") (y * t.width + x) * 3 + c else (c * t.height + y) * t.width + x

class LiteRtEngine(file: File, spec: ModelSpec, threads: Int, useGpu: Boolean) : SrEngine {
    private val gpu: GpuDelegate? = if (useGpu) GpuDelegate() else null
    private val interpreter: Interpreter
    override val spec: ModelSpec
    override val runtime = "LiteRT (" + (if (useGpu) "GPU" else "XNNPACK") + ")"
    private val inBuf: ByteBuffer
    private val outBuf: ByteBuffer

    init {
        val options = Interpreter.Options().setNumThreads(threads)
        if (gpu != null) options.addDelegate(gpu) else options.setUseXNNPACK(true)
        val mapped = FileInputStream(file).channel.use { it.map(FileChannel.MapMode.READ_ONLY, 0, it.size()) }
        interpreter = try {
            Interpreter(mapped, options)
        } catch (e: Exception) {
            gpu?.close()
            throw IllegalStateException("LiteRT cannot load ${file.name}: ${e.message}")
        }
        // The interpreter's tensors are the truth for dtype and quantization (a name-only spec guessed float).
        spec = spec.copy(input = fromRuntime(spec.input, 0, true), output = fromRuntime(spec.output, 0, false))
        inBuf = ByteBuffer.allocateDirect(interpreter.getInputTensor(0).numBytes()).order(ByteOrder.nativeOrder())
        outBuf = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder())
    }

    private fun fromRuntime(t: TensorSpec, i: Int, input: Boolean): TensorSpec {
        val tensor = if (input) interpreter.getInputTensor(i) else interpreter.getOutputTensor(i)
        val dtype = when (tensor.dataType()) {
            DataType.INT8 -> "int8"
            DataType.UINT8 -> "uint8"
            else -> "float32"
        }
        val q = tensor.quantizationParams()
        return t.copy(shape = tensor.shape(), dtype = dtype, quant = if (dtype == "float32") null else Quant(q.scale, q.zeroPoint))
    }

    override fun run(hwc: FloatArray): FloatArray {
        val t = spec.input
        inBuf.rewind()
        val n = t.height * t.width * 3
        val values = FloatArray(n)
        for (y in 0 until t.height) for (x in 0 until t.width) for (c in 0 until 3) {
            values[index(t, y, x, c)] = hwc[(y * t.width + x) * 3 + c]
        }
        for (v in values) {
            when (t.dtype) {
                "int8" -> inBuf.put((v / t.quant!!.scale + t.quant.zeroPoint).roundToInt().coerceIn(-128, 127).toByte())
                "uint8" -> inBuf.put((v / t.quant!!.scale + t.quant.zeroPoint).roundToInt().coerceIn(0, 255).toByte())
                else -> inBuf.putFloat(v)
            }
        }
        inBuf.rewind()
        outBuf.rewind()
        interpreter.run(inBuf, outBuf)
        outBuf.rewind()
        val o = spec.output
        val raw = FloatArray(o.height * o.width * 3) {
            when (o.dtype) {
                "int8" -> o.quant!!.scale * (outBuf.get().toInt() - o.quant.zeroPoint)
                "uint8" -> o.quant!!.scale * ((outBuf.get().toInt() and 0xff) - o.quant.zeroPoint)
                else -> outBuf.getFloat()
            }
        }
        return toHwc(raw, o)
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
    }
}

class ExecuTorchEngine(file: File, override val spec: ModelSpec) : SrEngine {
    // ExecuTorch's XNNPACK uses its own thread pool (one thread per performance core); the 0.6 Java API
    // has no per-module thread count, so the benchmark reports the requested count as given.
    private val module: Module = Module.load(file.absolutePath)
    override val runtime = "ExecuTorch (XNNPACK)"

    /** 0 when the method loaded: the ExecuTorch benchmark app's load_status. */
    val loadStatus: Int = module.loadMethod("forward")

    init {
        if (loadStatus != 0) {
            module.destroy()
            throw IllegalStateException("ExecuTorch cannot load ${file.name} (load_status $loadStatus)")
        }
    }

    override fun run(hwc: FloatArray): FloatArray {
        val t = spec.input
        val values = FloatArray(t.height * t.width * 3)
        for (y in 0 until t.height) for (x in 0 until t.width) for (c in 0 until 3) {
            values[index(t, y, x, c)] = hwc[(y * t.width + x) * 3 + c]
        }
        val shape = LongArray(t.shape.size) { t.shape[it].toLong() }
        val out = module.forward(EValue.from(Tensor.fromBlob(values, shape)))[0].toTensor().dataAsFloatArray
        return toHwc(out, spec.output)
    }

    override fun close() = module.destroy()
}

/** A model output in its own layout, as HWC RGB. */
private fun toHwc(raw: FloatArray, o: TensorSpec): FloatArray {
    if (o.layout == "NHWC") return raw
    val out = FloatArray(raw.size)
    for (y in 0 until o.height) for (x in 0 until o.width) for (c in 0 until 3) {
        out[(y * o.width + x) * 3 + c] = raw[index(o, y, x, c)]
    }
    return out
}
