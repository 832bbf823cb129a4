package org.mobilesr.demo

import android.content.Context
import android.os.Build
import android.os.PowerManager
import org.json.JSONArray
import org.json.JSONObject
import java.time.Instant
import java.time.temporal.ChronoUnit
import kotlin.math.floor

/** Latency samples summarised exactly as mobile_sr/bench/stats.py does (numpy median and linear p90). */
data class Stats(val avg: Double, val trimmean: Double, val median: Double, val p90: Double, val min: Double) {
    companion object {
        fun of(samples: List<Double>): Stats {
            val a = samples.sorted()
            val n = a.size
            val trimmed = a.subList(n / 10, n * 9 / 10).ifEmpty { a } // the ExecuTorch app's trimmean
            return Stats(a.average(), trimmed.average(), percentile(a, 50.0), percentile(a, 90.0), a.first())
        }

        private fun percentile(a: List<Double>, p: Double): Double {
            val rank = p / 100.0 * (a.size - 1)
            val lo = floor(rank).toInt()
            val hi = minOf(lo + 1, a.size - 1)
            return a[lo] + (a[hi] - a[lo]) * (rank - lo)
        }
    }
}

/** What one benchmark run measured; null where it was not reached (a failed load has no latencies). */
data class BenchRun(
    val artifact: String,
    val spec: ModelSpec?,
    val runtime: String?,
    val threads: Int,
    val warmup: Int,
    val runs: Int,
    val error: String?,
    val loadStatus: Int?,
    val loadMs: Double?,
    val firstMs: Double?,
    val samples: List<Double>,
    val pssMb: Double?,
)

/** The phone, as the results document's `device` describes it; [current] reads it from Build. */
data class DeviceInfo(
    val manufacturer: String,
    val model: String,
    val abi: String?,
    val release: String,
    val sdk: Int,
    val soc: String,
    val cpuCores: Int,
) {
    companion object {
        fun current(): DeviceInfo = DeviceInfo(
            manufacturer = Build.MANUFACTURER,
            model = Build.MODEL,
            abi = Build.SUPPORTED_ABIS.firstOrNull(),
            release = Build.VERSION.RELEASE,
            sdk = Build.VERSION.SDK_INT,
            soc = if (Build.VERSION.SDK_INT >= 31) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE,
            cpuCores = Runtime.getRuntime().availableProcessors(),
        )
    }
}

/**
 * The results document of mobile_sr/bench/results.schema.json, one entry in "results", runner "app".
 * Why every key is written, null included: the schema requires them all, and `mobile-sr bench` validates
 * the file before it trusts a number. Host-only figures (Set5 PSNR, GMAC/s, throughput, frames/s) are null here;
 * the host fills them in.
 */
object BenchmarkResults {
    /** [tool] names the app and its version; [device] is [device]'s object. */
    fun document(tool: String, device: JSONObject, run: BenchRun): JSONObject {
        val spec = run.spec
        val ok = run.error == null
        val stats = if (ok && run.samples.isNotEmpty()) Stats.of(run.samples) else null
        val scale = spec?.scale ?: 1
        val result = JSONObject()
            .put("artifact", run.artifact)
            .put("model", spec?.modelName ?: JSONObject.NULL)
            .put("scale", scale)
            .put("format", spec?.format ?: if (run.artifact.endsWith(".pte")) "executorch" else "tflite")
            .put("precision", spec?.precision ?: "fp32")
            .put("runtime", run.runtime ?: JSONObject.NULL)
            .put("runner", "app")
            .put("input_size", size(spec?.input))
            .put("output_size", size(spec?.output))
            .put("threads", run.threads)
            .put("warmup", run.warmup)
            .put("runs", run.runs)
            .put("status", if (ok) "ok" else "failed")
            .put("error", run.error?.lineSequence()?.first()?.take(300) ?: JSONObject.NULL)
            .put("load_status", run.loadStatus ?: JSONObject.NULL)
            .put("model_load_time(ms)", run.loadMs ?: JSONObject.NULL)
            .put("first_inference_latency(ms)", run.firstMs ?: JSONObject.NULL)
            .put("avg_inference_latency(ms)", stats?.avg ?: JSONObject.NULL)
            .put("trimmean_inference_latency(ms)", stats?.trimmean ?: JSONObject.NULL)
            .put("median_inference_latency(ms)", stats?.median ?: JSONObject.NULL)
            .put("p90_inference_latency(ms)", stats?.p90 ?: JSONObject.NULL)
            .put("min_inference_latency(ms)", stats?.min ?: JSONObject.NULL)
            .put("median_cpu_time(ms)", JSONObject.NULL)
            .put("latencies(ms)", JSONArray(run.samples))
            .put("throughput(mpix/s)", JSONObject.NULL)
            .put("frames_per_second", JSONObject.NULL)
            .put("peak_memory(mb)", JSONObject.NULL)
            .put("ram_pss_usage(mb)", run.pssMb ?: JSONObject.NULL)
            .put("set5_psnr(db)", JSONObject.NULL)
            .put("gmac_per_inference", JSONObject.NULL)
            .put("achieved(gmac/s)", JSONObject.NULL)
            .put("matmul_peak_ratio", JSONObject.NULL)
        val bicubic = JSONObject()
            .put("scale", scale)
            .put("input_size", size(spec?.input))
            .put("set5_psnr(db)", JSONObject.NULL)
            .put("median_inference_latency(ms)", JSONObject.NULL)
        return JSONObject()
            .put("schema_version", 1)
            .put("tool", tool)
            .put("created", Instant.now().truncatedTo(ChronoUnit.SECONDS).toString())
            .put("device", device)
            .put("matmul_peak(gmac/s)", JSONObject.NULL)
            .put("bicubic", JSONArray().put(bicubic))
            .put("results", JSONArray().put(result))
    }

    private fun size(t: TensorSpec?): JSONArray = JSONArray().put(t?.height ?: 1).put(t?.width ?: 1)

    /** "<package> <versionName>", as `mobile-sr bench` records the tool that measured. */
    fun tool(context: Context): String =
        "${context.packageName} ${context.packageManager.getPackageInfo(context.packageName, 0).versionName}"

    fun device(info: DeviceInfo, thermalStart: JSONObject?, thermalEnd: JSONObject?): JSONObject = JSONObject()
        .put("kind", "android")
        .put("serial", JSONObject.NULL) // the host knows the adb serial; reading it here needs a privileged permission
        .put("manufacturer", info.manufacturer)
        .put("model", info.model)
        .put("abi", info.abi ?: JSONObject.NULL)
        .put("os", "Android ${info.release}")
        .put("sdk", info.sdk)
        .put("soc", info.soc)
        .put("cpu_cores", info.cpuCores)
        .put("thermal_start", thermalStart ?: JSONObject.NULL)
        .put("thermal_end", thermalEnd ?: JSONObject.NULL)

    private val THERMAL_NAMES = listOf("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")

    /** PowerManager's thermal status (API 29+); null before that. No HAL temperature through public API. */
    fun thermal(context: Context): JSONObject? {
        if (Build.VERSION.SDK_INT < 29) return null
        val status = (context.getSystemService(Context.POWER_SERVICE) as PowerManager).currentThermalStatus
        return JSONObject()
            .put("status", status)
            .put("status_name", THERMAL_NAMES.getOrNull(status) ?: JSONObject.NULL)
            .put("max_cpu_c", JSONObject.NULL)
    }
}
