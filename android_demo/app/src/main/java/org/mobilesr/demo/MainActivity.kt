package org.mobilesr.demo

import android.Manifest
import android.content.ContentValues
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.graphics.drawable.BitmapDrawable
import android.media.MediaScannerConnection
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.os.Environment
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
import androidx.core.content.ContextCompat
import androidx.lifecycle.lifecycleScope
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.ensureActive
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File
import java.util.concurrent.Executors

/**
 * Pick a photo, upscale it tiled with the selected bundled model, compare with bicubic (slider and a
 * zoomed crop side by side), see latency per tile and in total, save the result to the gallery.
 * Every failure (no models, a missing or corrupt model, an image too big for memory, a cancelled
 * pick) ends up as a line in the status text, never as a crash.
 *
 * Models run on one engine thread ([engineThread]): the cached engine and its GPU delegate are built,
 * run and closed there (the LiteRT GPU delegate must run on the thread that created it, and two
 * upscales must never share an interpreter at once). Views are only read on the main thread.
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
    private var photoUri: Uri? = null
    private var photoScale = 0 // the model scale [photo] was decoded for: its size cap depends on it
    private var result: Bitmap? = null
    private var job: Job? = null
    private val engineThread = Executors.newSingleThreadExecutor { Thread(it, "sr-engine") }
    private val engineDispatcher = engineThread.asCoroutineDispatcher()
    private val engines = EngineCache() // used on engineThread only

    // API 28 (minSdk) writes to shared storage only with WRITE_EXTERNAL_STORAGE, a runtime permission.
    private val askWrite = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) save() else status.text = "Saving needs the storage permission on Android 9."
    }

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
        gpu = CheckBox(this).apply {
            text = "GPU delegate (LiteRT)"
            setOnCheckedChangeListener { _, _ -> photo?.let { upscale(it) } }
        }
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
                // Another scale needs another size cap: decode the photo again rather than upscale an x2-sized
                // photo at x4 (4x the pixels: out of memory, or a bitmap too large to draw).
                val uri = photoUri ?: return
                val scale = index.models.getOrNull(position)?.scale ?: return
                if (scale != photoScale) load(uri) else photo?.let { upscale(it) }
            }
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
    }

    /** Decode the photo small enough that its output at the selected model's scale fits in memory (Tiler.fitInput). */
    private fun load(uri: Uri) {
        val scale = index.models.getOrNull(modelSpinner.selectedItemPosition)?.scale ?: 2
        photoUri = uri
        lifecycleScope.launch {
            try {
                val bmp = withContext(Dispatchers.IO) {
                    val source = ImageDecoder.createSource(contentResolver, uri)
                    ImageDecoder.decodeBitmap(source) { decoder, info, _ ->
                        decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE // getPixels needs a software bitmap
                        val (w, h) = Tiler.fitInput(info.size.width, info.size.height, scale)
                        if (w != info.size.width || h != info.size.height) decoder.setTargetSize(w, h)
                    }
                }
                photo = bmp
                photoScale = scale
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
        val backend = if (gpu.isChecked) "gpu" else "xnnpack" // views are read on the main thread only
        val threads = Runtime.getRuntime().availableProcessors()
        job = lifecycleScope.launch {
            try {
                val (sr, bicubic, timing) = withContext(engineDispatcher) {
                    val file = modelFile(entry.file)
                    require(!entry.sidecar.contains('/')) { "bad sidecar name ${entry.sidecar}" }
                    val spec = ModelSpec.fromSidecar(assets.open("${ModelIndex.DIR}/${entry.sidecar}").bufferedReader().use { it.readText() })
                    val engine = engines.get(file, spec, backend, threads)
                    val (out, t) = Tiler.upscale(src, engine) { !isActive }
                    ensureActive()
                    Triple(out, Tiler.bicubic(src, engine.spec.scale), t)
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

    /**
     * A centre crop of both results, magnified without smoothing so the pixels can be compared. The
     * drawable's own filtering is off too: BitmapDrawable filters by default, and the ImageView scales it
     * again to the view's width.
     */
    private fun showZoom(bicubic: Bitmap, sr: Bitmap) {
        val side = minOf(ZOOM_CROP, sr.width, sr.height)
        val x = (sr.width - side) / 2
        val y = (sr.height - side) / 2
        fun crop(b: Bitmap) = BitmapDrawable(resources, Bitmap.createScaledBitmap(Bitmap.createBitmap(b, x, y, side, side), side * 3, side * 3, false))
            .apply { isFilterBitmap = false }
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
        if (Build.VERSION.SDK_INT < 29 &&
            ContextCompat.checkSelfPermission(this, Manifest.permission.WRITE_EXTERNAL_STORAGE) != PackageManager.PERMISSION_GRANTED
        ) {
            askWrite.launch(Manifest.permission.WRITE_EXTERNAL_STORAGE) // calls save() again when granted
            return
        }
        lifecycleScope.launch {
            val saved = withContext(Dispatchers.IO) { runCatching { writeToGallery(bmp) } }
            status.text = saved.fold({ "Saved to $it." }, { "Saving failed: ${it.message}" })
        }
    }

    /**
     * Writes a PNG to Pictures/mobile-sr and says where. API 29+: MediaStore with RELATIVE_PATH (no
     * permission). API 28 has no RELATIVE_PATH: the file is written there directly (WRITE_EXTERNAL_STORAGE,
     * asked for by [save]) and handed to the media scanner so the gallery lists it.
     */
    private fun writeToGallery(bmp: Bitmap): String {
        val name = "mobile-sr-${System.currentTimeMillis()}.png"
        if (Build.VERSION.SDK_INT < 29) {
            @Suppress("DEPRECATION")
            val dir = File(Environment.getExternalStoragePublicDirectory(Environment.DIRECTORY_PICTURES), "mobile-sr")
            check(dir.isDirectory || dir.mkdirs()) { "cannot create $dir" }
            val file = File(dir, name)
            file.outputStream().use { check(bmp.compress(Bitmap.CompressFormat.PNG, 100, it)) { "writing the image failed" } }
            MediaScannerConnection.scanFile(this, arrayOf(file.path), arrayOf("image/png"), null)
            return file.path
        }
        val values = ContentValues().apply {
            put(MediaStore.Images.Media.DISPLAY_NAME, name)
            put(MediaStore.Images.Media.MIME_TYPE, "image/png")
            put(MediaStore.Images.Media.RELATIVE_PATH, "${Environment.DIRECTORY_PICTURES}/mobile-sr")
        }
        val uri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values)
            ?: error("the gallery refused the image")
        try {
            contentResolver.openOutputStream(uri).use { out ->
                check(out != null && bmp.compress(Bitmap.CompressFormat.PNG, 100, out)) { "writing the image failed" }
            }
        } catch (e: Exception) {
            contentResolver.delete(uri, null, null) // no empty entry left in the gallery
            throw e
        }
        return "${Environment.DIRECTORY_PICTURES}/mobile-sr"
    }

    override fun onDestroy() {
        super.onDestroy()
        engineThread.execute { engines.close() } // after any tile still running there
        engineThread.shutdown()
    }

    companion object {
        private const val ZOOM_CROP = 96
    }
}
