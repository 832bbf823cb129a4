import Accelerate
import CoreGraphics
import CoreML
import Foundation
import ImageIO

/// Per-tile model times and the total wall time of one tiled upscale (ms).
struct TileTiming {
    let tileMs: [Double]
    let totalMs: Double
}

/// One bundled Core ML model at its fixed input size. `run` takes and returns RGB in [0, 1], HWC,
/// whatever the model's layout is (Core ML exports are NCHW): the conversion lives here, once.
final class SREngine {
    let entry: IndexEntry
    let sidecar: Sidecar
    let model: MLModel
    let inputName: String
    let outputName: String
    let loadMs: Double

    init(entry: IndexEntry, computeUnits: MLComputeUnits) async throws {
        guard entry.format == "coreml" else {
            throw SRError.message("the iOS app runs Core ML models only, not \(entry.format)")
        }
        self.entry = entry
        let side = try Sidecar.load(try ModelIndex.url(of: entry.sidecar))
        sidecar = side
        let package = try ModelIndex.url(of: entry.file)
        let start = DispatchTime.now()
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        let loaded: MLModel
        do {
            let compiled = try await SREngine.compiled(package)
            loaded = try await MLModel.load(contentsOf: compiled, configuration: config)
        } catch {
            throw SRError.message("Core ML cannot load \(entry.file): \(error.localizedDescription)")
        }
        model = loaded
        loadMs = SREngine.ms(since: start)
        // The sidecar's tensor names where Core ML has them, else the model's only input and output.
        let inputs = loaded.modelDescription.inputDescriptionsByName
        let outputs = loaded.modelDescription.outputDescriptionsByName
        inputName = inputs[side.inputs[0].name] != nil ? side.inputs[0].name : (inputs.keys.first ?? "")
        outputName = outputs[side.outputs[0].name] != nil ? side.outputs[0].name : (outputs.keys.first ?? "")
    }

    /// The .mlpackage compiled to .mlmodelc once, cached by name and modification time (a re-bundled model recompiles).
    static func compiled(_ package: URL) async throws -> URL {
        let caches = try FileManager.default.url(for: .cachesDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let modified = (try? FileManager.default.attributesOfItem(atPath: package.path)[.modificationDate] as? Date) ?? Date()
        let stamp = Int(modified.timeIntervalSince1970)
        let target = caches.appendingPathComponent("\(package.deletingPathExtension().lastPathComponent)-\(stamp).mlmodelc")
        if FileManager.default.fileExists(atPath: target.path) {
            return target
        }
        let temporary = try await MLModel.compileModel(at: package)
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: temporary, to: target)
        return target
    }

    /// Output size cap: 16 MP of RGBA is 64 MB, which an iPhone app can hold several times over.
    static let maxOutputPixels = 16_000_000

    static func ms(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    }

    private static func offset(_ t: Sidecar.Tensor, _ strides: [Int], y: Int, x: Int, c: Int) -> Int {
        t.layout == "NHWC" ? y * strides[1] + x * strides[2] + c * strides[3] : c * strides[1] + y * strides[2] + x * strides[3]
    }

    /// Element `i` of a float16 buffer is converted with vImage (Accelerate), not `Float16`, which the
    /// iOS simulator on Intel Macs lacks. `count` elements from `from` to `to`.
    private static func convert(_ from: UnsafeRawPointer, _ to: UnsafeMutableRawPointer, count: Int, toHalf: Bool) throws {
        var src = vImage_Buffer(data: UnsafeMutableRawPointer(mutating: from), height: 1, width: vImagePixelCount(count),
                                rowBytes: count * (toHalf ? 4 : 2))
        var dst = vImage_Buffer(data: to, height: 1, width: vImagePixelCount(count), rowBytes: count * (toHalf ? 2 : 4))
        let status = toHalf ? vImageConvert_PlanarFtoPlanar16F(&src, &dst, vImage_Flags(kvImageNoFlags))
                            : vImageConvert_Planar16FtoPlanarF(&src, &dst, vImage_Flags(kvImageNoFlags))
        guard status == kvImageNoError else { throw SRError.message("float16 conversion failed (vImage \(status))") }
    }

