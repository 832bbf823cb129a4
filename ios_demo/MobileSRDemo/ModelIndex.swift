import Foundation

/// One row of models.json (mobile_sr/models.schema.json), written by `mobile-sr bundle`.
struct IndexEntry: Codable, Identifiable, Hashable {
    let name: String
    let file: String
    let sidecar: String
    let backend: String
    let format: String
    let precision: String
    let scale: Int
    let inputSize: [Int]
    let outputSize: [Int]
    let verified: Bool
    let set5PsnrDb: Double?

    var id: String { name }

    /// What the picker shows: an unverified model stands out.
    var label: String {
        let quality = set5PsnrDb.map { String(format: "Set5 %.2f dB", $0) } ?? (verified ? "verified" : "unverified")
        return "\(name) (\(precision), x\(scale), \(quality))"
    }

    enum CodingKeys: String, CodingKey {
        case name, file, sidecar, backend, format, precision, scale
        case inputSize = "input_size"
        case outputSize = "output_size"
        case verified
        case set5PsnrDb = "set5_psnr_db"
    }
}

/// The bundled model list; empty when nothing was bundled yet.
struct ModelIndex: Codable {
    let schemaVersion: Int
    let defaultName: String?
    let models: [IndexEntry]

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case defaultName = "default"
        case models
    }

    static let folder = "Models"

    /// The app bundle's Models/models.json; a missing index is "no models", a corrupt one an error.
    static func load(bundle: Bundle = .main) throws -> ModelIndex {
        guard let url = bundle.url(forResource: "models", withExtension: "json", subdirectory: folder) else {
            return ModelIndex(schemaVersion: 1, defaultName: nil, models: [])
        }
        let index = try JSONDecoder().decode(ModelIndex.self, from: Data(contentsOf: url))
        guard index.schemaVersion == 1 else {
            throw SRError.message("models.json schema_version \(index.schemaVersion), this app reads 1")
        }
        return index
    }

    static func url(of file: String, bundle: Bundle = .main) throws -> URL {
        guard !file.contains("/"), file != "..", file != ".",
              let base = bundle.resourceURL?.appendingPathComponent(folder, isDirectory: true) else {
            throw SRError.message("bad model file name \(file)")
        }
        let url = base.appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw SRError.message("\(file) is not in the app bundle; run `mobile-sr bundle` and rebuild")
        }
        return url
    }
}

enum SRError: LocalizedError {
    case message(String)
    var errorDescription: String? {
        switch self {
        case .message(let text): return text
        }
    }
}
