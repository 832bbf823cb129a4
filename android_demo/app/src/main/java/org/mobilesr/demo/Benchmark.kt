package org.mobilesr.demo

import android.os.Debug
import java.io.File

/**
 * The measuring half of BenchmarkActivity, apart from the activity so it runs (and is tested) on the JVM:
 * load the model (timed), run warmup + runs inferences at its real input size, and say what failed.
 */
object Benchmark {
    /**
     * Never throws for a bad model, backend or build: every failure is the returned run's [BenchRun.error],
     * because `mobile-sr bench` needs a results document in every case. Why Throwable and not Exception:
     * a class or native library missing from the APK (the GPU delegate without litert-gpu-api) is a
     * LinkageError, and an uncaught one would leave no document at all. [pss] is the process PSS in kB.
     */
    fun measure(file: File, backend: String, threads: Int, warmup: Int, runs: Int, pss: () -> Long = { Debug.getPss() }): BenchRun {
        var spec: ModelSpec? = null
        var runtime: String? = null
        var loadStatus: Int? = null
        var loadMs: Double? = null
        var firstMs: Double? = null
        val samples = ArrayList<Double>(runs)
        val pss0 = pss()
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
        } catch (e: Throwable) {
            if (loadMs == null) loadStatus = 1
            "${e.javaClass.simpleName}: ${e.message}"
        }
        val pssMb = (pss() - pss0) / 1024.0
        return BenchRun(file.name, spec, runtime, threads, warmup, runs, error, loadStatus, loadMs, firstMs,
            if (error == null) samples else emptyList(), if (error == null) pssMb else null)
    }
}
