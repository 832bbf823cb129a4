// Runs the Android app's pure logic on a desktop JVM, for tests/test_android_jvm.py: compiled together with
// the app's non-UI sources against the stubs in stubs/, it prints what the app computes as JSON on stdout,
// and the test compares that with the Python implementation on the same inputs. Not part of the APK.
package org.mobilesr.demo

import android.graphics.Bitmap
import org.json.JSONArray
import org.json.JSONObject
import java.io.File

fun main(args: Array<String>) {
    val out: Any = when (args.firstOrNull()) {
        "stats" -> stats(JSONArray(System.`in`.bufferedReader().readText()))
        "tiles" -> tiles(args.drop(1).map { it.toInt() })
        "bicubic" -> bicubic(args[1].toInt(), args[2].toInt(), args[3].toInt())
        "fit" -> Tiler.fitInput(args[1].toInt(), args[2].toInt(), args[3].toInt()).let { JSONArray().put(it.first).put(it.second) }
        "oversize" -> oversize()
        "sidecar" -> spec(ModelSpec.fromSidecar(File(args[1]).readText()))
        "for-file" -> spec(ModelSpec.forFile(File(args[1])))
        "index" -> index(ModelIndex.parse(File(args[1]).readText()))
        "bench" -> bench(File(args[1]), args[2])
        "cache" -> cache(File(args[1]))
        else -> error("usage: JvmCheck stats|tiles|bicubic|fit|oversize|sidecar|for-file|index|bench|cache ...")
    }
    println(out.toString())
}

/** Stats.of for every sample list of [lists]. */
private fun stats(lists: JSONArray): JSONArray {
    val out = JSONArray()
    for (i in 0 until lists.length()) {
        val a = lists.getJSONArray(i)
        val s = Stats.of(List(a.length()) { a.getDouble(it) })
        out.put(JSONObject().put("avg", s.avg).put("trimmean", s.trimmean).put("median", s.median).put("p90", s.p90).put("min", s.min))
    }
    return out
}

/**
 * A fake model of input [h] x [w] at scale [s] whose output says where it read: HR pixel (Y, X) gets red
 * from LR (Y/s + reach, X/s), green from (Y/s, X/s + reach), both clamped to the input, and blue = the
 * call's index / 255. After tiling, every output pixel names its source pixel and its tile.
 */
private class Probe(override val spec: ModelSpec, private val reach: Int) : SrEngine {
    override val runtime = "probe"
    var calls = 0

    override fun run(hwc: FloatArray): FloatArray {
        val h = spec.input.height
        val w = spec.input.width
        val s = spec.scale
        require(hwc.size == h * w * 3) { "tile of ${hwc.size / 3} pixels, model input is ${h}x$w" }
        val out = FloatArray(h * s * w * s * 3)
        for (yy in 0 until h * s) for (xx in 0 until w * s) {
            val y = yy / s
            val x = xx / s
            val o = (yy * w * s + xx) * 3
            out[o] = hwc[(minOf(y + reach, h - 1) * w + x) * 3]
            out[o + 1] = hwc[(y * w + minOf(x + reach, w - 1)) * 3 + 1]
            out[o + 2] = calls / 255f
        }
        calls++
        return out
    }

    override fun close() = Unit
}

private fun probeSpec(inH: Int, inW: Int, s: Int): ModelSpec = ModelSpec(
    file = "probe.tflite", format = "tflite", precision = "fp32", modelName = "probe", scale = s,
    input = TensorSpec(intArrayOf(1, inH, inW, 3), "NHWC", "float32", null),
    output = TensorSpec(intArrayOf(1, inH * s, inW * s, 3), "NHWC", "float32", null),
    verified = false, set5PsnrDb = null,
)

/** Tiler.upscale of a [w] x [h] image whose pixel (y, x) is (y, x, 0) through a Probe: the output's RGB bytes. */
private fun tiles(a: List<Int>): JSONObject {
    val (w, h, inH, inW, s, reach) = a
    val lr = IntArray(w * h) { (0xff shl 24) or ((it / w) shl 16) or ((it % w) shl 8) }
    val engine = Probe(probeSpec(inH, inW, s), reach)
    val (sr, timing) = Tiler.upscale(Bitmap.createBitmap(lr, w, h, Bitmap.Config.ARGB_8888), engine)
    val px = IntArray(sr.width * sr.height).also { sr.getPixels(it, 0, sr.width, 0, 0, sr.width, sr.height) }
    val rgb = StringBuilder()
    for (p in px) rgb.append((p shr 16) and 0xff).append(',').append((p shr 8) and 0xff).append(',').append(p and 0xff).append(',')
    return JSONObject().put("overlap", Tiler.OVERLAP).put("width", sr.width).put("height", sr.height)
        .put("calls", engine.calls).put("timed_tiles", timing.tileMs.size)
        .put("rgb", JSONArray("[" + rgb.trimEnd(',') + "]"))
}

