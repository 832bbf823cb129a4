package org.mobilesr.demo

import android.graphics.Bitmap
import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.roundToInt
import kotlin.math.sqrt

/** Timing of one tiled upscale: every tile's model time and the total wall time (ms). */
data class TileTiming(val tileMs: List<Double>, val totalMs: Double)

/**
 * One tile of a tiled upscale, in LR pixels (end exclusive): the core [top, bottom) x [left, right) that
 * it pastes, and the region [t0, t1) x [l0, l1) around it that the model sees (the core plus up to
 * OVERLAP pixels of context each side, cut at the image edge, then edge-padded to the model's input).
 */
data class Tile(val top: Int, val left: Int, val bottom: Int, val right: Int, val t0: Int, val l0: Int, val t1: Int, val l1: Int)

/**
 * Upscaling a photo of any size with a model of fixed input size, exactly as `mobile_sr.inference` does on
 * the host (`upscale_tiled` over `at_fixed_size`, core `fixed_tile`), so the Set5 PSNR `mobile-sr bench`
 * reports is that of this code: square cores of min(h, w) - 2 * OVERLAP pixels, each run with OVERLAP
 * pixels of context on every side, so seams never see padding. tests/test_android_jvm.py compares the two.
 */
object Tiler {
    /** LR pixels of context around each core: mobile_sr.inference.OVERLAP. */
    const val OVERLAP = 8

    /** Output size cap: a 16 MP ARGB bitmap is 64 MB, under Android's 100 MB draw limit and iOS's memory. */
    const val MAX_OUTPUT_PIXELS = 16_000_000L

    /** Core side that leaves [overlap] of context inside an [inH] x [inW] input (mobile_sr.inference.fixed_tile). */
    fun core(inH: Int, inW: Int, overlap: Int = OVERLAP): Int = minOf(inH, inW) - 2 * overlap

    /** The tiles of a [width] x [height] image, row by row, for a model of input [inH] x [inW]. */
    fun plan(width: Int, height: Int, inH: Int, inW: Int, overlap: Int = OVERLAP): List<Tile> {
        val tile = core(inH, inW, overlap)
        require(width > 0 && height > 0) { "empty image ${width}x$height" }
        require(tile >= 1) { "a ${inH}x$inW model input leaves no core inside $overlap pixels of context" }
        if (height <= tile && width <= tile) return listOf(Tile(0, 0, height, width, 0, 0, height, width))
        val out = ArrayList<Tile>()
        for (top in 0 until height step tile) for (left in 0 until width step tile) {
            val bottom = minOf(top + tile, height)
            val right = minOf(left + tile, width)
            out += Tile(top, left, bottom, right, maxOf(top - overlap, 0), maxOf(left - overlap, 0),
                minOf(bottom + overlap, height), minOf(right + overlap, width))
        }
        return out
    }

    /**
     * The largest size with the photo's aspect ratio whose output at [scale] stays within
     * [maxOutputPixels]: what to decode a [width] x [height] photo to before upscaling it.
     */
    fun fitInput(width: Int, height: Int, scale: Int, maxOutputPixels: Long = MAX_OUTPUT_PIXELS): Pair<Int, Int> {
        require(width > 0 && height > 0 && scale > 0) { "bad size ${width}x$height at x$scale" }
        val maxIn = maxOutputPixels / (scale.toLong() * scale)
        require(maxIn >= 1) { "x$scale leaves no pixel under $maxOutputPixels" }
        val px = width.toLong() * height
        if (px <= maxIn) return width to height
        val k = sqrt(maxIn.toDouble() / px)
        // A side rounded up to one pixel (a panorama thousands of times wider than tall) caps the other one.
        val w = minOf((width * k).toLong().coerceIn(1, width.toLong()), maxIn)
        val h = minOf((height * k).toLong().coerceIn(1, height.toLong()), maxIn / w)
        return minOf(w, maxIn / h).toInt() to h.toInt()
    }

