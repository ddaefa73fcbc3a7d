// swift-tools-version:6.1
import PackageDescription

// libFuzzer targets, in a package of their own so that the root package's `swift build` and
// `swift test` never build them: each executable defines LLVMFuzzerTestOneInput and takes its
// `main` from libFuzzer, so it links only with `-sanitize=fuzzer`. Built and run by
// `make fuzz` (scripts in this directory; see README "Fuzzing and sanitizers"):
//
//   swift build --package-path Fuzz --scratch-path Fuzz/.build \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --product FuzzWire
//   Fuzz/.build/debug/FuzzWire CORPUS_DIR -max_total_time=60
let package = Package(
    name: "SluiceFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "Sluice", path: ".."),
    ],
    targets: [
        .target(name: "FuzzSupport"),
        // PacketParser.parse over any bytes: the first byte picks the link type.
        .executableTarget(name: "FuzzWire", dependencies: ["FuzzSupport", .product(name: "Wire", package: "Sluice")]),
        // CaptureFile over any bytes (pcap or pcapng), then every frame through the parser.
        .executableTarget(name: "FuzzCapture", dependencies: [
            "FuzzSupport", .product(name: "Capture", package: "Sluice"), .product(name: "Wire", package: "Sluice"),
        ]),
        // The rule parsers (iptables-restore, iptables command lines, VNS3) and the ipset
        // file parser over any text; a rule set that parses is rendered and parsed again.
        .executableTarget(name: "FuzzRules", dependencies: ["FuzzSupport", .product(name: "Rules", package: "Sluice")]),
        // NetworkModel.parse over any text; a model that parses is rendered.
        .executableTarget(name: "FuzzNetModel", dependencies: [
            "FuzzSupport", .product(name: "NetModel", package: "Sluice"), .product(name: "Wire", package: "Sluice"),
        ]),
    ]
)
