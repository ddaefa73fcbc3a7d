// swift-tools-version:6.1
import PackageDescription

// Dependency graph (one way):
//   Diagnostics (file:line:column errors, tokenizer)
//   Wire  <-  Capture
//   Wire  <-  Conntrack
//   Wire  <-  NetModel
//   Wire  <-  Rules
//   Wire, Rules  <-  Classifier
//   Wire, Rules, Classifier, NetModel  <-  Engine  <-  Replay  <-  sluice
//   Engine, CNetfilterQueue  <-  Inline (sluice run)  <-  sluice
// CPcap and CNetfilterQueue are system libraries found by pkg-config, one C library per
// shim target (their headers clash on in_addr when imported into one Swift module).
let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "Wire", targets: ["Wire"]),
        .library(name: "Capture", targets: ["Capture"]),
        .library(name: "NetModel", targets: ["NetModel"]),
        .library(name: "Rules", targets: ["Rules"]),
        .library(name: "Classifier", targets: ["Classifier"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Replay", targets: ["Replay"]),
        .library(name: "Conntrack", targets: ["Conntrack"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        .systemLibrary(
            name: "CNetfilterQueue",
            pkgConfig: "libnetfilter_queue",
            providers: [.apt(["libnetfilter-queue-dev", "libnfnetlink-dev", "libmnl-dev"])]
        ),
        .target(name: "Diagnostics"),
        .target(name: "Wire"),
        .target(name: "Capture", dependencies: ["Wire"]),
        .target(name: "NetModel", dependencies: ["Wire", "Diagnostics"]),
        .target(name: "Rules", dependencies: ["Wire", "Diagnostics"]),
        .target(name: "Classifier", dependencies: ["Wire", "Rules"]),
        .target(name: "Conntrack", dependencies: ["Wire"]),
        .target(name: "Engine", dependencies: ["Wire", "Rules", "Classifier", "NetModel", "Diagnostics", "Conntrack"]),
        // Inline mode (`sluice run`): NFQUEUE sockets, workers, hooks, the control socket.
        .target(name: "Inline", dependencies: ["Engine", "Rules", "NetModel", "Wire", "Diagnostics", "CNetfilterQueue",
                                               .product(name: "Prometheus", package: "swift-prometheus"),
                                               .product(name: "Logging", package: "swift-log")]),
        .target(name: "Replay", dependencies: ["Engine", "Capture", "Wire", "Rules", "NetModel",
                                               .product(name: "Logging", package: "swift-log")]),
        // Counts malloc/calloc/realloc/aligned allocations for `sluice bench` (interposes the
        // allocator in the executable that links it; see Sources/CMallocCounter/include).
        .target(name: "CMallocCounter"),
        // `sluice bench`: captures in memory, replayed through the engine until S seconds pass.
        .target(name: "Bench", dependencies: ["Engine", "Capture", "Wire", "Rules", "NetModel", "Classifier", "CMallocCounter"]),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "Bench", "Replay", "Engine", "Rules", "NetModel", "Capture", "Wire", "Inline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Writes the project's own small captures into captures/ (see captures/README.md).
        .executableTarget(name: "capgen", dependencies: ["Wire", "Capture"]),
        // CompiledChain vs LinearClassifier on the ClassBench sets: build time, bytes, ns/lookup.
        .executableTarget(name: "classbench", dependencies: ["Classifier", "Rules", "Wire"]),
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "Wire", "CPcap"]),
        .testTarget(name: "NetModelTests", dependencies: ["NetModel", "Wire", "Diagnostics"]),
        .testTarget(name: "RulesTests", dependencies: ["Rules", "Wire", "Diagnostics"]),
        .testTarget(name: "ClassifierTests", dependencies: ["Classifier", "Rules", "Wire"]),
        .testTarget(name: "ConntrackTests", dependencies: ["Conntrack", "Wire"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Rules", "NetModel", "Wire", "Classifier", "Diagnostics", "Conntrack"]),
        .testTarget(name: "NFQueueLibraryTests", dependencies: ["CNetfilterQueue"]),
        .testTarget(name: "InlineUnitTests", dependencies: ["Inline", "NetModel", "Wire", "CNetfilterQueue", "Engine", "Rules"]),
        .testTarget(
            name: "ReplayTests",
            dependencies: ["Replay", "Engine", "Capture", "Wire", "Rules"],
            exclude: ["Golden"]
        ),
        .testTarget(name: "BenchTests", dependencies: ["Bench", "CMallocCounter"]),
        .testTarget(name: "KernelDiffTests", dependencies: ["Replay", "Rules", "Engine", "Capture", "Wire"]),
        // End-to-end: namespaces (client, router, servers, plugin), real traffic, the router run by
        // the kernel's iptables or by `sluice run` (drives binaries with Process; no module deps).
        .testTarget(name: "InlineTests", dependencies: []),
    ]
)
