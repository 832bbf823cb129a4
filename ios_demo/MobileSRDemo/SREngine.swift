import CoreGraphics
import CoreImage
import CoreImage.CIFilterBuiltins
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

    static func ms(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    }

    private static func offset(_ t: Sidecar.Tensor, _ strides: [Int], y: Int, x: Int, c: Int) -> Int {
        t.layout == "NHWC" ? y * strides[1] + x * strides[2] + c * strides[3] : c * strides[1] + y * strides[2] + x * strides[3]
    }

    func run(_ hwc: [Float]) throws -> [Float] {
        let t = sidecar.inputs[0]
        let array = try MLMultiArray(shape: t.shape.map { NSNumber(value: $0) }, dataType: t.dtype == "float16" ? .float16 : .float32)
        let strides = array.strides.map { $0.intValue }
        for y in 0..<t.height {
            for x in 0..<t.width {
                for c in 0..<3 {
                    array[SREngine.offset(t, strides, y: y, x: x, c: c)] = NSNumber(value: hwc[(y * t.width + x) * 3 + c])
                }
            }
        }
        let input = try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
        let prediction = try model.prediction(from: input)
        guard let out = prediction.featureValue(for: outputName)?.multiArrayValue else {
            throw SRError.message("\(entry.file) returned no \(outputName) array")
        }
        let o = sidecar.outputs[0]
        let ostrides = out.strides.map { $0.intValue }
        var result = [Float](repeating: 0, count: o.height * o.width * 3)
        if out.dataType == .float32 {
            let p = out.dataPointer.bindMemory(to: Float.self, capacity: out.count)
            for y in 0..<o.height {
                for x in 0..<o.width {
                    for c in 0..<3 {
                        result[(y * o.width + x) * 3 + c] = p[SREngine.offset(o, ostrides, y: y, x: x, c: c)]
                    }
                }
            }
        } else {  // float16 or double: slower, but exact
            for y in 0..<o.height {
                for x in 0..<o.width {
                    for c in 0..<3 {
                        let key = o.layout == "NHWC" ? [0, y, x, c] : [0, c, y, x]
                        result[(y * o.width + x) * 3 + c] = out[key.map { NSNumber(value: $0) }].floatValue
                    }
                }
            }
        }
        return result
    }

    /// Tile origins along one axis: step tile - overlap, the last one flush with the end.
    static func starts(_ n: Int, tile: Int, overlap: Int) -> [Int] {
        if n <= tile { return [0] }
        let step = max(tile - overlap, 1)
        var out = Array(stride(from: 0, to: n - tile, by: step))
        out.append(n - tile)
        return out
    }

    /// Tiles of the model's input size, overlapping by `overlap` LR pixels; each keeps its centre, edges clamped.
    func upscale(_ image: CGImage, overlap: Int = 8) throws -> (CGImage, TileTiming) {
        let t = sidecar.inputs[0]
        let s = sidecar.model.scale
        let (th, tw) = (t.height, t.width)
        let (w, h) = (image.width, image.height)
        let src = try SREngine.rgba(image)
        let (ow, oh) = (w * s, h * s)
        var dst = [UInt8](repeating: 255, count: ow * oh * 4)
        let ov = min(overlap, min(th, tw) / 2)
        let xs = SREngine.starts(w, tile: tw, overlap: ov)
        let ys = SREngine.starts(h, tile: th, overlap: ov)
        var tileMs: [Double] = []
        var tile = [Float](repeating: 0, count: th * tw * 3)
        let start = DispatchTime.now()
        for y0 in ys {
            for x0 in xs {
                try Task.checkCancellation()
                for y in 0..<th {
                    for x in 0..<tw {
                        let p = (min(y0 + y, h - 1) * w + min(x0 + x, w - 1)) * 4
                        for c in 0..<3 {
                            tile[(y * tw + x) * 3 + c] = Float(src[p + c]) / 255
                        }
                    }
                }
                let r0 = DispatchTime.now()
                let sr = try run(tile)
                tileMs.append(SREngine.ms(since: r0))
                let kx0 = x0 == 0 ? 0 : x0 + ov / 2
                let ky0 = y0 == 0 ? 0 : y0 + ov / 2
                let kx1 = min(x0 == xs.last ? x0 + tw : x0 + tw - ov / 2, w)
                let ky1 = min(y0 == ys.last ? y0 + th : y0 + th - ov / 2, h)
                for oy in (ky0 * s)..<(ky1 * s) {
                    for ox in (kx0 * s)..<(kx1 * s) {
                        let i = ((oy - y0 * s) * tw * s + (ox - x0 * s)) * 3
                        let d = (oy * ow + ox) * 4
                        for c in 0..<3 {
                            dst[d + c] = UInt8(max(0, min(255, (sr[i + c] * 255).rounded())))
                        }
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

    /// Core Image's bicubic upscale by `scale`: the baseline beside the model.
    static func bicubic(_ image: CGImage, scale: Int) -> CGImage? {
        let filter = CIFilter.bicubicScaleTransform()
        filter.inputImage = CIImage(cgImage: image)
        filter.scale = Float(scale)
        filter.aspectRatio = 1
        guard let out = filter.outputImage else { return nil }
        return CIContext().createCGImage(out, from: CGRect(x: 0, y: 0, width: image.width * scale, height: image.height * scale))
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
