import SwiftUI

@main
struct MobileSRDemoApp: App {
    var body: some Scene {
        WindowGroup {
            TabView {
                UpscaleView()
                    .tabItem { Label("Upscale", systemImage: "photo") }
                BenchmarkView()
                    .tabItem { Label("Benchmark", systemImage: "speedometer") }
            }
        }
    }
}