    /// Why raw buffers and not `array[i] = NSNumber(...)`: boxing every element costs more than a small
    /// model's prediction, and it sits inside the benchmark's timed region. The strides are the ones the
    /// buffer accessors hand over, which may differ from `strides` before the call (MLMultiArray
    /// `withUnsafeMutableBytes(_:)`, iOS 15.4+ SDK).
    func run(_ hwc: [Float]) throws -> [Float] {
        let t = sidecar.inputs[0]
        let half = t.dtype == "float16"
        let array = try MLMultiArray(shape: t.shape.map { NSNumber(value: $0) }, dataType: half ? .float16 : .float32)
        try array.withUnsafeMutableBytes { raw, strides in
            let span = raw.count / (half ? 2 : 4)
            var values = [Float](repeating: 0, count: span)
            for y in 0..<t.height {
                for x in 0..<t.width {
                    for c in 0..<3 {
                        values[SREngine.offset(t, strides, y: y, x: x, c: c)] = hwc[(y * t.width + x) * 3 + c]
                    }
                }
            }
            try values.withUnsafeBytes { src in
                if half {
                    try SREngine.convert(src.baseAddress!, raw.baseAddress!, count: span, toHalf: true)
                } else {
                    raw.copyMemory(from: src)
                }
            }
        }
        let input = try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
        let prediction = try model.prediction(from: input)
        guard let out = prediction.featureValue(for: outputName)?.multiArrayValue else {
            throw SRError.message("\(entry.file) returned no \(outputName) array")
        }
        let o = sidecar.outputs[0]
        let width: Int
        switch out.dataType {
        case .float32: width = 4
        case .float16: width = 2
        case .double: width = 8
        default: throw SRError.message("\(entry.file) returned an array of an unsupported type")
        }
        return try out.withUnsafeMutableBytes { raw, strides in
            let span = raw.count / width
            var flat = [Float](repeating: 0, count: span)
            try flat.withUnsafeMutableBytes { dst in
                switch width {
                case 4: dst.copyMemory(from: UnsafeRawBufferPointer(raw))
                case 2: try SREngine.convert(raw.baseAddress!, dst.baseAddress!, count: span, toHalf: false)
                default:
                    let p = raw.bindMemory(to: Double.self)
                    let q = dst.bindMemory(to: Float.self)
                    for i in 0..<span { q[i] = Float(p[i]) }
                }
            }
            var result = [Float](repeating: 0, count: o.height * o.width * 3)
            for y in 0..<o.height {
                for x in 0..<o.width {
                    for c in 0..<3 {
                        result[(y * o.width + x) * 3 + c] = flat[SREngine.offset(o, strides, y: y, x: x, c: c)]
                    }
                }
            }
            return result
        }
    }

    /// LR pixels of context around each tile core: mobile_sr.inference.OVERLAP and the Android app's Tiler.
    static let overlap = 8

    /// One tile, in LR pixels (end exclusive): the core it pastes and the region around it the model sees.
    struct Tile {
        let top, left, bottom, right: Int
        let t0, l0, t1, l1: Int
    }