private operator fun <T> List<T>.component6(): T = this[5]

/** Channel [c] of pixel (y, x) of the bicubic test image: busy (neighbours differ a lot), so padding shows. */
private fun testPixel(y: Int, x: Int, c: Int): Int = (x * 73 + y * 151 + c * 89 + x * y * 7) % 256

/** Tiler.bicubic of the [w] x [h] test image at [s]: the output's RGB bytes. */
private fun bicubic(w: Int, h: Int, s: Int): JSONArray {
    val lr = IntArray(w * h) { (0xff shl 24) or (testPixel(it / w, it % w, 0) shl 16) or (testPixel(it / w, it % w, 1) shl 8) or testPixel(it / w, it % w, 2) }
    val sr = Tiler.bicubic(Bitmap.createBitmap(lr, w, h, Bitmap.Config.ARGB_8888), s)
    val px = IntArray(sr.width * sr.height).also { sr.getPixels(it, 0, sr.width, 0, 0, sr.width, sr.height) }
    val out = JSONArray()
    for (p in px) out.put((p shr 16) and 0xff).put((p shr 8) and 0xff).put(p and 0xff)
    return out
}

/** An image whose output would pass the 16 MP cap must be refused before anything is allocated for it. */
private fun oversize(): JSONObject {
    val w = 1001
    val h = 1000
    val engine = Probe(probeSpec(64, 64, 4), 0)
    val message = try {
        Tiler.upscale(Bitmap.createBitmap(IntArray(w * h), w, h, Bitmap.Config.ARGB_8888), engine)
        null
    } catch (e: IllegalArgumentException) {
        e.message
    }
    return JSONObject().put("refused", message ?: JSONObject.NULL).put("calls", engine.calls)
}

private fun tensor(t: TensorSpec): JSONObject = JSONObject()
    .put("shape", JSONArray(t.shape.toList())).put("layout", t.layout).put("dtype", t.dtype)
    .put("height", t.height).put("width", t.width)
    .put("quant", t.quant?.let { JSONObject().put("scale", it.scale.toDouble()).put("zero_point", it.zeroPoint) } ?: JSONObject.NULL)

private fun spec(m: ModelSpec): JSONObject = JSONObject()
    .put("file", m.file).put("format", m.format).put("precision", m.precision)
    .put("name", m.modelName ?: JSONObject.NULL).put("scale", m.scale)
    .put("input", tensor(m.input)).put("output", tensor(m.output))
    .put("verified", m.verified).put("set5_psnr_db", m.set5PsnrDb ?: JSONObject.NULL)

private fun index(ix: ModelIndex): JSONObject {
    val models = JSONArray()
    for (e in ix.models) {
        models.put(JSONObject().put("name", e.name).put("file", e.file).put("sidecar", e.sidecar).put("backend", e.backend)
            .put("format", e.format).put("precision", e.precision).put("scale", e.scale)
            .put("input_size", JSONArray().put(e.inputSize.first).put(e.inputSize.second))
            .put("output_size", JSONArray().put(e.outputSize.first).put(e.outputSize.second))
            .put("verified", e.verified).put("set5_psnr_db", e.set5PsnrDb ?: JSONObject.NULL).put("label", e.label))
    }
    return JSONObject().put("default", ix.defaultName ?: JSONObject.NULL).put("models", models)
}

/** BenchmarkActivity's document for one run, with a fixed device (Build and PSS are the phone's). */
private fun bench(model: File, backend: String): JSONObject {
    val run = Benchmark.measure(model, backend, threads = 2, warmup = 1, runs = 3, pss = { 0L })
    val device = DeviceInfo("jvm", "stub", "x86_64", "15", 35, "jvm", Runtime.getRuntime().availableProcessors())
    return BenchmarkResults.document("org.mobilesr.demo jvm-check", BenchmarkResults.device(device, null, null), run)
}

/** EngineCache with a counting factory: which calls build, reuse or close an engine. */
private fun cache(file: File): JSONArray {
    val events = JSONArray()
    var built = 0
    val cache = EngineCache { _, spec, backend, _ ->
        val id = ++built
        events.put("build $id $backend")
        object : SrEngine {
            override val spec = spec
            override val runtime = backend
            override fun run(hwc: FloatArray) = hwc
            override fun close() {
                events.put("close $id")
            }
        }
    }
    val spec = probeSpec(32, 32, 2)
    for (backend in listOf("xnnpack", "xnnpack", "gpu", "gpu", "xnnpack")) events.put("use ${cache.get(file, spec, backend, 4).runtime}")
    cache.close()
    events.put("closed")
    return events
}
