import Foundation
import UIKit

/// The results document of mobile_sr/bench/results.schema.json, written with the same keys as
/// `mobile-sr bench` and the Android BenchmarkActivity (ExecuTorch benchmark-app metric names).
/// Why explicit encode(to:): Swift's synthesized Codable drops nil optionals, and the schema requires
/// every key, with null for a figure this runner cannot measure.
struct ResultsDocument: Encodable {
    struct Thermal: Encodable {
        let status: Int
        let statusName: String?
        let maxCpuC: Double?
        enum CodingKeys: String, CodingKey {
            case status
            case statusName = "status_name"
            case maxCpuC = "max_cpu_c"
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(status, forKey: .status)
            try c.encode(statusName, forKey: .statusName)
            try c.encode(maxCpuC, forKey: .maxCpuC)
        }

        /// ProcessInfo's thermal state on the PowerManager scale: nominal 0, fair 1, serious 3, critical 4.
        static func now() -> Thermal {
            switch ProcessInfo.processInfo.thermalState {
            case .nominal: return Thermal(status: 0, statusName: "none", maxCpuC: nil)
            case .fair: return Thermal(status: 1, statusName: "light", maxCpuC: nil)
            case .serious: return Thermal(status: 3, statusName: "severe", maxCpuC: nil)
            case .critical: return Thermal(status: 4, statusName: "critical", maxCpuC: nil)
            @unknown default: return Thermal(status: 0, statusName: nil, maxCpuC: nil)
            }
        }
    }

    struct Device: Encodable {
        let kind: String
        let serial: String?
        let manufacturer: String?
        let model: String?
        let abi: String?
        let os: String?
        let sdk: Int?
        let soc: String?
        let cpuCores: Int?
        let thermalStart: Thermal?
        let thermalEnd: Thermal?
        enum CodingKeys: String, CodingKey {
            case kind, serial, manufacturer, model, abi, os, sdk, soc
            case cpuCores = "cpu_cores"
            case thermalStart = "thermal_start"
            case thermalEnd = "thermal_end"
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(kind, forKey: .kind)
            try c.encode(serial, forKey: .serial)
            try c.encode(manufacturer, forKey: .manufacturer)
            try c.encode(model, forKey: .model)
            try c.encode(abi, forKey: .abi)
            try c.encode(os, forKey: .os)
            try c.encode(sdk, forKey: .sdk)
            try c.encode(soc, forKey: .soc)
            try c.encode(cpuCores, forKey: .cpuCores)
            try c.encode(thermalStart, forKey: .thermalStart)
            try c.encode(thermalEnd, forKey: .thermalEnd)
        }

        /// This iPhone: the machine identifier (e.g. "iPhone16,1") as the model, since that names the SoC.
        static func current(thermalStart: Thermal, thermalEnd: Thermal) -> Device {
            var info = utsname()
            uname(&info)
            let machine = withUnsafeBytes(of: &info.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return Device(kind: "ios", serial: nil, manufacturer: "Apple", model: machine, abi: "arm64",
                          os: "\(UIDevice.current.systemName) \(UIDevice.current.systemVersion)", sdk: nil, soc: nil,
                          cpuCores: ProcessInfo.processInfo.activeProcessorCount, thermalStart: thermalStart, thermalEnd: thermalEnd)
        }
    }

    struct Bicubic: Encodable {
        let scale: Int
        let inputSize: [Int]
        enum CodingKeys: String, CodingKey {
            case scale
            case inputSize = "input_size"
            case set5Psnr = "set5_psnr(db)"
            case medianLatency = "median_inference_latency(ms)"
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(scale, forKey: .scale)
            try c.encode(inputSize, forKey: .inputSize)
            try c.encodeNil(forKey: .set5Psnr)  // host-only figures
            try c.encodeNil(forKey: .medianLatency)
        }
    }

    struct Result: Encodable {
        let artifact: String
        let model: String?
        let scale: Int
        let format: String
        let precision: String
        let runtime: String?
        let inputSize: [Int]
        let outputSize: [Int]
        let threads: Int
        let warmup: Int
        let runs: Int
        let error: String?
        let loadStatus: Int?
        let loadMs: Double?
        let firstMs: Double?
        let samples: [Double]

