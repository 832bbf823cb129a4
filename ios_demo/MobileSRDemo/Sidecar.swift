import Foundation

/// The part of `<artifact>.json` (mobile_sr/export/sidecar.schema.json) the app needs to feed a model.
/// Why read it at all: Core ML's model description has names and shapes but not the value range or the
/// scale; the sidecar is the one description shared with `mobile-sr bench` and the Android app.
struct Sidecar: Codable {
    struct Artifact: Codable {
        let file: String
        let format: String
        let precision: String
        enum CodingKeys: String, CodingKey {
            case file, format, precision
        }
    }

    struct Model: Codable {
        let name: String
        let scale: Int
        enum CodingKeys: String, CodingKey {
            case name, scale
        }
    }

    struct Quantization: Codable {
        let scale: Double
        let zeroPoint: Int
        enum CodingKeys: String, CodingKey {
            case scale
            case zeroPoint = "zero_point"
        }
    }

    struct Tensor: Codable {
        let name: String
        let shape: [Int]
        let layout: String
        let dtype: String
        let quantization: Quantization?
        enum CodingKeys: String, CodingKey {
            case name, shape, layout, dtype, quantization
        }

        var height: Int { layout == "NHWC" ? shape[1] : shape[2] }
        var width: Int { layout == "NHWC" ? shape[2] : shape[3] }
    }

    struct Verification: Codable {
        let verified: Bool
        let set5PsnrDb: Double?
        enum CodingKeys: String, CodingKey {
            case verified
            case set5PsnrDb = "set5_psnr_db"
        }
    }

    let artifact: Artifact
    let model: Model
    let inputs: [Tensor]
    let outputs: [Tensor]
    let verification: Verification

    enum CodingKeys: String, CodingKey {
        case artifact, model, inputs, outputs, verification
    }

    static func load(_ url: URL) throws -> Sidecar {
        do {
            return try JSONDecoder().decode(Sidecar.self, from: Data(contentsOf: url))
        } catch {
            throw SRError.message("sidecar \(url.lastPathComponent) is unreadable: \(error.localizedDescription)")
        }
    }
}
