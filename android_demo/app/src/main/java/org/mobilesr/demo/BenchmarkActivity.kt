package org.mobilesr.demo

import android.app.Activity
import android.os.Bundle
import android.os.Debug
import android.util.Log
import android.widget.TextView
import java.io.File
import kotlin.concurrent.thread

/**
 * The benchmark contract `mobile-sr bench --runner app` drives (README, "The demo app's benchmark contract"):
 *
 *     adb shell am start -W -S -n org.mobilesr.demo/.BenchmarkActivity \
 *         --es model /data/local/tmp/mobile_sr/<artifact> --es backend xnnpack \
 *         --ei threads 4 --ei warmup 5 --ei runs 50 --es output mobile_sr_results.json
 *
 * Loads the model (timed), runs warmup + runs inferences at the model's real input size, writes
 * <files dir>/<output>.tmp and renames it to <output>, then finishes. Every failure (missing or corrupt
 * model, unsupported backend, out of memory) is written as the same document with status "failed".
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this).apply { text = "benchmarking…" }
        setContentView(text)
        val extras = intent.extras ?: Bundle()
        val model = extras.getString("model") ?: ""
        val backend = extras.getString("backend") ?: "xnnpack"
        val threads = extras.getInt("threads", 4).coerceAtLeast(1)
        val warmup = extras.getInt("warmup", 5).coerceAtLeast(0)
        val runs = extras.getInt("runs", 50).coerceAtLeast(1)
        val output = extras.getString("output") ?: "mobile_sr_results.json"
        thread(name = "benchmark") {
            val message = try {
                val thermalStart = BenchmarkResults.thermal(this)
                val run = measure(File(model), backend, threads, warmup, runs)
                write(output, run, thermalStart)
                run.error ?: "ok: median %.2f ms".format(Stats.of(run.samples).median)
            } catch (e: Throwable) {
                Log.e(TAG, "benchmark failed", e)
                "failed: ${e.message}"
            }
            runOnUiThread {
                text.text = message
                finish()
            }
        }
    }

    private fun measure(file: File, backend: String, threads: Int, warmup: Int, runs: Int): BenchRun {
        var spec: ModelSpec? = null
        var runtime: String? = null
        var loadStatus: Int? = null
        var loadMs: Double? = null
        var firstMs: Double? = null
        val samples = ArrayList<Double>(runs)
        val pss0 = Debug.getPss()
        val error = try {
            val loaded = ModelSpec.forFile(file)
            spec = loaded
            val t0 = System.nanoTime()
            SrEngine.create(file, loaded, backend, threads).use { engine ->
                loadMs = (System.nanoTime() - t0) / 1e6
                loadStatus = 0
                runtime = engine.runtime
                spec = engine.spec
                val input = FloatArray(engine.spec.input.height * engine.spec.input.width * 3) { (it * 37 % 256) / 255f }
                for (i in 0 until warmup + runs) {
                    val r0 = System.nanoTime()
                    engine.run(input)
                    val ms = (System.nanoTime() - r0) / 1e6
                    if (i == 0) firstMs = ms
                    if (i >= warmup) samples += ms
                }
            }
            null
        } catch (e: OutOfMemoryError) {
            "out of memory: ${e.message}"
        } catch (e: Exception) {
            if (loadMs == null) loadStatus = 1
            "${e.javaClass.simpleName}: ${e.message}"
        }
        val pssMb = (Debug.getPss() - pss0) / 1024.0
        return BenchRun(file.name, spec, runtime, threads, warmup, runs, error, loadStatus, loadMs, firstMs,
            if (error == null) samples else emptyList(), if (error == null) pssMb else null)
    }

    /** Write then rename, so `run-as … cat` never sees half a file; the name must stay in the files dir. */
    private fun write(output: String, run: BenchRun, thermalStart: org.json.JSONObject?) {
        require(output.isNotEmpty() && !output.contains('/') && output != "." && output != "..") { "bad output name $output" }
        val doc = BenchmarkResults.document(this, run, thermalStart, BenchmarkResults.thermal(this))
        val tmp = File(filesDir, "$output.tmp")
        tmp.writeText(doc.toString(2))
        check(tmp.renameTo(File(filesDir, output))) { "cannot rename ${tmp.name}" }
    }

    companion object {
        private const val TAG = "mobile-sr-bench"
    }
}
