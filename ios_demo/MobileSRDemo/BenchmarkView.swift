import CoreML
import SwiftUI

/// Compute units the benchmark can ask Core ML for.
enum Units: String, CaseIterable, Identifiable {
    case cpu = "CPU"
    case gpu = "CPU + GPU"
    case ane = "CPU + Neural Engine"
    case all = "All"

    var id: String { rawValue }

    var computeUnits: MLComputeUnits {
        switch self {
        case .cpu: return .cpuOnly
        case .gpu: return .cpuAndGPU
        case .ane: return .cpuAndNeuralEngine
        case .all: return .all
        }
    }
}

/// Runs warm-up + N timed predictions of one model at its real input size on the chosen compute units,
/// shows the figures and exports them as a results JSON (mobile_sr/bench/results.schema.json keys).
struct BenchmarkView: View {
    @State private var models: [IndexEntry] = []
    @State private var selected: IndexEntry?
    @State private var units = Units.all
    @State private var warmup = 5
    @State private var runs = 50
    @State private var running = false
    @State private var summary = ""
    @State private var exported: URL?

    var body: some View {
        NavigationStack {
            Form {
                Picker("Model", selection: $selected) {
                    ForEach(models) { Text($0.label).tag(Optional($0)) }
                }
                Picker("Compute units", selection: $units) {
                    ForEach(Units.allCases) { Text($0.rawValue).tag($0) }
                }
                Stepper("Warm-up: \(warmup)", value: $warmup, in: 0...50)
                Stepper("Runs: \(runs)", value: $runs, in: 1...500, step: 10)
                Button(running ? "Running…" : "Run") { start() }.disabled(running || selected == nil)
                if !summary.isEmpty {
                    Text(summary).font(.footnote.monospaced())
                }
                if let exported {
                    ShareLink("Export results JSON", item: exported)
                }
            }
            .navigationTitle("Benchmark")
        }
        .task {
            let index = try? ModelIndex.load()
            models = index?.models.filter { $0.format == "coreml" } ?? []
            selected = models.first { $0.name == index?.defaultName } ?? models.first
        }
    }

    private func start() {
        guard let entry = selected else { return }
        running = true
        exported = nil
        let (units, warmup, runs) = (self.units, self.warmup, self.runs)
        Task.detached(priority: .userInitiated) {
            let thermalStart = ResultsDocument.Thermal.now()
            let result = await Benchmark.measure(entry, units: units, warmup: warmup, runs: runs)
            let doc = ResultsDocument(
                tool: "org.mobilesr.demo \(Bundle.main.infoDictionary?["CFBundleShortVersionString"] as? String ?? "1.0")",
                created: ISO8601DateFormatter().string(from: Date()),
                device: .current(thermalStart: thermalStart, thermalEnd: .now()),
                bicubic: [ResultsDocument.Bicubic(scale: entry.scale, inputSize: entry.inputSize)],
                results: [result])
            let url = try? doc.write()
            let text: String
            if let error = result.error {
                text = "failed: \(error)"
            } else {
                let s = Stats(result.samples)
                text = String(format: "load %.1f ms, first %.2f ms\nmedian %.2f ms, p90 %.2f ms, min %.2f ms\ntrimmean %.2f ms",
                              result.loadMs ?? 0, result.firstMs ?? 0, s.median, s.p90, s.min, s.trimmean)
            }
            await MainActor.run {
                summary = text
                exported = url
                running = false
            }
        }
    }
}

/// The measuring loop, outside the view on purpose: a SwiftUI View is main-actor isolated (Xcode 16 SDK), so
/// a static method of BenchmarkView would run on the main thread, freezing the UI and timing the main
/// thread's other work too. A non-isolated async function runs on the concurrent executor instead.
enum Benchmark {
    static func measure(_ entry: IndexEntry, units: Units, warmup: Int, runs: Int) async -> ResultsDocument.Result {
        var loadMs: Double?
        var firstMs: Double?
        var samples: [Double] = []
        var failure: String?
        var loadStatus: Int? = 1
        do {
            let engine = try await SREngine(entry: entry, computeUnits: units.computeUnits)
            loadMs = engine.loadMs
            loadStatus = 0
            let t = engine.sidecar.inputs[0]
            let input = (0..<(t.height * t.width * 3)).map { Float($0 * 37 % 256) / 255 }
            for i in 0..<(warmup + runs) {
                let start = DispatchTime.now()
                _ = try engine.run(input)
                let ms = SREngine.ms(since: start)
                if i == 0 { firstMs = ms }
                if i >= warmup { samples.append(ms) }
            }
        } catch {
            failure = error.localizedDescription.components(separatedBy: .newlines).first ?? "failed"
            samples = []
        }
        return ResultsDocument.Result(
            artifact: entry.file, model: entry.name, scale: entry.scale, format: entry.format, precision: entry.precision,
            runtime: "Core ML (\(units.rawValue))", inputSize: entry.inputSize, outputSize: entry.outputSize,
            threads: ProcessInfo.processInfo.activeProcessorCount, warmup: warmup, runs: runs, error: failure,
            loadStatus: loadStatus, loadMs: loadMs, firstMs: firstMs, samples: samples)
    }
}