    /// The tiles of a `w` x `h` image for a model of input `inH` x `inW`, exactly as mobile_sr.inference
    /// (`upscale_tiled` over `at_fixed_size`, core `fixed_tile`) and the Android app's Tiler.plan cut it, so
    /// the Set5 PSNR `mobile-sr bench` reports is that of this code: square cores of min(inH, inW) - 16,
    /// each run with 8 pixels of context on every side where the image has them.
    static func plan(width w: Int, height h: Int, inH: Int, inW: Int) throws -> [Tile] {
        let tile = min(inH, inW) - 2 * overlap
        guard tile >= 1 else { throw SRError.message("a \(inH)×\(inW) model input leaves no tile inside \(overlap) pixels of context") }
        if h <= tile && w <= tile { return [Tile(top: 0, left: 0, bottom: h, right: w, t0: 0, l0: 0, t1: h, l1: w)] }
        var out: [Tile] = []
        for top in stride(from: 0, to: h, by: tile) {
            for left in stride(from: 0, to: w, by: tile) {
                let (bottom, right) = (min(top + tile, h), min(left + tile, w))
                out.append(Tile(top: top, left: left, bottom: bottom, right: right, t0: max(top - overlap, 0),
                                l0: max(left - overlap, 0), t1: min(bottom + overlap, h), l1: min(right + overlap, w)))
            }
        }
        return out
    }

    /// Upscale tile by tile (see `plan`); each region is edge-padded at its bottom and right to the model's input.
    func upscale(_ image: CGImage) throws -> (CGImage, TileTiming) {
        let t = sidecar.inputs[0]
        let s = sidecar.model.scale
        let (th, tw) = (t.height, t.width)
        let (w, h) = (image.width, image.height)
        // A photo decoded for a smaller scale must not get here: the output would not fit in memory.
        guard w * h * s * s <= SREngine.maxOutputPixels else {
            throw SRError.message("a \(w)×\(h) photo at x\(s) is over \(SREngine.maxOutputPixels / 1_000_000) MP; pick it again")
        }
        let src = try SREngine.rgba(image)
        let (ow, oh) = (w * s, h * s)
        var dst = [UInt8](repeating: 255, count: ow * oh * 4)
        var tileMs: [Double] = []
        var input = [Float](repeating: 0, count: th * tw * 3)
        let start = DispatchTime.now()
        for tile in try SREngine.plan(width: w, height: h, inH: th, inW: tw) {
            try Task.checkCancellation()
            for y in 0..<th {
                for x in 0..<tw {
                    let p = (min(tile.t0 + y, tile.t1 - 1) * w + min(tile.l0 + x, tile.l1 - 1)) * 4
                    for c in 0..<3 {
                        input[(y * tw + x) * 3 + c] = Float(src[p + c]) / 255
                    }
                }
            }
            let r0 = DispatchTime.now()
            let sr = try run(input)
            tileMs.append(SREngine.ms(since: r0))
            for oy in (tile.top * s)..<(tile.bottom * s) {
                for ox in (tile.left * s)..<(tile.right * s) {
                    let i = ((oy - tile.t0 * s) * tw * s + (ox - tile.l0 * s)) * 3
                    let d = (oy * ow + ox) * 4
                    for c in 0..<3 {
                        dst[d + c] = UInt8(max(0, min(255, (sr[i + c] * 255).rounded())))
                    }
                }
            }
        }
        let total = SREngine.ms(since: start)
        return (try SREngine.image(dst, width: ow, height: oh), TileTiming(tileMs: tileMs, totalMs: total))
    }

