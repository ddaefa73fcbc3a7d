// swift-tools-version:6.1
import PackageDescription

// A separate package so that the root package does not depend on package-benchmark (and its
// malloc interposer). Depends on the root package's library products only.
//
//   cd Benchmarks && swift package benchmark --target WireBenchmarks
//   cd Benchmarks && swift package benchmark --target ConntrackBenchmarks
//   cd Benchmarks && swift package benchmark --target PipelineBenchmarks   # Engine.process, NAT rewrite
//   cd Benchmarks && swift package benchmark --target ClassifierBenchmarks # compiled vs linear chains
//   cd Benchmarks && swift run -c release ConntrackMemory      # RSS of a 1M-connection table, once
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
        .executableTarget(
            name: "ConntrackBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Conntrack", package: "Sluice"),
                .product(name: "Wire", package: "Sluice"),
            ],
            path: "Benchmarks/ConntrackBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
        .executableTarget(
            name: "PipelineBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Engine", package: "Sluice"),
                .product(name: "Rules", package: "Sluice"),
                .product(name: "NetModel", package: "Sluice"),
                .product(name: "Capture", package: "Sluice"),
                .product(name: "Wire", package: "Sluice"),
            ],
            path: "Benchmarks/PipelineBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
        .executableTarget(
            name: "ClassifierBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Classifier", package: "Sluice"),
                .product(name: "Rules", package: "Sluice"),
                .product(name: "Wire", package: "Sluice"),
            ],
            path: "Benchmarks/ClassifierBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
        // Not a package-benchmark suite: one process that fills a 1M-connection table and reads
        // VmRSS/VmHWM from /proc/self/status. Kept out of the suite because peakMemoryResident's
        // sampling thread allocates and would break the suite's mallocCountTotal = 0.
        // Outside Benchmarks/: the plugin runs every executable target found there as a suite.
        .executableTarget(
            name: "ConntrackMemory",
            dependencies: [
                .product(name: "Conntrack", package: "Sluice"),
                .product(name: "Wire", package: "Sluice"),
            ],
            path: "Tools/ConntrackMemory"
        ),
    ]
)
