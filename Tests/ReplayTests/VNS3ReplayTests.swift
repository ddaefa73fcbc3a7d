import Capture
import Replay
import Rules
import Wire
import XCTest

/// VNS3's COPY (mirror to a plugin) and LOOKUP (route through a plugin's table) in replay.
final class VNS3ReplayTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func repo(_ p: String) -> String { Self.repoRoot.appendingPathComponent(p).path }

    func testCopyAndLookup() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-vns3-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rules = try RuleLoader.load(path: repo("Tests/ReplayTests/Golden/vns3/plugins.vns3"), dialect: nil,
                                        variables: ["waf_table": "100", "analyzer_ip": "192.168.1.50"])
        var options = ReplayOptions(rulesPath: "plugins.vns3", networkPath: repo("Tests/ReplayTests/Golden/vns3/network"),
                                    inputs: [ReplayInput(interface: "eth0", path: repo("captures/edge-eth0.pcap")),
                                             ReplayInput(interface: "eth1", path: repo("captures/edge-eth1.pcap"))],
                                    outDir: dir)
        options.ruleSet = rules
        let s = try Replayer.run(options)
        // Web requests from the LAN left through the plugin (table 100), not eth0.
        XCTAssertEqual(s.outPerInterface["plugin0"], 6)
        // Everything arriving on eth0 that went on (IPv4, not malformed) was copied to eth1's
        // analyzer: 6 port-forward + 4 web replies + 3 ping replies + 1 DNS answer + 1 bad checksum.
        let copies = try CaptureFile.open(path: dir + "/copy-192.168.1.50.pcap")
        XCTAssertEqual(copies.records.count, 15)
        let lines = try String(contentsOfFile: dir + "/verdicts.jsonl", encoding: .utf8).split(separator: "\n")
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(first["out"] as? [String], ["eth1"])  // the copy of the first SYN, out toward the analyzer
        // The DNS query (FORWARD DROP) was not forwarded.
        XCTAssertEqual(s.dropReasons["rule"], 1)
    }
}
