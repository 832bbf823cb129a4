package org.mobilesr.demo

import android.content.ContentValues
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.graphics.drawable.BitmapDrawable
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.provider.MediaStore
import android.view.ViewGroup.LayoutParams.MATCH_PARENT
import android.view.ViewGroup.LayoutParams.WRAP_CONTENT
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.CheckBox
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.SeekBar
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.lifecycleScope
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.ensureActive
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File

/**
 * Pick a photo, upscale it tiled with the selected bundled model, compare with bicubic (slider and a
 * zoomed crop side by side), see latency per tile and in total, save the result to the gallery.
 * Every failure (no models, a missing or corrupt model, an image too big for memory, a cancelled
 * pick) ends up as a line in the status text, never as a crash.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var status: TextView
    private lateinit var compare: CompareView
    private lateinit var zoomBicubic: ImageView
    private lateinit var zoomModel: ImageView
    private lateinit var modelSpinner: Spinner
    private lateinit var gpu: CheckBox
    private var index = ModelIndex(null, emptyList())
    private var photo: Bitmap? = null
    private var result: Bitmap? = null
    private var job: Job? = null

    private val pick = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri: Uri? ->
        if (uri == null) {
            status.text = "No photo picked."
        } else {
            load(uri)
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        status = TextView(this)
        compare = CompareView(this)
        zoomBicubic = zoomView()
        zoomModel = zoomView()
        modelSpinner = Spinner(this)
        gpu = CheckBox(this).apply { text = "GPU delegate (LiteRT)" }
        val pickButton = Button(this).apply {
            text = "Pick photo"
            setOnClickListener { pick.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) }
        }
        val saveButton = Button(this).apply { text = "Save to gallery"; setOnClickListener { save() } }
        val slider = SeekBar(this).apply {
            max = 100
            progress = 50
            setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
                override fun onProgressChanged(bar: SeekBar, value: Int, fromUser: Boolean) {
                    compare.split = value / 100f
                }
                override fun onStartTrackingTouch(bar: SeekBar) = Unit
                override fun onStopTrackingTouch(bar: SeekBar) = Unit
            })
        }
        val zooms = LinearLayout(this).apply {
            orientation = LinearLayout.HORIZONTAL
            addView(zoomBicubic, LinearLayout.LayoutParams(0, WRAP_CONTENT, 1f))
            addView(zoomModel, LinearLayout.LayoutParams(0, WRAP_CONTENT, 1f))
        }
        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(24, 24, 24, 24)
            for (v in listOf(modelSpinner, gpu, pickButton, status, compare, slider, zooms, saveButton)) {
                addView(v, LinearLayout.LayoutParams(MATCH_PARENT, WRAP_CONTENT))
            }
        }
        setContentView(ScrollView(this).apply { addView(column) })
        loadIndex()
    }

    private fun zoomView() = ImageView(this).apply {
        adjustViewBounds = true
        scaleType = ImageView.ScaleType.FIT_CENTER
    }

    private fun loadIndex() {
        index = try {
            ModelIndex.load(assets)
        } catch (e: IllegalArgumentException) {
            status.text = e.message
            return
        }
        if (index.models.isEmpty()) {
            status.text = "No models bundled: run `mobile-sr bundle ARTIFACT --app android`, then rebuild."
            return
        }
        modelSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, index.models.map { it.label })
        modelSpinner.setSelection(index.models.indexOfFirst { it.name == index.defaultName }.coerceAtLeast(0))
        modelSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: android.view.View?, position: Int, id: Long) {
                photo?.let { upscale(it) }
            }
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
    }

    /** Decode at most [MAX_OUTPUT_PIXELS] / scale² input pixels, so the output bitmap fits in memory. */
    private fun load(uri: Uri) {
        val entry = index.models.getOrNull(modelSpinner.selectedItemPosition)
        val maxIn = MAX_OUTPUT_PIXELS / ((entry?.scale ?: 2) * (entry?.scale ?: 2))
        lifecycleScope.launch {
            try {
                val bmp = withContext(Dispatchers.IO) {
                    val source = ImageDecoder.createSource(contentResolver, uri)
                    ImageDecoder.decodeBitmap(source) { decoder, info, _ ->
                        decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE // getPixels needs a software bitmap
                        val px = info.size.width.toLong() * info.size.height
                        if (px > maxIn) {
                            val k = Math.sqrt(maxIn.toDouble() / px)
                            decoder.setTargetSize((info.size.width * k).toInt().coerceAtLeast(1), (info.size.height * k).toInt().coerceAtLeast(1))
                        }
                    }
                }
                photo = bmp
                upscale(bmp)
            } catch (e: OutOfMemoryError) {
                status.text = "That photo does not fit in memory; try a smaller one."
            } catch (e: Exception) {
                status.text = "Cannot read that photo: ${e.message}"
            }
        }
    }

    private fun upscale(src: Bitmap) {
        val entry = index.models.getOrNull(modelSpinner.selectedItemPosition) ?: run {
            status.text = "No model selected."
            return
        }
        job?.cancel()
        status.text = "Upscaling ${src.width}×${src.height} with ${entry.name}…"
        job = lifecycleScope.launch {
            try {
                val (sr, bicubic, timing) = withContext(Dispatchers.Default) {
                    val file = modelFile(entry.file)
                    require(!entry.sidecar.contains('/')) { "bad sidecar name ${entry.sidecar}" }
                    val spec = ModelSpec.fromSidecar(assets.open("${ModelIndex.DIR}/${entry.sidecar}").bufferedReader().use { it.readText() })
                    SrEngine.create(file, spec, if (gpu.isChecked) "gpu" else "xnnpack", Runtime.getRuntime().availableProcessors()).use { engine ->
                        val (out, t) = Tiler.upscale(src, engine) { !isActive }
                        ensureActive()
                        Triple(out, Tiler.bicubic(src, engine.spec.scale), t)
                    }
                }
                result = sr
                compare.before = bicubic
                compare.after = sr
                showZoom(bicubic, sr)
                val perTile = if (timing.tileMs.isEmpty()) 0.0 else timing.tileMs.average()
                status.text = "%s: %d tiles, %.1f ms per tile (min %.1f), %.0f ms total, %d×%d".format(
                    entry.name, timing.tileMs.size, perTile, timing.tileMs.minOrNull() ?: 0.0, timing.totalMs, sr.width, sr.height)
            } catch (e: CancellationException) {
                throw e
            } catch (e: OutOfMemoryError) {
                status.text = "Out of memory upscaling this photo; pick a smaller one."
            } catch (e: Exception) {
                status.text = "Cannot run ${entry.file}: ${e.message}"
            }
        }
    }

    /** A centre crop of both results, magnified without smoothing so the pixels can be compared. */
    private fun showZoom(bicubic: Bitmap, sr: Bitmap) {
        val side = minOf(ZOOM_CROP, sr.width, sr.height)
        val x = (sr.width - side) / 2
        val y = (sr.height - side) / 2
        fun crop(b: Bitmap) = BitmapDrawable(resources, Bitmap.createScaledBitmap(Bitmap.createBitmap(b, x, y, side, side), side * 3, side * 3, false))
        zoomBicubic.setImageDrawable(crop(bicubic))
        zoomModel.setImageDrawable(crop(sr))
    }

    /** LiteRT memory-maps a file and ExecuTorch loads a path: copy the asset out once (and again if it changed size). */
    private fun modelFile(name: String): File {
        require(!name.contains('/') && name != ".." && name != ".") { "bad model file name $name" }
        val dst = File(File(filesDir, ModelIndex.DIR).apply { mkdirs() }, name)
        val size = assets.openFd("${ModelIndex.DIR}/$name").use { it.length }
        if (!dst.isFile || dst.length() != size) {
            val tmp = File(dst.path + ".tmp")
            assets.open("${ModelIndex.DIR}/$name").use { input -> tmp.outputStream().use { input.copyTo(it) } }
            check(tmp.renameTo(dst)) { "cannot write ${dst.name}" }
        }
        return dst
    }

    private fun save() {
        val bmp = result ?: run { status.text = "Nothing to save yet."; return }
        lifecycleScope.launch {
            val saved = withContext(Dispatchers.IO) {
                runCatching {
                    val values = ContentValues().apply {
                        put(MediaStore.Images.Media.DISPLAY_NAME, "mobile-sr-${System.currentTimeMillis()}.png")
                        put(MediaStore.Images.Media.MIME_TYPE, "image/png")
                        if (Build.VERSION.SDK_INT >= 29) put(MediaStore.Images.Media.RELATIVE_PATH, "Pictures/mobile-sr")
                    }
                    val uri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values)
                        ?: error("the gallery refused the image")
                    contentResolver.openOutputStream(uri).use { out ->
                        check(out != null && bmp.compress(Bitmap.CompressFormat.PNG, 100, out)) { "writing the image failed" }
                    }
                    uri
                }
            }
            status.text = saved.fold({ "Saved to Pictures/mobile-sr." }, { "Saving failed: ${it.message}" })
        }
    }

    companion object {
        private const val MAX_OUTPUT_PIXELS = 16_000_000L
        private const val ZOOM_CROP = 96
    }
}
