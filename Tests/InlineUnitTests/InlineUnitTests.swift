import Foundation
import XCTest
@testable import Inline
import NetModel
import Engine
import Rules
import Wire
import CNetfilterQueue

/// The inline module's parts that need no traffic: checksum completion of offloaded packets,
/// the hook rules, and (as root, in a namespace of its own) the network read from the kernel
/// and the queue socket's binding, verdict encoding and error handling.
final class InlineUnitTests: XCTestCase {
    /// A TCP packet whose checksum field holds only the pseudo-header sum (CHECKSUM_PARTIAL, as
    /// the kernel queues it with NFQA_SKB_CSUMNOTREADY) gets its full checksum.
    func testCompleteChecksumOfOffloadedTCPAndUDP() {
        let src = IPv4Address("10.0.0.1")!, dst = IPv4Address("10.0.0.2")!
        for proto in [IPProtocol.tcp, IPProtocol.udp] {
            let good = proto == IPProtocol.tcp
                ? PacketBuilder.tcp(source: src, destination: dst, sourcePort: 1234, destinationPort: 80, flags: [.ack], payload: Array(repeating: 7, count: 301))
                : PacketBuilder.udp(source: src, destination: dst, sourcePort: 1234, destinationPort: 53, payload: Array(repeating: 9, count: 77))
            var partial = good
            let field = 20 + (proto == IPProtocol.tcp ? 16 : 6)
            // The pseudo-header sum, folded but not complemented: what the stack leaves for the NIC.
            let pseudo = Checksum.pseudoHeaderSum(src: src.value, dst: dst.value, proto: proto, length: UInt16(good.count - 20))
            partial.setBE16(field, ~Checksum.fold(pseudo))
            XCTAssertNotEqual(partial, good)
            partial.withUnsafeMutableBytes { Runner.completeChecksum($0) }
            XCTAssertEqual(partial, good, "proto \(proto)")
        }
    }

    /// A later fragment carries no L4 header: nothing is written.
    func testCompleteChecksumLeavesFragmentsAlone() {
        var p = PacketBuilder.ipv4(source: IPv4Address("10.0.0.1")!, destination: IPv4Address("10.0.0.2")!, proto: IPProtocol.udp,
                                   payload: Array(repeating: 1, count: 64), fragmentOffset: 64)
        let before = p
        p.withUnsafeMutableBytes { Runner.completeChecksum($0) }
        XCTAssertEqual(p, before)
    }

    func testHookRulesForOneQueueAndARange() {
        var h = Hooks(firstQueue: 0, lastQueue: 0, injectMark: 0x2000_0000)
        let one = h.commands.map { $0.joined(separator: " ") }
        XCTAssertTrue(one.contains("-t raw -A SLUICE-PRE -j NFQUEUE --queue-num 0 --queue-bypass"))
        XCTAssertTrue(one.contains("-t raw -A SLUICE-OUT -m mark --mark 0x20000000/0x20000000 -j RETURN"))
        XCTAssertTrue(one.contains("-t raw -I PREROUTING 1 ! -i lo -j SLUICE-PRE"))
        // conntrack is turned off before the packet is queued
        XCTAssertLessThan(one.firstIndex(of: "-t raw -A SLUICE-PRE -j CT --notrack")!, one.firstIndex(of: "-t raw -A SLUICE-PRE -j NFQUEUE --queue-num 0 --queue-bypass")!)
        h = Hooks(firstQueue: 2, lastQueue: 5, injectMark: 0x100)
        XCTAssertTrue(h.commands.map { $0.joined(separator: " ") }.contains("-t raw -A SLUICE-PRE -j NFQUEUE --queue-balance 2:5 --queue-bypass"))
    }

    // MARK: - As root, in a namespace of this test's own

