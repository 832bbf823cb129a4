package org.mobilesr.demo

import android.annotation.SuppressLint
import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Rect
import android.graphics.RectF
import android.view.MotionEvent
import android.view.View

/**
 * Before/after comparison: [before] (bicubic) left of the split line, [after] (the model) right of it.
 * Drag anywhere to move the split; both bitmaps have the same size and are drawn fitted to the view.
 */
class CompareView(context: Context) : View(context) {
    var before: Bitmap? = null
        set(value) { field = value; invalidate() }
    var after: Bitmap? = null
        set(value) { field = value; invalidate() }

    /** Split position, 0..1 of the image width. */
    var split = 0.5f
        set(value) { field = value.coerceIn(0f, 1f); invalidate() }

    private val line = Paint().apply { color = Color.WHITE; strokeWidth = 4f }
    private val label = Paint().apply { color = Color.WHITE; textSize = 36f; setShadowLayer(4f, 0f, 0f, Color.BLACK) }
    private val filter = Paint(Paint.FILTER_BITMAP_FLAG)

    private fun fitted(b: Bitmap): RectF {
        val k = minOf(width.toFloat() / b.width, height.toFloat() / b.height)
        val w = b.width * k
        val h = b.height * k
        return RectF((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val a = after ?: return
        val b = before ?: a
        val dst = fitted(a)
        val cut = (a.width * split).toInt()
        val xCut = dst.left + dst.width() * split
        canvas.drawBitmap(b, Rect(0, 0, cut, b.height), RectF(dst.left, dst.top, xCut, dst.bottom), filter)
        canvas.drawBitmap(a, Rect(cut, 0, a.width, a.height), RectF(xCut, dst.top, dst.right, dst.bottom), filter)
        canvas.drawLine(xCut, dst.top, xCut, dst.bottom, line)
        canvas.drawText("bicubic", dst.left + 12, dst.top + 44, label)
        canvas.drawText("model", dst.right - label.measureText("model") - 12, dst.top + 44, label)
    }

    @SuppressLint("ClickableViewAccessibility")
    override fun onTouchEvent(event: MotionEvent): Boolean {
        val a = after ?: return false
        val dst = fitted(a)
        if (event.action == MotionEvent.ACTION_DOWN || event.action == MotionEvent.ACTION_MOVE) {
            split = (event.x - dst.left) / dst.width()
            parent?.requestDisallowInterceptTouchEvent(true)
            return true
        }
        return event.action == MotionEvent.ACTION_UP
    }

    override fun onMeasure(widthMeasureSpec: Int, heightMeasureSpec: Int) {
        val w = MeasureSpec.getSize(widthMeasureSpec)
        setMeasuredDimension(w, w * 3 / 4)
    }
}
