import Classifier
import NetModel
import Rules
import Wire
import XCTest
@testable import Engine

/// `EngineOptions.classifier = .compiled` changes nothing: same decisions, same rule traces,
/// same output frames, same counters as the linear scan, on chains long enough to be compiled
/// (user chains with RETURN, goto, MARK before `-m mark`, negations, ports, interfaces).
final class CompiledClassifierTests: XCTestCase {
    func testCompiledEngineMatchesLinearEngine() throws {
        var lines = ["-N svc", "-N deny"]
        for i in 0..<40 {
            let neg = i % 7 == 0 ? "! " : ""
            lines.append("-A svc \(neg)-d 10.0.\(i % 5).0/\(20 + i % 13) -p tcp --dport \(1000 + i * 3):\(1002 + i * 3) -j \(i % 2 == 0 ? "ACCEPT" : "RETURN")")
        }
        lines.append("-A svc -j MARK --set-mark 7")
        for i in 0..<20 { lines.append("-A deny -s 192.168.\(i).0/24 -p udp --sport \(i * 100):\(i * 100 + 50) -j DROP") }
        lines.append("-A deny -m mark --mark 7 -j DROP")
        for i in 0..<30 {
            let iface = i % 3 == 0 ? "-i eth1 " : i % 3 == 1 ? "! -i eth0 " : ""
            let proto = ["-p tcp", "-p udp", "", "! -p tcp"][i % 4]
            lines.append("-A FORWARD \(iface)-s 192.168.\(i % 8).\(i * 8)/\(24 + i % 9) \(proto) -j \(["svc", "ACCEPT", "DROP"][i % 3])")
        }
        lines.append("-A FORWARD -d 10.0.0.0/8 -j svc")
        lines.append("-A FORWARD -g deny")
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + lines.joined(separator: "\n") + "\nCOMMIT\n"
        let set = try RestoreParser.parse(text, file: "t.rules")
        let net = try NetworkModel.parse("ip addr add 203.0.113.1/24 dev eth0\nip addr add 192.168.0.1/16 dev eth1\nip route add default via 203.0.113.254 dev eth0\nsysctl net.ipv4.ip_forward=1", file: "net")
        var compiledOptions = EngineOptions()
        compiledOptions.classifier = .compiled
        var linear = try Engine(rules: set, network: net, extraInterfaces: ["eth0", "eth1"])
        var compiled = try Engine(rules: set, network: net, extraInterfaces: ["eth0", "eth1"], options: compiledOptions)
        XCTAssertTrue(compiled.chainBoxes.contains { $0.compiled && $0.chain.tableCount > 0 }, "no chain was compiled into tables")

        var g: UInt64 = 0x5EED_E061
        func next() -> UInt64 { g &+= 0x9e37_79b9_7f4a_7c15; var z = g; z = (z ^ (z >> 31)) &* 0xbf58_476d_1ce4_e5b9; return z ^ (z >> 29) }
        var dropped = 0, accepted = 0
        for _ in 0..<3000 {
            let src = IPv4Address(192, 168, UInt8(next() % 24), UInt8(truncatingIfNeeded: next()))
            let dst = next() % 2 == 0 ? IPv4Address(10, 0, UInt8(next() % 6), UInt8(truncatingIfNeeded: next()))
                                      : IPv4Address(93, 184, 216, UInt8(truncatingIfNeeded: next()))
            let sport = UInt16(next() % 2100), dport = UInt16(990 + next() % 140)
            let frame = next() % 2 == 0
                ? PacketBuilder.tcp(source: src, destination: dst, sourcePort: sport, destinationPort: dport, flags: .syn)
                : PacketBuilder.udp(source: src, destination: dst, sourcePort: sport, destinationPort: dport, payload: [1, 2, 3])
            let iface = next() % 2 == 0 ? "eth1" : "eth0"
            let a = run(&linear, frame, in: iface), b = run(&compiled, frame, in: iface)
            XCTAssertEqual(a.kind, b.kind); XCTAssertEqual(a.rules, b.rules); XCTAssertEqual(a.frame, b.frame)
            if a.rules != b.rules { return }
            if a.kind == .dropped { dropped += 1 } else { accepted += 1 }
        }
        XCTAssertEqual(linear.rulePackets, compiled.rulePackets)
        XCTAssertEqual(linear.policyPackets, compiled.policyPackets)
        XCTAssertGreaterThan(dropped, 100); XCTAssertGreaterThan(accepted, 100)
    }

    func run(_ e: inout Engine, _ packet: [UInt8], in iface: String) -> (kind: VerdictKind, rules: [String], frame: [UInt8]) {
        var bytes = packet
        var p = ParsedPacket()
        var trace = HitTrace()
        var emitted = Emitted()
        let d = bytes.withUnsafeMutableBytes { m in
            e.process(frame: m, linkType: .ipv4, inInterface: e.interfaceIndex(iface)!, parsed: &p, trace: &trace, emitted: &emitted)
        }
        return (d.kind, trace.entries.map { e.describe(traceEntry: $0) }, bytes)
    }
}
