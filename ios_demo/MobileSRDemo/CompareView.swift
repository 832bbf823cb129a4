import SwiftUI

/// Before/after: bicubic left of the split, the model right of it; drag to move the split.
struct CompareView: View {
    let before: CGImage
    let after: CGImage
    @Binding var split: Double

    var body: some View {
        GeometryReader { geo in
            ZStack(alignment: .leading) {
                Image(decorative: after, scale: 1).resizable().interpolation(.high)
                Image(decorative: before, scale: 1).resizable().interpolation(.high)
                    .mask(alignment: .leading) { Rectangle().frame(width: geo.size.width * split) }
                Rectangle().fill(.white).frame(width: 2).offset(x: geo.size.width * split - 1)
                VStack {
                    HStack {
                        Text("bicubic")
                        Spacer()
                        Text("model")
                    }
                    .font(.caption.bold()).foregroundStyle(.white).shadow(radius: 2).padding(6)
                    Spacer()
                }
            }
            .contentShape(Rectangle())
            .gesture(DragGesture(minimumDistance: 0).onChanged { value in
                split = min(max(value.location.x / geo.size.width, 0), 1)
            })
        }
        .aspectRatio(CGFloat(after.width) / CGFloat(after.height), contentMode: .fit)
    }
}

/// A centre crop of both results, magnified without smoothing so single pixels can be compared.
struct ZoomView: View {
    let before: CGImage
    let after: CGImage
    var side = 96

    var body: some View {
        HStack {
            crop(before, label: "bicubic")
            crop(after, label: "model")
        }
    }

    @ViewBuilder
    private func crop(_ image: CGImage, label: String) -> some View {
        let n = min(side, image.width, image.height)
        let rect = CGRect(x: (image.width - n) / 2, y: (image.height - n) / 2, width: n, height: n)
        VStack {
            if let part = image.cropping(to: rect) {
                Image(decorative: part, scale: 1).resizable().interpolation(.none).aspectRatio(1, contentMode: .fit)
            }
            Text(label).font(.caption)
        }
    }
}
