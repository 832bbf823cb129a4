import CoreML
import Photos
import PhotosUI
import SwiftUI

/// Pick a photo, upscale it tiled with the selected bundled model, compare with bicubic, save it.
/// Every failure (no models, a missing or corrupt model, a photo too big, a cancelled pick) is a status line.
/// The view is main-actor isolated (SwiftUI `View`, Xcode 16 SDK): decoding and upscaling run in detached
/// tasks, and only their results come back to the main actor.
struct UpscaleView: View {
    @State private var models: [IndexEntry] = []
    @State private var selected: IndexEntry?
    @State private var pickerItem: PhotosPickerItem?
    @State private var photo: CGImage?
    @State private var picked: Data?  // the photo as picked: decoded again when the model's scale changes
    @State private var photoScale = 0  // the scale `photo` was decoded for; its size cap depends on it
    @State private var before: CGImage?
    @State private var after: CGImage?
    @State private var split = 0.5
    @State private var status = "Pick a photo."
    @State private var work: Task<Void, Never>?

    var body: some View {
        NavigationStack {
            ScrollView {
                VStack(alignment: .leading, spacing: 12) {
                    Picker("Model", selection: $selected) {
                        ForEach(models) { Text($0.label).tag(Optional($0)) }
                    }
                    PhotosPicker("Pick photo", selection: $pickerItem, matching: .images)
                    Text(status).font(.footnote).foregroundStyle(.secondary)
                    if let before, let after {
                        CompareView(before: before, after: after, split: $split)
                        Slider(value: $split, in: 0...1)
                        ZoomView(before: before, after: after)
                        Button("Save to Photos") { save(after) }
                    }
                }
                .padding()
            }
            .navigationTitle("mobile-sr")
        }
        .task { loadIndex() }
        .onChange(of: pickerItem) { _, item in load(item) }
        .onChange(of: selected) { _, entry in
            // Another scale needs another size cap: decode again rather than upscale an x2-sized photo at x4.
            guard let entry, let photo else { return }
            if entry.scale != photoScale, let picked { decode(picked) } else { upscale(photo) }
        }
    }

    private func loadIndex() {
        do {
            let index = try ModelIndex.load()
            models = index.models.filter { $0.format == "coreml" }
            selected = models.first { $0.name == index.defaultName } ?? models.first
            if models.isEmpty {
                status = "No models bundled: run `mobile-sr bundle ARTIFACT.mlpackage --app ios`, then rebuild."
            }
        } catch {
            status = "models.json is corrupt: \(error.localizedDescription)"
        }
    }

    private func load(_ item: PhotosPickerItem?) {
        guard let item else {
            status = "No photo picked."
            return
        }
        Task { @MainActor in
            do {
                guard let data = try await item.loadTransferable(type: Data.self) else {
                    status = "No photo picked."
                    return
                }
                picked = data
                decode(data)
            } catch {
                status = "Cannot read that photo: \(error.localizedDescription)"
            }
        }
    }

    /// Decode off the main actor, no larger than the selected model's scale allows, then upscale.
    private func decode(_ data: Data) {
        let scale = selected?.scale ?? 2
        status = "Reading the photo…"
        Task { @MainActor in
            do {
                let image = try await Task.detached(priority: .userInitiated) {
                    try SREngine.decode(data, maxPixels: SREngine.maxOutputPixels / (scale * scale))
                }.value
                photo = image
                photoScale = scale
                upscale(image)
            } catch {
                status = "Cannot read that photo: \(error.localizedDescription)"
            }
        }
    }

    /// PHPhotoLibrary rather than UIImageWriteToSavedPhotosAlbum(_, nil, nil, nil), which reports nothing:
    /// "Saved" is shown only when the write succeeded (Photos, iOS 17 SDK; add-only access).
    private func save(_ image: CGImage) {
        status = "Saving…"
        Task { @MainActor in
            let access = await PHPhotoLibrary.requestAuthorization(for: .addOnly)
            guard access == .authorized || access == .limited else {
                status = "Saving needs permission to add to Photos (Settings › Privacy › Photos)."
                return
            }
            do {
                try await PHPhotoLibrary.shared().performChanges {
                    _ = PHAssetChangeRequest.creationRequestForAsset(from: UIImage(cgImage: image))
                }
                status = "Saved to Photos."
            } catch {
                status = "Saving failed: \(error.localizedDescription)"
            }
        }
    }

    private func upscale(_ image: CGImage) {
        guard let entry = selected else {
            status = "No model selected."
            return
        }
        work?.cancel()
        status = "Upscaling \(image.width)×\(image.height) with \(entry.name)…"
        work = Task.detached(priority: .userInitiated) {
            do {
                let engine = try await SREngine(entry: entry, computeUnits: .all)
                let (out, timing) = try engine.upscale(image)
                let bicubic = try SREngine.bicubic(image, scale: engine.sidecar.model.scale)
                let perTile = timing.tileMs.isEmpty ? 0 : timing.tileMs.reduce(0, +) / Double(timing.tileMs.count)
                let line = String(format: "%@: %d tiles, %.1f ms per tile, %.0f ms total (load %.0f ms), %d×%d",
                                  entry.name, timing.tileMs.count, perTile, timing.totalMs, engine.loadMs, out.width, out.height)
                await MainActor.run {
                    after = out
                    before = bicubic
                    status = line
                }
            } catch is CancellationError {
                return
            } catch {
                await MainActor.run { status = "Cannot run \(entry.file): \(error.localizedDescription)" }
            }
        }
    }
}
