package org.mobilesr.demo

import android.content.res.AssetManager
import org.json.JSONObject

/** One row of models.json (mobile_sr/models.schema.json), written by `mobile-sr bundle`. */
data class IndexEntry(
    val name: String,
    val file: String,
    val sidecar: String,
    val backend: String,
    val format: String,
    val precision: String,
    val scale: Int,
    val inputSize: Pair<Int, Int>,
    val outputSize: Pair<Int, Int>,
    val verified: Boolean,
    val set5PsnrDb: Double?,
) {
    /** What the model list shows: name, backend and the verified PSNR, so an unverified model stands out. */
    val label: String
        get() = "$name ($backend, $precision, x$scale, " +
            (set5PsnrDb?.let { "Set5 %.2f dB".format(it) } ?: if (verified) "verified" else "unverified") + ")"
}

/** The bundled model list and the default model; empty when nothing was bundled yet. */
data class ModelIndex(val defaultName: String?, val models: List<IndexEntry>) {
    companion object {
        const val DIR = "models"
        private const val SCHEMA_VERSION = 1

        fun load(assets: AssetManager): ModelIndex {
            val text = try {
                assets.open("$DIR/models.json").bufferedReader().use { it.readText() }
            } catch (e: java.io.IOException) {
                return ModelIndex(null, emptyList())
            }
            return parse(text)
        }

        /** Throws IllegalArgumentException with a one-line reason for a corrupt index. */
        fun parse(text: String): ModelIndex {
            try {
                val doc = JSONObject(text)
                val version = doc.getInt("schema_version")
                require(version == SCHEMA_VERSION) { "models.json schema_version $version, this app reads $SCHEMA_VERSION" }
                val rows = doc.getJSONArray("models")
                val models = (0 until rows.length()).map { i ->
                    val m = rows.getJSONObject(i)
                    val inSize = m.getJSONArray("input_size")
                    val outSize = m.getJSONArray("output_size")
                    IndexEntry(
                        name = m.getString("name"),
                        file = m.getString("file"),
                        sidecar = m.getString("sidecar"),
                        backend = m.getString("backend"),
                        format = m.getString("format"),
                        precision = m.getString("precision"),
                        scale = m.getInt("scale"),
                        inputSize = inSize.getInt(0) to inSize.getInt(1),
                        outputSize = outSize.getInt(0) to outSize.getInt(1),
                        verified = m.getBoolean("verified"),
                        set5PsnrDb = if (m.isNull("set5_psnr_db")) null else m.getDouble("set5_psnr_db"),
                    )
                }
                val default = if (doc.isNull("default")) null else doc.getString("default")
                return ModelIndex(default, models)
            } catch (e: org.json.JSONException) {
                throw IllegalArgumentException("models.json is corrupt: ${e.message}")
            }
        }
    }
}
