import Capture
import Engine
import Replay
import Wire
import XCTest

final class ReplayTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func repo(_ p: String) -> String { Self.repoRoot.appendingPathComponent(p).path }

    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d.path
    }

    /// Golden replay: the bundled edge captures, rules and network model produce exactly the
    /// committed verdicts, output packets and counters. Run with SLUICE_UPDATE_GOLDEN=1 to
    /// rewrite them after a deliberate change (then review the diff).
    func testGoldenEdgeReplay() throws {
        try golden(rules: "examples/edge/filter.rules", dir: "edge", files: ["verdicts.jsonl", "eth0.pcap", "local.pcap", "counters.rules", "conntrack.txt", "log.txt"])
    }

    /// The stateful demo: conntrack, a DNAT port forward, MASQUERADE (the same rules agree with
    /// the kernel in KernelDifferentialTests).
    func testGoldenStatefulEdgeReplay() throws {
        try golden(rules: "examples/edge/edge.rules", dir: "edge-nat",
                   files: ["verdicts.jsonl", "eth0.pcap", "eth1.pcap", "local.pcap", "counters.rules", "conntrack.txt", "log.txt"])
    }

    /// The compiled classifier gives byte-identical outputs.
    func testGoldenStatefulEdgeReplayWithCompiledClassifier() throws {
        try golden(rules: "examples/edge/edge.rules", dir: "edge-nat",
                   files: ["verdicts.jsonl", "eth0.pcap", "eth1.pcap", "local.pcap", "counters.rules", "conntrack.txt", "log.txt"],
                   classifier: .compiled)
    }

    func golden(rules: String, dir: String, files: [String], classifier: ClassifierKind = .linear) throws {
        let out = try tempDir() + "/nested/out"  // created with its parents
        var options = ReplayOptions(
            rulesPath: repo(rules), networkPath: repo("examples/edge/network"),
            inputs: [ReplayInput(interface: "eth0", path: repo("captures/edge-eth0.pcap")),
                     ReplayInput(interface: "eth1", path: repo("captures/edge-eth1.pcap"))],
            outDir: out)
        options.engine.classifier = classifier
        let summary = try Replayer.run(options)
        XCTAssertEqual(summary.packets, 42)
        let golden = Self.repoRoot.appendingPathComponent("Tests/ReplayTests/Golden/\(dir)")
        XCTAssertEqual(summary.outputs, files.sorted())
        for f in files {
            let got = try Data(contentsOf: URL(fileURLWithPath: out + "/" + f))
            let goldenFile = golden.appendingPathComponent(f)
            if ProcessInfo.processInfo.environment["SLUICE_UPDATE_GOLDEN"] == "1" {
                try FileManager.default.createDirectory(at: golden, withIntermediateDirectories: true)
                try got.write(to: goldenFile)
                continue
            }
            let want = try Data(contentsOf: goldenFile)
            XCTAssertEqual(got, want, "\(f) differs from \(goldenFile.path)")
        }
    }

    /// Per-packet expectations of the golden run, stated independently of the golden files, so
    /// a wrong golden file cannot hide a wrong engine.
    func testEdgeReplaySemantics() throws {
        let out = try tempDir()
        _ = try Replayer.run(ReplayOptions(
            rulesPath: repo("examples/edge/filter.rules"), networkPath: repo("examples/edge/network"),
            inputs: [ReplayInput(interface: "eth0", path: repo("captures/edge-eth0.pcap")),
                     ReplayInput(interface: "eth1", path: repo("captures/edge-eth1.pcap"))],
            outDir: out))
        let lines = try String(contentsOfFile: out + "/verdicts.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 42)
        let objs = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        for (i, o) in objs.enumerated() { XCTAssertEqual(o["index"] as? Int, i) }
        // Input order is by timestamp: the port-forward SYN (eth0) comes first, delivered
        // locally (no DNAT in this version) through INPUT -> wan-in rule 1.
        XCTAssertEqual(objs[0]["verdict"] as? String, "local")
        XCTAssertEqual(objs[0]["rules"] as? [String], ["filter:INPUT:4", "filter:wan-in:1"])
        // The LAN server's SYN-ACK is forwarded to the WAN through lan-out's final ACCEPT.
        XCTAssertEqual(objs[1]["verdict"] as? String, "forwarded")
        XCTAssertEqual(objs[1]["out"] as? [String], ["eth0"])
        // The malformed frames carry their reasons, in the order capgen wrote them.
        let reasons = objs.compactMap { $0["reason"] as? String }
        XCTAssertEqual(reasons, ["truncated-link-header", "bad-ihl", "bad-ip-version", "truncated-ipv4-header",
                                 "ip-total-length-beyond-capture", "bad-tcp-data-offset", "tcp-data-offset-beyond-packet",
                                 "bad-udp-length", "icmp-error-short-quote", "bad-ip-options", "policy"])
        let badSum = objs.first { $0["ip_checksum"] as? String == "bad" }
        XCTAssertEqual(badSum?["verdict"] as? String, "dropped")  // INPUT policy, not the checksum
        XCTAssertEqual(badSum?["by"] as? String, "filter:INPUT:policy")
        XCTAssertEqual(objs.filter { $0["verdict"] as? String == "passed" }.compactMap { $0["l3"] as? String }, ["ipv6", "arp"])
        // Forwarded packets leave with TTL decremented and a valid header checksum.
        let eth0 = try CaptureFile.open(path: out + "/eth0.pcap")
        XCTAssertEqual(eth0.records.count, objs.filter { $0["verdict"] as? String == "forwarded" }.count)
        for i in eth0.records.indices {
            eth0.withFrame(i) { f in
                let ip = IPv4View(f.slice(14, f.count - 14))!
                XCTAssertEqual(ip.ttl, 63)
                XCTAssertTrue(ip.checksumValid)
            }
        }
    }

    /// Every capture in ../shared/captures replays with an accept-all rule set, no crash, one
    /// verdict line per packet.
    func testSharedCapturesReplayAcceptAll() throws {
        let shared = Self.repoRoot.appendingPathComponent("../shared/captures").standardized
        guard let e = FileManager.default.enumerator(atPath: shared.path) else {
            print("SKIPPED: \(shared.path) not found; shared replay checks did not run")
            return
        }
        let files = e.compactMap { $0 as? String }.filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted()
        let dir = try tempDir()
        let rules = dir + "/accept.rules"
        try "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n".write(toFile: rules, atomically: true, encoding: .utf8)
        let net = dir + "/net"
        try "ip addr add 10.255.255.1/8 dev eth1\nip route add default via 10.255.255.254\nsysctl net.ipv4.ip_forward=1\n".write(toFile: net, atomically: true, encoding: .utf8)
        for f in files where !f.hasPrefix("bulk/echo") {
            let out = dir + "/" + f.replacingOccurrences(of: "/", with: "_")
            let s = try Replayer.run(ReplayOptions(rulesPath: rules, networkPath: net,
                                                   inputs: [ReplayInput(interface: "eth0", path: shared.appendingPathComponent(f).path)], outDir: out))
            let n = try CaptureFile.open(path: shared.appendingPathComponent(f).path).records.count
            XCTAssertEqual(s.packets, n, f)
            let lines = try String(contentsOfFile: out + "/verdicts.jsonl", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(lines.count, n, f)
        }
    }

    /// The committed captures are exactly what the generator writes.
    func testCommittedCapturesMatchGenerator() throws {
        let candidates = [".build/debug/capgen", ".build/x86_64-unknown-linux-gnu/debug/capgen"].map(repo)
        guard let exe = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            XCTFail("capgen not built (swift build --build-tests builds it)")
            return
        }
        let dir = try tempDir()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = [dir]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let made = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let committed = try FileManager.default.contentsOfDirectory(atPath: repo("captures")).filter { $0.hasSuffix(".pcap") }.sorted()
        XCTAssertEqual(made, committed)
        for f in made {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + f)), try Data(contentsOf: URL(fileURLWithPath: repo("captures/" + f))), f)
        }
    }
}
