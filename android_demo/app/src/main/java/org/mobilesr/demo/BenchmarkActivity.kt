package org.mobilesr.demo

import android.app.Activity
import android.os.Bundle
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
                val run = Benchmark.measure(File(model), backend, threads, warmup, runs)
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

    /** Write then rename, so `run-as … cat` never sees half a file; the name must stay in the files dir. */
    private fun write(output: String, run: BenchRun, thermalStart: org.json.JSONObject?) {
        require(output.isNotEmpty() && !output.contains('/') && output != "." && output != "..") { "bad output name $output" }
        val doc = BenchmarkResults.document(BenchmarkResults.tool(this),
            BenchmarkResults.device(DeviceInfo.current(), thermalStart, BenchmarkResults.thermal(this)), run)
        val tmp = File(filesDir, "$output.tmp")
        tmp.writeText(doc.toString(2))
        check(tmp.renameTo(File(filesDir, output))) { "cannot rename ${tmp.name}" }
    }

    companion object {
        private const val TAG = "mobile-sr-bench"
    }
}
