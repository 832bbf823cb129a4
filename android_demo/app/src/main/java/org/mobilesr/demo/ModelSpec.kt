package org.mobilesr.demo

import org.json.JSONArray
import org.json.JSONObject
import java.io.File

/** Real value = scale * (q - zeroPoint), as the sidecar's quantization block says. */
data class Quant(val scale: Float, val zeroPoint: Int)

/** One input or output tensor as the sidecar describes it. */
data class TensorSpec(
    val shape: IntArray,
    val layout: String,
    val dtype: String,
    val quant: Quant?,
) {
    val height: Int get() = if (layout == "NHWC") shape[1] else shape[2]
    val width: Int get() = if (layout == "NHWC") shape[2] else shape[3]
}

/**
 * Everything needed to feed a model and trust its output, read from its `<artifact>.json` sidecar
 * (mobile_sr/export/sidecar.schema.json). Why the sidecar and not the runtime: ExecuTorch does not
 * expose tensor layout or value range, and both apps must agree with `mobile-sr bench` on them.
 */
data class ModelSpec(
    val file: String,
    val format: String,
    val precision: String,
    val modelName: String?,
    val scale: Int,
    val input: TensorSpec,
    val output: TensorSpec,
    val verified: Boolean,
    val set5PsnrDb: Double?,
) {
    companion object {
        /** Parse a sidecar; throws IllegalArgumentException with a one-line reason when it is unusable. */
        fun fromSidecar(text: String): ModelSpec {
            val doc = try {
                JSONObject(text)
            } catch (e: org.json.JSONException) {
                throw IllegalArgumentException("sidecar is not JSON: ${e.message}")
            }
            try {
                val artifact = doc.getJSONObject("artifact")
                val model = doc.getJSONObject("model")
                val verification = doc.getJSONObject("verification")
                return ModelSpec(
                    file = artifact.getString("file"),
                    format = artifact.getString("format"),
                    precision = artifact.getString("precision"),
                    modelName = model.optString("name").ifEmpty { null },
                    scale = model.getInt("scale"),
                    input = tensor(doc.getJSONArray("inputs").getJSONObject(0)),
                    output = tensor(doc.getJSONArray("outputs").getJSONObject(0)),
                    verified = verification.getBoolean("verified"),
                    set5PsnrDb = if (verification.isNull("set5_psnr_db")) null else verification.getDouble("set5_psnr_db"),
                )
            } catch (e: org.json.JSONException) {
                throw IllegalArgumentException("sidecar is missing a field: ${e.message}")
            }
        }

        private fun tensor(t: JSONObject): TensorSpec {
            val shape: JSONArray = t.getJSONArray("shape")
            val q = t.optJSONObject("quantization")
            return TensorSpec(
                shape = IntArray(shape.length()) { shape.getInt(it) },
                layout = t.getString("layout"),
                dtype = t.getString("dtype"),
                quant = q?.let { Quant(it.getDouble("scale").toFloat(), it.getInt("zero_point")) },
            )
        }

        private val NAME = Regex("""^(.+)_x(\d+)_(\d+)x(\d+)_(fp32|fp16|int8|w8|int8io)\.(tflite|pte)$""")

        /**
         * The spec of a model that has no sidecar beside it (`mobile-sr bench` pushes the artifact alone),
         * from the name `mobile-sr export` gives it: `<model>_x<S>_<H>x<W>_<precision>.<ext>`. Float
         * RGB in [0, 1]; LiteRT NHWC, ExecuTorch NCHW. LiteRT then corrects dtype and quantization
         * from the interpreter's own tensors.
         */
        fun fromFileName(file: File): ModelSpec {
            val m = NAME.matchEntire(file.name)
                ?: throw IllegalArgumentException("${file.name}: no sidecar and not a `mobile-sr export` file name")
            val (name, s, h, w, precision, ext) = m.destructured
            val scale = s.toInt()
            val nhwc = ext == "tflite"
            fun shape(hh: Int, ww: Int) = if (nhwc) intArrayOf(1, hh, ww, 3) else intArrayOf(1, 3, hh, ww)
            val layout = if (nhwc) "NHWC" else "NCHW"
            return ModelSpec(
                file = file.name,
                format = if (nhwc) "tflite" else "executorch",
                precision = precision,
                modelName = name,
                scale = scale,
                input = TensorSpec(shape(h.toInt(), w.toInt()), layout, "float32", null),
                output = TensorSpec(shape(h.toInt() * scale, w.toInt() * scale), layout, "float32", null),
                verified = false,
                set5PsnrDb = null,
            )
        }

        /** The sidecar beside [file] if there is one, else the spec from its name. */
        fun forFile(file: File): ModelSpec {
            val side = File(file.path + ".json")
            return if (side.isFile) fromSidecar(side.readText()) else fromFileName(file)
        }
    }
}
