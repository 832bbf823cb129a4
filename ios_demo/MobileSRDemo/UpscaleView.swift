import CoreML
import PhotosUI
import SwiftUI

/// Pick a photo, upscale it tiled with the selected bundled model, compare with bicubic, save it.
/// Every failure (no models, a missing or corrupt model, a photo too big, a cancelled pick) is a status line.
struct UpscaleView: View {
    @State private var models: [IndexEntry] = []
    @State private var selected: IndexEntry?
    @State private var pickerItem: PhotosPickerItem?
    @State private var photo: CGImage?
    @State private var before: CGImage?
    @State private var after: CGImage?
    @State private var split = 0.5
    @State private var status = "Pick a photo."
    @State private var work: Task<Void, Never>?

    private static let maxOutputPixels = 16_000_000

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
                        Button("Save to Photos") {
                            UIImageWriteToSavedPhotosAlbum(UIImage(cgImage: after), nil, nil, nil)
                            status = "Saved to Photos."
                        }
                    }
                }
                .padding()
            }
            .navigationTitle("mobile-sr")
        }
        .task { loadIndex() }
        .onChange(of: pickerItem) { _, item in load(item) }
        .onChange(of: selected) { _, _ in if let photo { upscale(photo) } }
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
        let scale = selected?.scale ?? 2
        Task {
            do {
                guard let data = try await item.loadTransferable(type: Data.self) else {
                    status = "No photo picked."
                    return
                }
                let image = try SREngine.decode(data, maxPixels: UpscaleView.maxOutputPixels / (scale * scale))
                photo = image
                upscale(image)
            } catch {
                status = "Cannot read that photo: \(error.localizedDescription)"
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
                let bicubic = SREngine.bicubic(image, scale: engine.sidecar.model.scale)
                let perTile = timing.tileMs.isEmpty ? 0 : timing.tileMs.reduce(0, +) / Double(timing.tileMs.count)
                let line = String(format: "%@: %d tiles, %.1f ms per tile, %.0f ms total (load %.0f ms), %d×%d",
                                  entry.name, timing.tileMs.count, perTile, timing.totalMs, engine.loadMs, out.width, out.height)
                await MainActor.run {
                    after = out
                    before = bicubic ?? out
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