        enum CodingKeys: String, CodingKey {
            case artifact, model, scale, format, precision, runtime, runner
            case inputSize = "input_size"
            case outputSize = "output_size"
            case threads, warmup, runs, status, error
            case loadStatus = "load_status"
            case loadMs = "model_load_time(ms)"
            case firstMs = "first_inference_latency(ms)"
            case avg = "avg_inference_latency(ms)"
            case trimmean = "trimmean_inference_latency(ms)"
            case median = "median_inference_latency(ms)"
            case p90 = "p90_inference_latency(ms)"
            case min = "min_inference_latency(ms)"
            case cpuMedian = "median_cpu_time(ms)"
            case samples = "latencies(ms)"
            case throughput = "throughput(mpix/s)"
            case framesPerSecond = "frames_per_second"
            case peakMemory = "peak_memory(mb)"
            case pss = "ram_pss_usage(mb)"
            case set5Psnr = "set5_psnr(db)"
            case gmac = "gmac_per_inference"
            case achieved = "achieved(gmac/s)"
            case peakRatio = "matmul_peak_ratio"
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            let stats = error == nil && !samples.isEmpty ? Stats(samples) : nil
            try c.encode(artifact, forKey: .artifact)
            try c.encode(model, forKey: .model)
            try c.encode(scale, forKey: .scale)
            try c.encode(format, forKey: .format)
            try c.encode(precision, forKey: .precision)
            try c.encode(runtime, forKey: .runtime)
            try c.encode("app", forKey: .runner)
            try c.encode(inputSize, forKey: .inputSize)
            try c.encode(outputSize, forKey: .outputSize)
            try c.encode(threads, forKey: .threads)
            try c.encode(warmup, forKey: .warmup)
            try c.encode(runs, forKey: .runs)
            try c.encode(error == nil ? "ok" : "failed", forKey: .status)
            try c.encode(error, forKey: .error)
            try c.encode(loadStatus, forKey: .loadStatus)
            try c.encode(loadMs, forKey: .loadMs)
            try c.encode(firstMs, forKey: .firstMs)
            try c.encode(stats?.avg, forKey: .avg)
            try c.encode(stats?.trimmean, forKey: .trimmean)
            try c.encode(stats?.median, forKey: .median)
            try c.encode(stats?.p90, forKey: .p90)
            try c.encode(stats?.min, forKey: .min)
            try c.encodeNil(forKey: .cpuMedian)
            try c.encode(samples, forKey: .samples)
            try c.encodeNil(forKey: .throughput)
            try c.encodeNil(forKey: .framesPerSecond)
            try c.encodeNil(forKey: .peakMemory)
            try c.encodeNil(forKey: .pss)
            try c.encodeNil(forKey: .set5Psnr)
            try c.encodeNil(forKey: .gmac)
            try c.encodeNil(forKey: .achieved)
            try c.encodeNil(forKey: .peakRatio)
        }
    }

    let tool: String
    let created: String
    let device: Device
    let bicubic: [Bicubic]
    let results: [Result]

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case tool, created, device
        case matmulPeak = "matmul_peak(gmac/s)"
        case bicubic, results
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(1, forKey: .schemaVersion)
        try c.encode(tool, forKey: .tool)
        try c.encode(created, forKey: .created)
        try c.encode(device, forKey: .device)
        try c.encodeNil(forKey: .matmulPeak)
        try c.encode(bicubic, forKey: .bicubic)
        try c.encode(results, forKey: .results)
    }

    /// Pretty JSON in a temporary file named like the Android app's, ready to share.
    func write() throws -> URL {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mobile_sr_results.json")
        try encoder.encode(self).write(to: url, options: .atomic)
        return url
    }
}

/// Latency samples summarised exactly as mobile_sr/bench/stats.py (numpy median, linear p90, ExecuTorch trimmean).
struct Stats {
    let avg: Double
    let trimmean: Double
    let median: Double
    let p90: Double
    let min: Double

    init(_ samples: [Double]) {
        let a = samples.sorted()
        let n = a.count
        let trimmed = Array(a[(n / 10)..<(n * 9 / 10)])
        let kept = trimmed.isEmpty ? a : trimmed
        avg = a.reduce(0, +) / Double(n)
        trimmean = kept.reduce(0, +) / Double(kept.count)
        median = Stats.percentile(a, 50)
        p90 = Stats.percentile(a, 90)
        min = a[0]
    }

    private static func percentile(_ a: [Double], _ p: Double) -> Double {
        let rank = p / 100 * Double(a.count - 1)
        let lo = Int(rank.rounded(.down))
        let hi = Swift.min(lo + 1, a.count - 1)
        return a[lo] + (a[hi] - a[lo]) * (rank - Double(lo))
    }
}
