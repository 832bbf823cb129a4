package org.mobilesr.demo

import android.graphics.Bitmap
import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.roundToInt

/** Timing of one tiled upscale: every tile's model time and the total wall time (ms). */
data class TileTiming(val tileMs: List<Double>, val totalMs: Double)

/**
 * Upscaling a photo of any size with a model of fixed input size: tiles of exactly that size, overlapping
 * by [overlap] LR pixels, each keeping only its centre (half the overlap is dropped at inner edges, where a
 * convolution sees padding). Edges are clamped, so an image smaller than one tile works too.
 */
object Tiler {
    /** Tile origins along one axis: step tile - overlap, the last one flush with the end. */
    fun starts(n: Int, tile: Int, overlap: Int): List<Int> {
        if (n <= tile) return listOf(0)
        val step = (tile - overlap).coerceAtLeast(1)
        val out = mutableListOf<Int>()
        var s = 0
        while (s < n - tile) {
            out += s
            s += step
        }
        out += n - tile
        return out
    }

    fun upscale(src: Bitmap, engine: SrEngine, overlap: Int = 8, isCancelled: () -> Boolean = { false }): Pair<Bitmap, TileTiming> {
        val spec = engine.spec
        val th = spec.input.height
        val tw = spec.input.width
        val s = spec.scale
        val w = src.width
        val h = src.height
        val pixels = IntArray(w * h).also { src.getPixels(it, 0, w, 0, 0, w, h) }
        val out = IntArray(w * s * h * s)
        val ov = overlap.coerceAtMost(minOf(th, tw) / 2)
        val xs = starts(w, tw, ov)
        val ys = starts(h, th, ov)
        val tileMs = ArrayList<Double>(xs.size * ys.size)
        val t0 = System.nanoTime()
        val tile = FloatArray(th * tw * 3)
        for (y0 in ys) for (x0 in xs) {
            if (isCancelled()) throw java.util.concurrent.CancellationException("cancelled")
            for (y in 0 until th) for (x in 0 until tw) {
                val p = pixels[minOf(y0 + y, h - 1) * w + minOf(x0 + x, w - 1)]
                val i = (y * tw + x) * 3
                tile[i] = ((p shr 16) and 0xff) / 255f
                tile[i + 1] = ((p shr 8) and 0xff) / 255f
                tile[i + 2] = (p and 0xff) / 255f
            }
            val r0 = System.nanoTime()
            val sr = engine.run(tile)
            tileMs += (System.nanoTime() - r0) / 1e6
            // Kept LR region of this tile: drop half the overlap at inner edges, never beyond the image.
            val kx0 = if (x0 == 0) 0 else x0 + ov / 2
            val ky0 = if (y0 == 0) 0 else y0 + ov / 2
            val kx1 = minOf(if (x0 == xs.last()) x0 + tw else x0 + tw - ov / 2, w)
            val ky1 = minOf(if (y0 == ys.last()) y0 + th else y0 + th - ov / 2, h)
            val ow = tw * s
            for (oy in ky0 * s until ky1 * s) for (ox in kx0 * s until kx1 * s) {
                val i = ((oy - y0 * s) * ow + (ox - x0 * s)) * 3
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

    /** Bicubic (Keys, a = -0.5, as MATLAB and PyTorch) upscale by [s]: the baseline beside the model. */
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
                val p = inPx[y * w + (x0 + k).coerceIn(0, w - 1)]
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
                    val i = (y0 + k).coerceIn(0, h - 1) * ow + ox
                    r += wt * rows[0][i]
                    g += wt * rows[1][i]
                    b += wt * rows[2][i]
                }
                out[oy * ow + ox] = argb(r / 255f, g / 255f, b / 255f)
            }
        }
        return Bitmap.createBitmap(out, ow, oh, Bitmap.Config.ARGB_8888)
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
