// swift-tools-version:6.1
import PackageDescription

// A separate package so that the root package does not depend on package-benchmark (and its
// malloc interposer). Depends on the root package's `Wire` and `Capture` products only.
//
//   cd Benchmarks && swift package benchmark --target WireBenchmarks
//
// See docs/benchmarks.md for the recorded figures and the threshold workflow.
let package = Package(
    name: "SluiceBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        // package-benchmark, under its current name (the old identifier 'package-benchmark'
        // still resolves but the plugin prints a deprecation warning on every run).
        // "MallocInterposer" only: the default "RuntimeInterposer" trait (ARC counters on
        // Linux with Swift 6.3) needs a package that is not available to this project.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
        .package(name: "Sluice", path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "WireBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Wire", package: "Sluice"),
                .product(name: "Capture", package: "Sluice"),
            ],
            path: "Benchmarks/WireBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