    fun upscale(src: Bitmap, engine: SrEngine, isCancelled: () -> Boolean = { false }): Pair<Bitmap, TileTiming> {
        val spec = engine.spec
        val th = spec.input.height
        val tw = spec.input.width
        val s = spec.scale
        val w = src.width
        val h = src.height
        // A photo decoded for a smaller scale must not reach here: the output bitmap would not fit in memory.
        require(w.toLong() * h * s * s <= MAX_OUTPUT_PIXELS) {
            "a ${w}x$h photo at x$s is over ${MAX_OUTPUT_PIXELS / 1_000_000} MP; decode it smaller"
        }
        val pixels = IntArray(w * h).also { src.getPixels(it, 0, w, 0, 0, w, h) }
        val out = IntArray(w * s * h * s)
        val tiles = plan(w, h, th, tw)
        val tileMs = ArrayList<Double>(tiles.size)
        val t0 = System.nanoTime()
        val input = FloatArray(th * tw * 3)
        val ow = tw * s
        for (t in tiles) {
            if (isCancelled()) throw java.util.concurrent.CancellationException("cancelled")
            // The region, edge-padded at its bottom and right to the model's input (at_fixed_size).
            for (y in 0 until th) for (x in 0 until tw) {
                val p = pixels[minOf(t.t0 + y, t.t1 - 1) * w + minOf(t.l0 + x, t.l1 - 1)]
                val i = (y * tw + x) * 3
                input[i] = ((p shr 16) and 0xff) / 255f
                input[i + 1] = ((p shr 8) and 0xff) / 255f
                input[i + 2] = (p and 0xff) / 255f
            }
            val r0 = System.nanoTime()
            val sr = engine.run(input)
            tileMs += (System.nanoTime() - r0) / 1e6
            for (oy in t.top * s until t.bottom * s) for (ox in t.left * s until t.right * s) {
                val i = ((oy - t.t0 * s) * ow + (ox - t.l0 * s)) * 3
                out[oy * w * s + ox] = argb(sr[i], sr[i + 1], sr[i + 2])
            }
        }
        val total = (System.nanoTime() - t0) / 1e6
        return Bitmap.createBitmap(out, w * s, h * s, Bitmap.Config.ARGB_8888) to TileTiming(tileMs, total)
    }

    private fun argb(r: Float, g: Float, b: Float): Int {
        fun c(v: Float) = (v * 255f).roundToInt().coerceIn(0, 255)
        return (0xff shl 24) or (c(r) shl 16) or (c(g) shl 8) or c(b)
    }

    /**
     * Bicubic upscale by [s], as MATLAB's `imresize(img, s, 'bicubic')` and mobile_sr/data/imresize.py: Keys
     * a = -0.5, pixel-centre sampling, symmetric (mirror) padding. The baseline beside the model; the iOS app
     * computes the same (tests/test_android_jvm.py compares this one with the Python).
     */
    fun bicubic(src: Bitmap, s: Int): Bitmap {
        val w = src.width
        val h = src.height
        val inPx = IntArray(w * h).also { src.getPixels(it, 0, w, 0, 0, w, h) }
        val ow = w * s
        val oh = h * s
        val rows = Array(3) { FloatArray(ow * h) }
        for (y in 0 until h) for (ox in 0 until ow) {
            val fx = (ox + 0.5f) / s - 0.5f
            val x0 = floor(fx).toInt()
            val acc = FloatArray(3)
            for (k in -1..2) {
                val wt = keys(fx - (x0 + k))
                val p = inPx[y * w + mirror(x0 + k, w)]
                acc[0] += wt * ((p shr 16) and 0xff)
                acc[1] += wt * ((p shr 8) and 0xff)
                acc[2] += wt * (p and 0xff)
            }
            for (c in 0 until 3) rows[c][y * ow + ox] = acc[c]
        }
        val out = IntArray(ow * oh)
        for (oy in 0 until oh) {
            val fy = (oy + 0.5f) / s - 0.5f
            val y0 = floor(fy).toInt()
            for (ox in 0 until ow) {
                var r = 0f
                var g = 0f
                var b = 0f
                for (k in -1..2) {
                    val wt = keys(fy - (y0 + k))
                    val i = mirror(y0 + k, h) * ow + ox
                    r += wt * rows[0][i]
                    g += wt * rows[1][i]
                    b += wt * rows[2][i]
                }
                out[oy * ow + ox] = argb(r / 255f, g / 255f, b / 255f)
            }
        }
        return Bitmap.createBitmap(out, ow, oh, Bitmap.Config.ARGB_8888)
    }

    /** Index [i] mirrored into 0 until [n] (MATLAB's symmetric padding: -1 -> 0, -2 -> 1, n -> n - 1). */
    private fun mirror(i: Int, n: Int): Int {
        val m = ((i % (2 * n)) + 2 * n) % (2 * n)
        return if (m < n) m else 2 * n - 1 - m
    }

    private fun keys(t: Float): Float {
        val x = abs(t)
        val a = -0.5f
        return when {
            x <= 1f -> (a + 2) * x * x * x - (a + 3) * x * x + 1
            x < 2f -> a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a
            else -> 0f
        }
    }
}