    func testLiveNetworkMatchesTheKernelsRoutes() throws {
        try inNamespace { ns in
            try sh(["ip", "netns", "exec", ns, "ip", "link", "add", "a0", "type", "veth", "peer", "name", "a1"])
            try sh(["ip", "netns", "exec", ns, "ip", "link", "add", "b0", "type", "veth", "peer", "name", "b1"])
            for cmd in ["ip link set a0 up", "ip link set a1 up", "ip link set b0 up", "ip link set b1 up", "ip addr add 192.0.2.1/24 dev a0", "ip addr add 198.51.100.1/25 dev b0",
                        "ip route add default via 192.0.2.254", "ip route add 203.0.113.0/24 via 198.51.100.2 metric 5",
                        "ip route add blackhole 10.9.0.0/16", "ip route add 10.7.0.0/16 via 198.51.100.3 table 100",
                        "ip rule add fwmark 0x7 lookup 100 pref 1000", "sysctl -qw net.ipv4.ip_forward=1"] {
                try sh(["ip", "netns", "exec", ns] + cmd.split(separator: " ").map(String.init))
            }
            // Read the network from inside the namespace: run the snapshot in a child that enters it.
            let model = try inside(ns) { try LiveNetwork.snapshot() }
            XCTAssertTrue(model.ipForward)
            for (dst, mark) in [("8.8.8.8", 0), ("203.0.113.9", 0), ("198.51.100.77", 0), ("192.0.2.9", 0), ("10.9.1.1", 0),
                                ("10.7.1.1", 7), ("10.7.1.1", 0), ("192.0.2.1", 0)] as [(String, UInt32)] {
                let got = model.route(destination: IPv4Address(dst)!.value, mark: mark)
                let kernel = try sh(["ip", "netns", "exec", ns, "ip", "-4", "route", "get", dst, "mark", "\(mark)"], allowFailure: true)
                let want: String
                switch got {
                case .unicast(let i, let gw): want = (gw.map { "via \(IPv4Address($0)) " } ?? "") + "dev \(model.interfaceName(i))"
                case .local: want = "local"
                case .blackhole: want = "blackhole"
                default: want = "\(got)"
                }
                if want == "blackhole" { XCTAssertTrue(kernel.contains("Invalid argument") || kernel.contains("blackhole"), "\(dst): \(kernel)"); continue }
                XCTAssertTrue(kernel.contains(want), "\(dst) mark \(mark): model says '\(want)', kernel says '\(kernel)'")
            }
        }
    }

    func testQueueBindsRejectsASecondBinderAndEncodesVerdicts() throws {
        try inNamespace { ns in
            try inside(ns) {
                var c = QueueConfig(number: 7)
                c.batch = 4
                let q = try QueueSocket(c)
                // A second socket on the same queue: the kernel says EBUSY, reported, not fatal to the first.
                XCTAssertThrowsError(try QueueSocket(c)) { e in
                    XCTAssertTrue("\(e)".contains("binding queue 7"), "\(e)")
                }
                // Nothing is queued: a non-blocking receive returns no packet.
                var pkts = [QueuedPacket](repeating: QueuedPacket(), count: 8)
                XCTAssertEqual(pkts.withUnsafeMutableBufferPointer { q.receive(into: $0.baseAddress!, capacity: 8, wait: false) }, 0)
                // Verdict messages: header, verdict attribute, mark, payload, 4-byte aligned, back to back.
                let payload: [UInt8] = [1, 2, 3, 4, 5]
                payload.withUnsafeBytes { q.verdict(id: 42, .accept, mark: 0x10, payload: $0) }
                q.batchVerdict(upTo: 99, .drop)
                let bytes = Array(UnsafeRawBufferPointer(start: q.tx, count: q.txUsed))
                XCTAssertEqual(bytes.count, 52 + 32)
                func le32(_ o: Int) -> UInt32 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
                func be32(_ o: Int) -> UInt32 { UInt32(bigEndian: le32(o)) }
                XCTAssertEqual(le32(0), 52)  // nlmsg_len: 16 + 4 + 12 (verdict) + 8 (mark) + 12 (payload, 9 aligned)
                XCTAssertEqual(bytes[4], 1); XCTAssertEqual(bytes[5], 3)   // type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT
                XCTAssertEqual(Array(bytes[18 ..< 20]), [0, 7])            // queue number, big-endian
                XCTAssertEqual(be32(24), 1); XCTAssertEqual(be32(28), 42)   // NFQA_VERDICT_HDR: accept, id
                XCTAssertEqual(be32(36), 0x10)                             // NFQA_MARK
                XCTAssertEqual(Array(bytes[44 ..< 48]), [1, 2, 3, 4])      // NFQA_PAYLOAD (first bytes)
                XCTAssertEqual(le32(52), 32)
                XCTAssertEqual(bytes[52 + 4], 3)                           // NFQNL_MSG_VERDICT_BATCH
                XCTAssertEqual(be32(52 + 24), 0); XCTAssertEqual(be32(52 + 28), 99)
                q.txUsed = 0  // not sent: no such packets
                q.unbind()
            }
        }
    }

