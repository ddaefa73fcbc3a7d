import Capture
import Replay
import Wire
import XCTest

/// Golden tests for the NAT behaviours of issue 4 (Click's habit: input captures, rules, network
/// model -> the exact expected outputs, in `Golden/nat-<scenario>/`; SLUICE_UPDATE_GOLDEN=1
/// rewrites them), each followed by assertions stated without the golden files, so a wrong
/// golden file cannot hide a wrong engine. NATKernelDifferentialTests puts the same scenarios
/// through the kernel.
final class NATGoldenTests: XCTestCase {
    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-natgold-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d.path
    }

    /// Replays the scenario, compares every output file with the golden one, checks what holds
    /// for every scenario (one verdict per packet, every packet that left has valid IP and L4
    /// checksums, and so does the header quoted in an ICMP error) and returns the run.
    func golden(_ s: NATScenario, files: [String], file: StaticString = #filePath, line: UInt = #line) throws -> ReplayRun {
        let out = try tempDir() + "/out"
        let summary = try Replayer.run(s.options(outDir: out))
        XCTAssertEqual(summary.packets, s.packets, file: file, line: line)
        XCTAssertEqual(summary.outputs, files.sorted(), file: file, line: line)
        let goldenDir = NATScenario.repoRoot.appendingPathComponent("Tests/ReplayTests/Golden/nat-\(s.name)")
        for f in files {
            let got = try Data(contentsOf: URL(fileURLWithPath: out + "/" + f))
            let goldenFile = goldenDir.appendingPathComponent(f)
            if ProcessInfo.processInfo.environment["SLUICE_UPDATE_GOLDEN"] == "1" {
                try FileManager.default.createDirectory(at: goldenDir, withIntermediateDirectories: true)
                try got.write(to: goldenFile)
                continue
            }
            XCTAssertEqual(got, try Data(contentsOf: goldenFile), "\(f) differs from \(goldenFile.path)", file: file, line: line)
        }
        let run = try ReplayRun(outDir: out, interfaces: s.interfaces)
        XCTAssertEqual(run.verdicts.count, s.packets, file: file, line: line)
        for (i, v) in run.verdicts.enumerated() { XCTAssertEqual(v["index"] as? Int, i, file: file, line: line) }
        for (i, outs) in run.outputs.enumerated() {
            for o in outs {
                let p = IPPacket(o.ip)
                XCTAssertFalse(o.ip.isEmpty, "packet \(i): missing from \(o.iface).pcap", file: file, line: line)
                guard !o.ip.isEmpty else { continue }
                XCTAssertTrue(p.ipChecksumOK, "packet \(i) out \(o.iface): IP checksum \(p)", file: file, line: line)
                XCTAssertTrue(p.l4ChecksumOK, "packet \(i) out \(o.iface): L4 checksum \(p)", file: file, line: line)
                if let inner = p.inner { XCTAssertTrue(inner.ipChecksumOK, "packet \(i): quoted IP checksum", file: file, line: line) }
            }
        }
        return run
    }

    static let allFiles2 = ["verdicts.jsonl", "eth0.pcap", "eth1.pcap", "local.pcap", "counters.rules", "conntrack.txt", "log.txt"]
    func inputs(_ s: NATScenario) throws -> [IPPacket] {
        try s.mergedInputs().map { IPPacket(IPPacket.ipv4(ofEthernet: $0.frame)!) }
    }
    func single(_ run: ReplayRun, _ i: Int, file: StaticString = #filePath, line: UInt = #line) -> (iface: String, p: IPPacket)? {
        let o = run.outputs[i]
        XCTAssertEqual(o.count, 1, "packet \(i) should leave exactly once: \(run.verdicts[i])", file: file, line: line)
        return o.first.map { ($0.iface, IPPacket($0.ip)) }
    }

    /// 1. Outbound MASQUERADE with replies: TCP, UDP and ping leave with the WAN address and
    ///    their own ports/ids; the replies go back to the LAN host.
    func testMasquerade() throws {
        let s = NATScenario.masquerade
        let run = try golden(s, files: Self.allFiles2)
        let ins = try inputs(s)
        let wan = IPv4Address(203, 0, 113, 1), host = IPv4Address(192, 168, 1, 10), routerLAN = IPv4Address(192, 168, 1, 1)
        var out0 = 0, out1 = 0
        for (i, p) in ins.enumerated() {
            if p.dst == routerLAN {  // a ping of the router itself: delivered, not forwarded
                XCTAssertEqual(run.verdicts[i]["verdict"] as? String, "local")
                continue
            }
            guard let (iface, o) = single(run, i) else { continue }
            if p.src == host {
                out0 += 1
                XCTAssertEqual(iface, "eth0")
                XCTAssertEqual(o.src, wan)
                XCTAssertEqual(o.dst, p.dst)
                if p.hasPorts { XCTAssertEqual(o.sport, p.sport, "port kept when free") } else { XCTAssertEqual(o.be16(o.hl + 4), p.be16(p.hl + 4), "echo id kept") }
            } else {
                out1 += 1
                XCTAssertEqual(iface, "eth1")
                XCTAssertEqual(o.dst, host)
                XCTAssertEqual(o.src, p.src)
            }
            XCTAssertEqual(o.ttl, p.ttl - 1)
            // Only addresses (and the checksums that cover them) change.
            var expect = o
            expect.bytes[12 ..< 20] = p.bytes[12 ..< 20]
            expect.bytes[8] = p.ttl
            expect.bytes[10] = p.bytes[10]; expect.bytes[11] = p.bytes[11]
            let c = p.l4ChecksumOffset
            expect.bytes[c] = p.bytes[c]; expect.bytes[c + 1] = p.bytes[c + 1]
            XCTAssertEqual(expect.bytes, p.bytes, "packet \(i): more than addresses changed")
        }
        XCTAssertEqual([out0, out1], [10, 8])
        XCTAssertEqual(run.conntrack.count, 4)
        XCTAssertTrue(run.conntrack.contains { $0.hasPrefix("tcp") && $0.contains("dst=203.0.113.1 sport=80 dport=50000 [ASSURED]") })
    }

    /// 2. SNAT port clash: the second connection of the same server:port gets another port; with
    ///    a port range, every connection gets a distinct port of the range; each connection keeps
    ///    its port for all its packets and its replies reach the right host.
    func testSNATPortClash() throws {
        let s = NATScenario.snatClash
        let run = try golden(s, files: Self.allFiles2)
        let ins = try inputs(s)
        var portOf: [String: UInt16] = [:]  // "lan host:port>server:port" -> NAT port
        var hostOf: [String: IPv4Address] = [:]  // "server:port>nat port" -> lan host
        for (i, p) in ins.enumerated() where p.src.description.hasPrefix("192.168.1.") {
            guard let (iface, o) = single(run, i) else { continue }
            XCTAssertEqual(iface, "eth0")
            XCTAssertEqual(o.src, IPv4Address(203, 0, 113, 1))
            let key = "\(p.src):\(p.sport)>\(p.dst):\(p.dport)"
            if let port = portOf[key] { XCTAssertEqual(o.sport, port, "packet \(i): connection changed port") } else { portOf[key] = o.sport }
            hostOf["\(p.dst):\(p.dport)>\(o.sport)"] = p.src
        }
        let web = "93.184.216.34:80", ranged = "198.51.100.80:443"
        let a = portOf["192.168.1.10:40000>\(web)"], b = portOf["192.168.1.20:40000>\(web)"]
        XCTAssertEqual(a, 40000, "the first connection keeps its port")
        XCTAssertNotNil(b)
        XCTAssertNotEqual(b, 40000, "the second connection cannot have the first one's reply tuple")
        XCTAssertTrue((1024 ... 65535).contains(b ?? 0))
        let c = portOf["192.168.1.10:40000>\(ranged)"], d = portOf["192.168.1.20:40000>\(ranged)"]
        XCTAssertTrue((1024 ... 1030).contains(c ?? 0) && (1024 ... 1030).contains(d ?? 0), "ports in --to-source range: \(String(describing: c)), \(String(describing: d))")
        XCTAssertNotEqual(c, d)
        // Replies reach the host that owns the NAT port, with its original port.
        for (i, p) in ins.enumerated() where p.dst == IPv4Address(203, 0, 113, 1) {
            guard let (iface, o) = single(run, i) else { continue }
            XCTAssertEqual(iface, "eth1")
            XCTAssertEqual(o.dst, hostOf["\(p.src):\(p.sport)>\(p.dport)"], "packet \(i)")
            XCTAssertEqual(o.dport, 40000)
        }
        // Four connections, four distinct reply tuples.
        XCTAssertEqual(run.conntrack.count, 4)
        let replies = Set(run.conntrack.compactMap { $0.components(separatedBy: " src=").last })
        XCTAssertEqual(replies.count, 4)
    }

    /// 3. NETMAP both ways: the host part is kept, the prefix replaced; ports untouched.
    func testNETMAP() throws {
        let s = NATScenario.netmap
        let run = try golden(s, files: Self.allFiles2)
        let ins = try inputs(s)
        func mapped(_ a: IPv4Address, to prefix: UInt32) -> IPv4Address { IPv4Address(prefix | (a.value & 0xFF)) }
        let lan = IPv4Address(192, 168, 1, 0).value, in8 = IPv4Address(172, 16, 8, 0).value, out9 = IPv4Address(172, 16, 9, 0).value
        for (i, p) in ins.enumerated() {
            guard let (iface, o) = single(run, i) else { continue }
            XCTAssertEqual([o.sport, o.dport], [p.sport, p.dport], "packet \(i): NETMAP keeps ports")
            switch (p.src.value & 0xFFFF_FF00, p.dst.value & 0xFFFF_FF00) {
            case (_, in8):   // inbound to the mapped prefix
                XCTAssertEqual(iface, "eth1"); XCTAssertEqual(o.dst, mapped(p.dst, to: lan)); XCTAssertEqual(o.src, p.src)
            case (lan, _) where p.dst == IPv4Address(198, 51, 100, 7):  // the inbound connection's replies
                XCTAssertEqual(iface, "eth0"); XCTAssertEqual(o.src, mapped(p.src, to: in8)); XCTAssertEqual(o.dst, p.dst)
            case (lan, _):   // outbound
                XCTAssertEqual(iface, "eth0"); XCTAssertEqual(o.src, mapped(p.src, to: out9)); XCTAssertEqual(o.dst, p.dst)
            case (_, out9):  // replies to the outbound connections
                XCTAssertEqual(iface, "eth1"); XCTAssertEqual(o.dst, mapped(p.dst, to: lan)); XCTAssertEqual(o.src, p.src)
            default:
                XCTFail("packet \(i) \(p) is in no direction of the scenario")
            }
        }
        XCTAssertEqual(run.conntrack.count, 3)
    }

    /// 4. Hairpin: the inside client's packets reach the server from the router's LAN address
    ///    (port kept); the server's replies come back through the router and reach the client
    ///    from the public address and port. The outside client is not masqueraded.
    func testHairpin() throws {
        let s = NATScenario.hairpin
        let run = try golden(s, files: Self.allFiles2)
        let ins = try inputs(s)
        let wan = IPv4Address(203, 0, 113, 1), routerLAN = IPv4Address(192, 168, 1, 1)
        let client = IPv4Address(192, 168, 1, 10), server = IPv4Address(192, 168, 1, 20), outside = IPv4Address(198, 51, 100, 7)
        var seen = [0, 0, 0, 0]
        for (i, p) in ins.enumerated() {
            guard let (iface, o) = single(run, i) else { continue }
            if p.src == client {
                seen[0] += 1
                XCTAssertEqual(iface, "eth1"); XCTAssertEqual([o.src, o.dst], [routerLAN, server]); XCTAssertEqual([o.sport, o.dport], [45000, 22])
            } else if p.src == server && p.dst == routerLAN {
                seen[1] += 1
                XCTAssertEqual(iface, "eth1"); XCTAssertEqual([o.src, o.dst], [wan, client]); XCTAssertEqual([o.sport, o.dport], [8080, 45000])
            } else if p.src == outside {
                seen[2] += 1
                XCTAssertEqual(iface, "eth1"); XCTAssertEqual([o.src, o.dst], [outside, server]); XCTAssertEqual([o.sport, o.dport], [40000, 22])
            } else {
                seen[3] += 1
                XCTAssertEqual(iface, "eth0"); XCTAssertEqual([o.src, o.dst], [wan, outside]); XCTAssertEqual([o.sport, o.dport], [8080, 40000])
            }
        }
        XCTAssertEqual(seen, [6, 4, 6, 4])
        XCTAssertEqual(run.conntrack.count, 2)
    }

    /// 5. ICMP errors about masqueraded flows are RELATED and reach the LAN host with the outer
    ///    destination and the quoted source translated back: the quoted header is the packet
    ///    the host sent (TTL aside), so its L4 checksum is the host's own.
    func testICMPErrorTranslation() throws {
        let s = NATScenario.icmpErrors
        let run = try golden(s, files: Self.allFiles2)
        let ins = try inputs(s)
        let host = IPv4Address(192, 168, 1, 10)
        var errors = 0
        for (i, p) in ins.enumerated() {
            guard let (iface, o) = single(run, i) else { continue }
            guard let quoted = p.inner else {
                XCTAssertEqual(iface, p.src == host ? "eth0" : "eth1")
                continue
            }
            errors += 1
            XCTAssertEqual(run.verdicts[i]["ct"] as? String, "RELATED")
            XCTAssertEqual(iface, "eth1")
            XCTAssertEqual([o.src, o.dst], [p.src, host])
            XCTAssertEqual([o.icmpType, o.icmpCode], [p.icmpType, p.icmpCode])
            XCTAssertEqual(o.be32(o.hl + 4), p.be32(p.hl + 4), "the rest of the ICMP header (next-hop MTU) is kept")
            XCTAssertEqual(o.bytes.count, p.bytes.count)
            let inner = try XCTUnwrap(o.inner)
            // The datagram the host sent that this error is about.
            let sent = try XCTUnwrap(ins[..<i].last { $0.src == host && $0.proto == quoted.proto && $0.sport == quoted.sport && $0.dport == quoted.dport },
                                     "no sent packet for \(quoted)")
            XCTAssertEqual([inner.src, inner.dst], [host, quoted.dst])
            XCTAssertEqual([inner.sport, inner.dport], [sent.sport, sent.dport])
            XCTAssertEqual(inner.ttl, quoted.ttl)
            XCTAssertTrue(inner.ipChecksumOK)
            XCTAssertEqual(inner.be16(inner.l4ChecksumOffset), sent.be16(sent.l4ChecksumOffset), "packet \(i): quoted L4 checksum translated back")
            // Everything quoted after the ports is untouched.
            let from = inner.hl + 4
            if inner.proto == 6 {
                XCTAssertEqual(Array(inner.bytes[from ..< inner.hl + 16]), Array(quoted.bytes[from ..< quoted.hl + 16]))
                XCTAssertEqual(Array(inner.bytes[(inner.hl + 18)...]), Array(quoted.bytes[(quoted.hl + 18)...]))
            } else {
                XCTAssertEqual(Array(inner.bytes[from ..< inner.hl + 6]), Array(quoted.bytes[from ..< quoted.hl + 6]))
                XCTAssertEqual(Array(inner.bytes[(inner.hl + 8)...]), Array(quoted.bytes[(quoted.hl + 8)...]))
            }
        }
        XCTAssertEqual(errors, 3)
    }

    /// 6. CONNMARK balancing: both uplinks used; every packet of a connection leaves by the same
    ///    uplink (with that uplink's address), its mark says which, and its replies, arriving on
    ///    that uplink, reach the LAN.
    func testCONNMARKBalancing() throws {
        let s = NATScenario.connmark
        let run = try golden(s, files: ["verdicts.jsonl", "eth0.pcap", "eth1.pcap", "eth2.pcap", "local.pcap", "counters.rules", "conntrack.txt", "log.txt"])
        let ins = try inputs(s)
        let frames = try s.mergedInputs()
        let uplinkAddress = ["eth0": IPv4Address(203, 0, 113, 1), "eth2": IPv4Address(192, 0, 2, 1)]
        let markOf = ["eth0": 1, "eth2": 2]
        var uplinkOf: [String: String] = [:]  // "host:port" -> uplink
        for (i, p) in ins.enumerated() where frames[i].iface == "eth1" {
            guard let (iface, o) = single(run, i) else { continue }
            let conn = "\(p.src):\(p.sport)"
            if let u = uplinkOf[conn] { XCTAssertEqual(iface, u, "packet \(i) of \(conn) changed uplink") } else { uplinkOf[conn] = iface }
            XCTAssertEqual(o.src, uplinkAddress[iface])
            XCTAssertEqual(run.verdicts[i]["mark"] as? Int, markOf[iface])
        }
        XCTAssertEqual(uplinkOf.count, 4)
        XCTAssertEqual(Set(uplinkOf.values), ["eth0", "eth2"], "both uplinks used")
        XCTAssertEqual(uplinkOf.values.filter { $0 == "eth0" }.count, 2, "nth --every 2 alternates")
        for (i, p) in ins.enumerated() where frames[i].iface != "eth1" {
            guard let (iface, o) = single(run, i) else { continue }
            XCTAssertEqual(iface, "eth1")
            let conn = "\(o.dst):\(o.dport)"
            XCTAssertEqual(uplinkOf[conn], frames[i].iface, "packet \(i): reply of \(conn) on another uplink")
            XCTAssertEqual(p.dst, uplinkAddress[frames[i].iface])
            XCTAssertEqual(run.verdicts[i]["mark"] as? Int, markOf[frames[i].iface])
        }
        XCTAssertEqual(run.conntrack.map { $0.contains("mark=1") ? 1 : $0.contains("mark=2") ? 2 : 0 }.sorted(), [1, 1, 2, 2])
    }

    /// 7. Stateful filter, policy DROP: what the LAN started gets its replies (and the RELATED
    ///    port unreachable); nothing new gets in, and nothing unsolicited is tracked.
    func testStatefulFilter() throws {
        let s = NATScenario.stateful
        let run = try golden(s, files: Self.allFiles2)
        let ins = try inputs(s)
        let frames = try s.mergedInputs()
        var dropped: [String] = []
        for (i, p) in ins.enumerated() {
            let v = run.verdicts[i]
            if frames[i].iface == "eth1" {
                XCTAssertEqual(v["verdict"] as? String, "forwarded", "packet \(i)")
                XCTAssertEqual(run.outputs[i].map(\.iface), ["eth0"])
            } else if p.src == IPv4Address(198, 51, 100, 7) || p.dport == 53999 {
                XCTAssertEqual(v["verdict"] as? String, "dropped", "packet \(i) \(p) must not get in")
                XCTAssertEqual(v["reason"] as? String, "policy")
                XCTAssertEqual(run.outputs[i].count, 0)
                dropped.append(v["ct"] as? String ?? "?")
            } else {
                XCTAssertEqual(v["verdict"] as? String, "forwarded", "packet \(i) is a reply")
                XCTAssertEqual(run.outputs[i].map(\.iface), ["eth1"])
                XCTAssertEqual(v["ct"] as? String, p.inner == nil ? "ESTABLISHED" : "RELATED")
                XCTAssertEqual(IPPacket(run.outputs[i][0].ip).dst, IPv4Address(192, 168, 1, 10))
            }
        }
        XCTAssertEqual(dropped, ["NEW", "NEW", "NEW", "INVALID", "NEW"])
        XCTAssertFalse(run.conntrack.contains { $0.contains("198.51.100.7") || $0.contains("53999") }, "a dropped first packet leaves no entry")
        XCTAssertEqual(run.conntrack.count, 4)
    }
}
