import Capture
import Replay
import Rules
import Wire
import XCTest

/// Makes the kernel decide: the same frames go through Linux netfilter in a network namespace
/// (a router with eth0/eth1 configured by the same iproute2 lines and the same iptables-restore
/// file) and through `sluice replay`; per-rule counters and the forwarded packets must agree.
///
/// Needs root, `ip netns`, iptables-restore, tcpreplay and tcpdump (make test installs them).
/// Off CI it skips with a loud note when they are missing; on CI (CI=true) it fails instead.
final class KernelDifferentialTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func repo(_ p: String) -> String { Self.repoRoot.appendingPathComponent(p).path }

    func prerequisites() -> String? {
        namespaceTestPrerequisites(["ip", "iptables-restore", "iptables-save", "tcpreplay", "tcpdump", "sysctl"])
    }

    /// Stateless filter rules: counters and forwarded packets.
    func testEdgeScenariosAgreeWithKernel() throws {
        try compare(rules: repo("examples/edge/filter.rules"), minimumCompared: 10, expectForwarded: 14)
    }

    /// The stateful edge box: conntrack matches, a DNAT port forward and MASQUERADE. The kernel's
    /// connection tracking and NAT decide; Sluice must rewrite the same packets the same way.
    func testStatefulNATEdgeAgreesWithKernel() throws {
        try compare(rules: repo("examples/edge/edge.rules"), minimumCompared: 10, expectForwarded: 28)
    }

    func compare(rules: String, minimumCompared: Int, expectForwarded: Int) throws {
        if let missing = prerequisites() {
            let msg = "SKIPPED: KernelDifferentialTests needs root, network namespaces, iptables, tcpreplay, tcpdump (\(missing))"
            print(String(repeating: "!", count: 80) + "\n" + msg + "\n" + String(repeating: "!", count: 80))
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(msg + " — required on CI") }
            return
        }
        let wanFiles = ["port-forward-eth0.pcap", "outbound-nat-eth0.pcap", "ping-eth0.pcap", "udp-eth0.pcap"].map { repo("captures/" + $0) }
        let lanFiles = ["port-forward-eth1.pcap", "outbound-nat-eth1.pcap", "ping-eth1.pcap", "udp-eth1.pcap"].map { repo("captures/" + $0) }
        let network = repo("examples/edge/network")

        // Sluice's view.
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-kdiff-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        _ = try Replayer.run(ReplayOptions(rulesPath: rules, networkPath: network,
                                           inputs: wanFiles.map { ReplayInput(interface: "eth0", path: $0) } + lanFiles.map { ReplayInput(interface: "eth1", path: $0) },
                                           outDir: work + "/sluice"))

        // The kernel's view: namespaces with a unique prefix, deleted even on failure.
        let tag = "sluicekd\(getpid() % 100000)x\(UInt16.random(in: 0 ... .max))"
        let (r, wan, lan) = (tag + "r", tag + "w", tag + "l")
        defer {
            for ns in [r, wan, lan] { _ = try? shell(["ip", "netns", "del", ns], allowFailure: true) }
        }
        for ns in [r, wan, lan] {
            try shell(["ip", "netns", "add", ns])
            try shell(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            try shell(["ip", "-n", ns, "link", "set", "lo", "up"])
        }
        try shell(["ip", "link", "add", "eth0", "netns", r, "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", "w0", "netns", wan])
        try shell(["ip", "link", "add", "eth1", "netns", r, "address", "02:00:00:00:01:01", "type", "veth", "peer", "name", "l0", "netns", lan])
        for (ns, dev) in [(r, "eth0"), (r, "eth1"), (wan, "w0"), (lan, "l0")] { try shell(["ip", "-n", ns, "link", "set", dev, "up"]) }
        // Full checksums on what the router sends (veth would leave them to the peer otherwise).
        for dev in ["eth0", "eth1"] { _ = try? shell(["ip", "netns", "exec", r, "ethtool", "-K", dev, "tx", "off"], allowFailure: true) }
        // The network model file is iproute2 syntax: run its lines in the router namespace.
        for line in try String(contentsOfFile: network, encoding: .utf8).split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            try shell(["ip", "netns", "exec", r] + words)
        }
        try shell(["ip", "-n", r, "neigh", "replace", "203.0.113.254", "lladdr", "02:00:00:00:00:fe", "dev", "eth0", "nud", "permanent"])
        for host in ["192.168.1.10": "02:00:00:00:01:0a", "192.168.1.20": "02:00:00:00:01:14"] {
            try shell(["ip", "-n", r, "neigh", "replace", host.key, "lladdr", host.value, "dev", "eth1", "nud", "permanent"])
        }
        try shell(["ip", "netns", "exec", r, "iptables-restore", rules])

        // Capture what the router sends out of each interface (arriving at the peers).
        var dumps: [Process] = []
        defer { for d in dumps where d.isRunning { kill(d.processIdentifier, SIGKILL) } }
        for (ns, dev, name) in [(wan, "w0", "eth0"), (lan, "l0", "eth1")] {
            let dump = Process()
            dump.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            dump.arguments = ["ip", "netns", "exec", ns, "tcpdump", "-i", dev, "-Q", "in", "-U", "-n", "-w", work + "/kernel-\(name).pcap", "ip"]
            dump.standardError = Pipe()
            dump.standardOutput = FileHandle.nullDevice
            try dump.run()
            dumps.append(dump)
        }
        var ready = false
        for _ in 0 ..< 50 where !ready {
            usleep(100_000)
            ready = ["eth0", "eth1"].allSatisfy { FileManager.default.fileExists(atPath: work + "/kernel-\($0).pcap") }
        }
        XCTAssertTrue(ready, "tcpdump did not start")
        usleep(300_000)
        // Inject in capture-time order across both sides (conntrack is stateful), one frame at a time.
        var frames: [(ts: Int64, ns: String, dev: String, bytes: [UInt8])] = []
        for (files, ns, dev) in [(wanFiles, wan, "w0"), (lanFiles, lan, "l0")] {
            for path in files {
                let f = try CaptureFile.open(path: path)
                for i in f.records.indices { frames.append((f.records[i].timestampNanos, ns, dev, f.withFrame(i) { Array($0) })) }
            }
        }
        frames.sort { $0.ts < $1.ts }
        for (k, fr) in frames.enumerated() {
            let path = work + "/inject-\(k).pcap"
            try PcapWriter.encode(frames: [(bytes: fr.bytes, timestampNanos: fr.ts)], linkTypeRaw: 1, resolution: .microsecond)
                .withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
            try shell(["ip", "netns", "exec", fr.ns, "tcpreplay", "-q", "-t", "-i", fr.dev, path])
        }
        usleep(1_000_000)
        for d in dumps { kill(d.processIdentifier, SIGINT); d.waitUntilExit() }

        // 1. Per-rule counters of every table (OUTPUT chains excluded: the kernel's own answers,
        //    such as the echo reply to a ping of the router, traverse them; Sluice does not answer).
        let kernelSave = try shell(["ip", "netns", "exec", r, "iptables-save", "-c"])
        let kernel = try RestoreParser.parse(kernelSave, file: "iptables-save")
        let ours = try RestoreParser.load(path: work + "/sluice/counters.rules")
        var compared = 0
        for t in ours.tables {
            let kt = try XCTUnwrap(kernel.table(t.name), "table \(t.name) missing in kernel dump")
            for c in t.chains where c.name != "OUTPUT" {
                let k = try XCTUnwrap(kt.chains.first { $0.name == c.name }, "chain \(c.name) missing in kernel dump")
                XCTAssertEqual(k.rules.count, c.rules.count, c.name)
                if c.isBuiltin { XCTAssertEqual(k.counters, c.counters, "policy counters of \(t.name):\(c.name)") }
                for (i, (kr, sr)) in zip(k.rules, c.rules).enumerated() {
                    XCTAssertEqual(kr.counters, sr.counters, "\(t.name):\(c.name) rule \(i + 1)")
                    compared += 1
                }
            }
        }
        XCTAssertGreaterThan(compared, minimumCompared)

        // 2. The packets that left each interface, byte for byte from the IP header on (the
        //    kernel rewrites the MACs). The router's own answers are left out.
        func ipPackets(_ path: String) throws -> [[UInt8]] {
            guard FileManager.default.fileExists(atPath: path) else { return [] }
            let f = try CaptureFile.open(path: path)
            var out: [[UInt8]] = []
            var p = ParsedPacket()
            let router: Set<UInt32> = [IPv4Address(203, 0, 113, 1).value, IPv4Address(192, 168, 1, 1).value]
            for i in f.records.indices {
                f.withFrame(i) { b in
                    guard PacketParser.parse(b, linkType: f.interfaces[f.records[i].interface].linkType!, into: &p), p.kind == .ipv4 else { return }
                    // The kernel's own answers: resets for closed local ports, ICMP replies and errors.
                    if router.contains(p.source) && (p.proto == IPProtocol.icmp && p.icmpType != ICMPType.echoRequest
                        || p.proto == IPProtocol.tcp && p.tcpFlags.contains(.rst)) { return }
                    out.append(Array(b[Int(p.l3Offset) ..< Int(p.l3Offset) + Int(p.ipTotalLength)]))
                }
            }
            return out.sorted { $0.lexicographicallyPrecedes($1) }
        }
        func hex(_ b: [UInt8]) -> String { b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
        var total = 0
        for name in ["eth0", "eth1"] {
            let k = try ipPackets(work + "/kernel-\(name).pcap")
            let s = try ipPackets(work + "/sluice/\(name).pcap")
            total += s.count
            XCTAssertEqual(k.count, s.count, "packets out of \(name)")
            for (a, b) in zip(k, s) where a != b {
                XCTFail("first differing packet out of \(name):\n kernel \(hex(a))\n sluice \(hex(b))")
                break
            }
        }
        XCTAssertEqual(total, expectForwarded)
    }
}