    /// The Prometheus endpoint answers GET /metrics with the queue's series, over HTTP.
    func testMetricsEndpointIsScraped() throws {
        try inNamespace { ns in
            let text: String = try inside(ns) {
                let rules = try RuleLoader.load(path: Self.repo + "/Benchmarks/inline/accept.rules")
                let engine = try Engine(rules: rules, network: try NetworkModel.parse("ip addr add 10.0.0.1/24 dev eth0\n", file: "t"))
                var o = RunOptions()
                o.firstQueue = 9; o.lastQueue = 9
                let runner = try Runner(engine: engine, options: o)
                let metrics = try MetricsServer(address: "127.0.0.1:0", runner: runner)
                metrics.start()
                runner.start()
                defer { runner.stop(); metrics.close() }
                return try Self.httpGet(port: metrics.port, path: "/metrics")
            }
            XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK"), text)
            XCTAssertTrue(text.contains("Content-Type: text/plain; version=0.0.4"), text)
            XCTAssertTrue(text.contains("sluice_queue_packets_total{queue=\"9\"} 0"), text)
            XCTAssertTrue(text.contains("sluice_engine_verdicts_total{verdict=\"forwarded\"} 0"), text)
            XCTAssertTrue(text.contains("sluice_drops_total{reason=\"malformed-bad-ihl\"} 0"), text)
            XCTAssertTrue(text.contains("sluice_nfqueue_waiting{queue=\"9\"} 0"), text)
        }
    }

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func httpGet(port: UInt16, path: String) throws -> String {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { throw NSError(domain: "connect", code: Int(errno)) }
        let req = Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = req.withUnsafeBytes { write(s, $0.baseAddress, $0.count) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(s, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0 ..< n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: - helpers

    func inNamespace(_ body: (String) throws -> Void) throws {
        guard getuid() == 0 else {
            print("!!!! SKIPPED \(name): needs root (network namespaces, NFQUEUE)")
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("must run on CI") }
            return
        }
        let ns = "slu-\(getpid())-\(Int.random(in: 0 ..< 1_000_000))"
        try sh(["ip", "netns", "add", ns])
        defer { _ = try? sh(["ip", "netns", "del", ns]) }
        try sh(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        try body(ns)
    }

    /// Runs `body` on a thread that has entered the namespace (setns affects only that thread,
    /// and processes it starts).
    func inside<T>(_ ns: String, _ body: @escaping () throws -> T) throws -> T {
        let box = ThreadJob()
        var result: Result<T, Error>? = nil
        box.run = {
            let fd = open("/run/netns/\(ns)", O_RDONLY)
            guard fd >= 0, sluice_setns_net(fd) == 0 else { result = .failure(NSError(domain: "setns", code: Int(errno))); return }
            close(fd)
            result = Result { try body() }
        }
        let t = Thread { box.run?(); box.done.signal() }
        t.start()
        box.done.wait()
        return try result!.get()
    }

    @discardableResult
    func sh(_ args: [String], allowFailure: Bool = false) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if p.terminationStatus != 0 && !allowFailure { throw NSError(domain: "sh", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(args): \(text)"]) }
        return text
    }
}

/// A closure handed to another thread, and a semaphore that says it finished.
final class ThreadJob: @unchecked Sendable {
    var run: (() -> Void)?
    let done = DispatchSemaphore(value: 0)
}
