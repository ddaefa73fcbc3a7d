import XCTest

/// `sluice trace` golden tests: the exact path printed for a packet, hook by hook and rule by
/// rule. Run with SLUICE_UPDATE_GOLDEN=1 to rewrite them after a deliberate change.
final class TraceGoldenTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func repo(_ p: String) -> String { Self.repoRoot.appendingPathComponent(p).path }

    static let cases: [(name: String, rules: String, network: String, packet: String)] = [
        ("edge-port-forward-syn", "examples/edge/filter.rules", "examples/edge/network", "tcp 198.51.100.7:40000 > 203.0.113.1:8080 in eth0 flags S"),
        ("edge-smtp-out", "examples/edge/filter.rules", "examples/edge/network", "tcp 192.168.1.10:5000 > 93.184.216.34:25 in eth1 flags S"),
        ("edge-local-ntp", "examples/edge/filter.rules", "examples/edge/network", "udp 203.0.113.1:123 > 192.0.2.1:123 out"),
        ("marks-https-via-eth2", "Tests/ReplayTests/Golden/trace/marks.rules", "Tests/ReplayTests/Golden/trace/marks.net", "tcp 192.168.1.10:5000 > 93.184.216.34:443 in eth1 flags S"),
        ("marks-telnet-reset", "Tests/ReplayTests/Golden/trace/marks.rules", "Tests/ReplayTests/Golden/trace/marks.net", "tcp 192.168.1.10:5000 > 93.184.216.34:23 in eth1 flags PA len 10"),
        ("marks-dns-notrack", "Tests/ReplayTests/Golden/trace/marks.rules", "Tests/ReplayTests/Golden/trace/marks.net", "udp 192.168.1.10:5000 > 9.9.9.9:53 in eth1 ttl 1"),
    ]

    func testTraces() throws {
        let candidates = [".build/debug/sluice", ".build/x86_64-unknown-linux-gnu/debug/sluice"].map(repo)
        guard let exe = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return XCTFail("sluice not built (swift build --build-tests builds it)")
        }
        for c in Self.cases {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = ["trace", "--rules", repo(c.rules), "--network", repo(c.network), c.packet]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, c.name)
            let golden = URL(fileURLWithPath: repo("Tests/ReplayTests/Golden/trace/\(c.name).txt"))
            if ProcessInfo.processInfo.environment["SLUICE_UPDATE_GOLDEN"] == "1" {
                try data.write(to: golden)
                continue
            }
            XCTAssertEqual(String(decoding: data, as: UTF8.self), try String(contentsOf: golden, encoding: .utf8), c.name)
        }
    }
}
