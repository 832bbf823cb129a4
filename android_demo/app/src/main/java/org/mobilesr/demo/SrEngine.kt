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
         * A runtime class or native library missing from the build (a LinkageError, which callers'
         * `catch (e: Exception)` would miss) becomes an IllegalStateException here.
         */
        fun create(file: File, spec: ModelSpec, backend: String, threads: Int): SrEngine {
            require(file.isFile && file.length() > 0) { "model file ${file.name} is missing or empty" }
            return try {
                build(file, spec, backend, threads)
            } catch (e: LinkageError) {
                throw IllegalStateException("the ${spec.format} runtime is not usable in this build: ${e.javaClass.simpleName}: ${e.message}", e)
            }
        }

        private fun build(file: File, spec: ModelSpec, backend: String, threads: Int): SrEngine =
            when (spec.format) {
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

/** Index of (y, x, c) in a tensor of the given layout, batch 1. */
private fun index(t: TensorSpec, y: Int, x: Int, c: Int): Int =
    if (t.layout == "NHWC") (y * t.width + x) * 3 + c else (c * t.height + y) * t.width + x

class LiteRtEngine(file: File, sidecar: ModelSpec, threads: Int, useGpu: Boolean) : SrEngine {
    private val gpu: GpuDelegate? = if (useGpu) gpuDelegate() else null
    private val interpreter: Interpreter
    override val spec: ModelSpec
    override val runtime = "LiteRT (" + (if (useGpu) "GPU" else "XNNPACK") + ")"
    private val inBuf: ByteBuffer
    private val outBuf: ByteBuffer

    init {
        interpreter = try {
            val options = Interpreter.Options().setNumThreads(threads)
            if (gpu != null) options.addDelegate(gpu) else options.setUseXNNPACK(true)
            val mapped = FileInputStream(file).channel.use { it.map(FileChannel.MapMode.READ_ONLY, 0, it.size()) }
            Interpreter(mapped, options)
        } catch (e: Exception) {
            gpu?.close()
            throw IllegalStateException("LiteRT cannot load ${file.name}: ${e.message}", e)
        } catch (e: LinkageError) { // a missing native library or class is an Error, not an Exception
            gpu?.close()
            throw IllegalStateException("LiteRT cannot load ${file.name}: ${e.javaClass.simpleName}: ${e.message}", e)
        }
        // The interpreter's tensors are the truth for dtype and quantization (a name-only spec guessed float).
        spec = sidecar.copy(input = fromRuntime(sidecar.input, 0, true), output = fromRuntime(sidecar.output, 0, false))
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

    private companion object {
        /**
         * The GPU delegate, or an IllegalStateException saying why not. Why catch LinkageError:
         * `GpuDelegate()` needs `GpuDelegateFactory.Options` from the litert-gpu-api artifact and the
         * delegate's native library; either missing is a NoClassDefFoundError or UnsatisfiedLinkError,
         * which `catch (e: Exception)` in the callers would miss, killing the app or the benchmark.
         */
        fun gpuDelegate(): GpuDelegate = try {
            GpuDelegate()
        } catch (e: LinkageError) {
            throw IllegalStateException("the LiteRT GPU delegate is not in this build (${e.javaClass.simpleName}: ${e.message})", e)
        }
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

/**
 * Keeps one engine, and with it the GPU delegate, alive between upscales of the main screen: building an
 * interpreter (and compiling GPU kernels) for every photo costs far more than one tile. It is rebuilt
 * only when the model file, backend or thread count change. Not thread-safe: use it from one thread,
 * which the GPU delegate needs anyway (it must run on the thread that created it).
 */
class EngineCache(
    private val create: (File, ModelSpec, String, Int) -> SrEngine = SrEngine::create,
) : AutoCloseable {
    private data class Key(val path: String, val bytes: Long, val modified: Long, val backend: String, val threads: Int)

    private var key: Key? = null
    private var engine: SrEngine? = null

    fun get(file: File, spec: ModelSpec, backend: String, threads: Int): SrEngine {
        val wanted = Key(file.absolutePath, file.length(), file.lastModified(), backend, threads)
        val current = engine
        if (current != null && wanted == key) return current
        close()
        return create(file, spec, backend, threads).also {
            engine = it
            key = wanted
        }
    }

    override fun close() {
        val old = engine
        engine = null
        key = null
        old?.close()
    }
}