    static func rgba(_ image: CGImage) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: image.width * image.height * 4)
        let ok = buffer.withUnsafeMutableBytes { raw -> Bool in
            guard let ctx = CGContext(data: raw.baseAddress, width: image.width, height: image.height, bitsPerComponent: 8,
                                      bytesPerRow: image.width * 4, space: CGColorSpace(name: CGColorSpace.sRGB)!,
                                      bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else { return false }
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: image.width, height: image.height))
            return true
        }
        guard ok else { throw SRError.message("cannot read the photo's pixels") }
        return buffer
    }

    static func image(_ pixels: [UInt8], width: Int, height: Int) throws -> CGImage {
        guard let provider = CGDataProvider(data: Data(pixels) as CFData),
              let image = CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: width * 4,
                                  space: CGColorSpace(name: CGColorSpace.sRGB)!,
                                  bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
                                  provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent) else {
            throw SRError.message("cannot make the output image")
        }
        return image
    }

    /// Keys cubic with a = -0.5 (MATLAB, mobile_sr/data/imresize.py and the Android app's Tiler.bicubic).
    /// Why not CIBicubicScaleTransform: its B = 0, C = 0.75 is Keys a = -0.75, a sharper baseline than
    /// the one every published SR table and the Android app compare against.
    private static func keys(_ t: Float) -> Float {
        let x = abs(t)
        let a: Float = -0.5
        if x <= 1 { return (a + 2) * x * x * x - (a + 3) * x * x + 1 }
        if x < 2 { return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a }
        return 0
    }

    /// Index `i` mirrored into 0..<n, as MATLAB's imresize pads (symmetric).
    private static func mirror(_ i: Int, _ n: Int) -> Int {
        let m = ((i % (2 * n)) + 2 * n) % (2 * n)
        return m < n ? m : 2 * n - 1 - m
    }

    /// Bicubic upscale by `scale` (MATLAB's `imresize(img, scale, 'bicubic')`): the baseline beside the model.
    static func bicubic(_ image: CGImage, scale s: Int) throws -> CGImage {
        let (w, h) = (image.width, image.height)
        let src = try rgba(image)
        let (ow, oh) = (w * s, h * s)
        var rows = [Float](repeating: 0, count: ow * h * 3)
        for ox in 0..<ow {
            let fx = (Float(ox) + 0.5) / Float(s) - 0.5
            let x0 = Int(fx.rounded(.down))
            for k in -1...2 {
                let wt = keys(fx - Float(x0 + k))
                let sx = mirror(x0 + k, w)
                for y in 0..<h {
                    for c in 0..<3 {
                        rows[(y * ow + ox) * 3 + c] += wt * Float(src[(y * w + sx) * 4 + c])
                    }
                }
            }
        }
        var dst = [UInt8](repeating: 255, count: ow * oh * 4)
        for oy in 0..<oh {
            let fy = (Float(oy) + 0.5) / Float(s) - 0.5
            let y0 = Int(fy.rounded(.down))
            var acc = [Float](repeating: 0, count: ow * 3)
            for k in -1...2 {
                let wt = keys(fy - Float(y0 + k))
                let base = mirror(y0 + k, h) * ow * 3
                for i in 0..<(ow * 3) {
                    acc[i] += wt * rows[base + i]
                }
            }
            for ox in 0..<ow {
                for c in 0..<3 {
                    dst[(oy * ow + ox) * 4 + c] = UInt8(max(0, min(255, acc[ox * 3 + c].rounded())))
                }
            }
        }
        return try SREngine.image(dst, width: ow, height: oh)
    }

    /// Decode a picked photo, upright, no larger than `maxPixels` (so the output fits in memory).
    static func decode(_ data: Data, maxPixels: Int) throws -> CGImage {
        guard let source = CGImageSourceCreateWithData(data as CFData, nil),
              let props = CGImageSourceCopyPropertiesAtIndex(source, 0, nil) as? [CFString: Any],
              let w = props[kCGImagePropertyPixelWidth] as? Int, let h = props[kCGImagePropertyPixelHeight] as? Int else {
            throw SRError.message("that file is not an image this app can read")
        }
        let k = min(1, (Double(maxPixels) / Double(w * h)).squareRoot())
        let options: [CFString: Any] = [
            kCGImageSourceCreateThumbnailFromImageAlways: true,
            kCGImageSourceCreateThumbnailWithTransform: true,
            kCGImageSourceThumbnailMaxPixelSize: max(1, Int(Double(max(w, h)) * k)),
        ]
        guard let image = CGImageSourceCreateThumbnailAtIndex(source, 0, options as CFDictionary) else {
            throw SRError.message("cannot decode that photo")
        }
        return image
    }
}
