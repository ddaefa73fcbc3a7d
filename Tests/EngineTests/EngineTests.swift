import Classifier
import NetModel
import Rules
import Wire
import XCTest
@testable import Engine

final class EngineTests: XCTestCase {
    let network = """
    ip addr add 203.0.113.1/24 dev eth0
    ip addr add 192.168.1.1/24 dev eth1
    ip route add default via 203.0.113.254 dev eth0
    ip route add 10.99.0.0/16 dev eth1 table 7
    ip route add blackhole 10.66.0.0/16
    sysctl net.ipv4.ip_forward=1
    """

    func engine(_ rules: String, network: String? = nil) throws -> Engine {
        let set = try RestoreParser.parse("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + rules + "\nCOMMIT\n", file: "t.rules")
        return try Engine(rules: set, network: try NetworkModel.parse(network ?? self.network, file: "net"), extraInterfaces: ["eth0", "eth1"])
    }

    struct Outcome { var d: Decision; var rules: [String]; var frame: [UInt8]; var reply: [UInt8] }

    func run(_ e: inout Engine, _ packet: [UInt8], in iface: String?) -> Outcome {
        var bytes = packet
        var p = ParsedPacket()
        var trace = HitTrace()
        var emitted = Emitted()
        let d = bytes.withUnsafeMutableBytes { m in
            e.process(frame: m, linkType: .ipv4, inInterface: iface.map { e.interfaceIndex($0)! }, parsed: &p, trace: &trace, emitted: &emitted)
        }
        return Outcome(d: d, rules: trace.entries.map { e.describe(traceEntry: $0) }, frame: bytes, reply: emitted.reply)
    }

    let lanHost = IPv4Address(192, 168, 1, 10)
    let remote = IPv4Address(93, 184, 216, 34)
    let router = IPv4Address(203, 0, 113, 1)

    /// Per-rule counters and targets live in one slot per rule id, found from the chain's first
    /// id and the rule's index: ids run across tables and chains (mangle before filter here, a
    /// user chain between built-ins), so a slot taken from the wrong place would give another
    /// rule's target or count. `recordHits` off (as `sluice run` and `sluice bench` run) keeps
    /// the trace's entries empty and changes nothing else.
    func testRuleSlotsCountAndDecideAcrossTablesAndChains() throws {
        let set = try RestoreParser.parse("""
            *mangle
            :PREROUTING ACCEPT [0:0]
            :FORWARD ACCEPT [0:0]
            -A PREROUTING -p udp -j MARK --set-mark 7
            -A FORWARD -p tcp --dport 22 -j DROP
            COMMIT
            *filter
            :INPUT ACCEPT [0:0]
            :FORWARD DROP [0:0]
            :OUTPUT ACCEPT [0:0]
            :web - [0:0]
            -A FORWARD -p tcp -j web
            -A FORWARD -p udp -m mark --mark 7 -j ACCEPT
            -A web -p tcp --dport 80 -j ACCEPT
            -A web -p tcp --dport 443 -j RETURN
            -A web -p tcp --dport 8080 -j REJECT
            COMMIT

            """, file: "t.rules")
        for recordHits in [true, false] {
            var e = try Engine(rules: set, network: try NetworkModel.parse(network, file: "net"), extraInterfaces: ["eth0", "eth1"])
            func send(_ packet: [UInt8]) -> (Decision, [Int32]) {
                var bytes = packet
                var p = ParsedPacket()
                var trace = HitTrace()
                trace.recordHits = recordHits
                var emitted = Emitted()
                let d = bytes.withUnsafeMutableBytes { m in
                    e.process(frame: m, linkType: .ipv4, inInterface: e.interfaceIndex("eth1"), parsed: &p, trace: &trace, emitted: &emitted)
                }
                return (d, trace.entries)
            }
            let tcp = { (port: UInt16) in PacketBuilder.tcp(source: self.lanHost, destination: self.remote, sourcePort: 5000, destinationPort: port, flags: .syn) }
            var (d, hits) = send(tcp(80))
            XCTAssertEqual(d.kind, .forwarded)
            XCTAssertEqual(hits.map { e.describe(traceEntry: $0) }, recordHits ? ["mangle:PREROUTING:policy", "mangle:FORWARD:policy", "filter:FORWARD:1", "filter:web:1",
                                                                            "mangle:POSTROUTING:policy"] : [])
            (d, _) = send(tcp(22))
            XCTAssertEqual(d.kind, .dropped)
            XCTAssertEqual(e.describe(traceEntry: d.decidedBy), "mangle:FORWARD:1")
            (d, _) = send(tcp(443))
            XCTAssertEqual(d.kind, .dropped)
            XCTAssertEqual(d.reason, .policy)
            (d, _) = send(tcp(8080))
            XCTAssertEqual(d.kind, .rejected)
            XCTAssertEqual(e.describe(traceEntry: d.decidedBy), "filter:web:3")
            (d, _) = send(PacketBuilder.udp(source: lanHost, destination: remote, sourcePort: 5000, destinationPort: 53, payload: [1, 2, 3]))
            XCTAssertEqual(d.kind, .forwarded)
            XCTAssertEqual(d.mark, 7)
            // Ids: mangle PREROUTING:1 = 0, mangle FORWARD:1 = 1, filter FORWARD:1-2 = 2-3, web:1-3 = 4-6.
            XCTAssertEqual(e.rulePackets, [1, 1, 3, 1, 1, 1, 1])
            XCTAssertEqual(e.ruleBytes[0], 31)   // 20 + 8 + 3
            XCTAssertEqual(e.ruleBytes[4], 40)
        }
    }

    func testForwardingDecrementsTTLAndKeepsChecksumValid() throws {
        var e = try engine("")
        let o = run(&e, PacketBuilder.tcp(source: lanHost, destination: remote, sourcePort: 5000, destinationPort: 80, flags: .syn, ttl: 64), in: "eth1")
        XCTAssertEqual(o.d.kind, .forwarded)
        XCTAssertEqual(e.interfaceName(o.d.outInterface), "eth0")
        XCTAssertEqual(o.frame[8], 63)
        XCTAssertTrue(o.frame.withUnsafeBytes { IPv4View($0)!.checksumValid })
        XCTAssertEqual(o.rules, ["filter:FORWARD:policy"])
    }

    func testLocalDeliveryAndPolicies() throws {
        var e = try engine("-P INPUT DROP\n-A INPUT -i eth1 -p tcp --dport 22 -j ACCEPT")
        var o = run(&e, PacketBuilder.tcp(source: lanHost, destination: IPv4Address(192, 168, 1, 1), sourcePort: 5000, destinationPort: 22, flags: .syn), in: "eth1")
        XCTAssertEqual(o.d.kind, .local)
        XCTAssertEqual(o.rules, ["filter:INPUT:1"])
        // The WAN address is local too (weak host model), but port 23 hits the DROP policy.
        o = run(&e, PacketBuilder.tcp(source: lanHost, destination: router, sourcePort: 5000, destinationPort: 23, flags: .syn), in: "eth1")
        XCTAssertEqual(o.d.kind, .dropped)
        XCTAssertEqual(o.d.reason, .policy)
        XCTAssertEqual(o.rules, ["filter:INPUT:policy"])
        // Subnet broadcast is local.
        o = run(&e, PacketBuilder.udp(source: lanHost, destination: IPv4Address(192, 168, 1, 255), sourcePort: 137, destinationPort: 137, payload: [1]), in: "eth1")
        XCTAssertEqual(o.d.kind, .dropped)
        XCTAssertEqual(o.rules, ["filter:INPUT:policy"])
    }

    func testJumpReturnGotoAndCountersOnlyRules() throws {
        var e = try engine("""
        :a - [0:0]
        :b - [0:0]
        -A FORWARD -p tcp
        -A FORWARD -j a
        -A FORWARD -p tcp --dport 443 -j DROP
        -A FORWARD -g b
        -A FORWARD -j ACCEPT
        -A a -p tcp --dport 80 -j RETURN
        -A a -p tcp --dport 81 -j ACCEPT
        -A b -p udp -j DROP
        """)
        var o = run(&e, PacketBuilder.tcp(source: lanHost, destination: remote, sourcePort: 5000, destinationPort: 80, flags: .syn), in: "eth1")
        // RETURN from a goes back to FORWARD rule 3; goto b; end of b returns past FORWARD
        // (goto does not push), so the FORWARD policy decides.
        XCTAssertEqual(o.rules, ["filter:FORWARD:1", "filter:FORWARD:2", "filter:a:1", "filter:FORWARD:4", "filter:FORWARD:policy"])
        XCTAssertEqual(o.d.kind, .forwarded)
        o = run(&e, PacketBuilder.tcp(source: lanHost, destination: remote, sourcePort: 5000, destinationPort: 81, flags: .syn), in: "eth1")
        XCTAssertEqual(o.rules, ["filter:FORWARD:1", "filter:FORWARD:2", "filter:a:2"])
        o = run(&e, PacketBuilder.tcp(source: lanHost, destination: remote, sourcePort: 5000, destinationPort: 443, flags: .syn), in: "eth1")
        XCTAssertEqual(o.rules, ["filter:FORWARD:1", "filter:FORWARD:2", "filter:FORWARD:3"])
        XCTAssertEqual(o.d.reason, .rule)
        o = run(&e, PacketBuilder.udp(source: lanHost, destination: remote, sourcePort: 5000, destinationPort: 53, payload: [1]), in: "eth1")
        XCTAssertEqual(o.rules, ["filter:FORWARD:2", "filter:FORWARD:4", "filter:b:1"])
        XCTAssertEqual(o.d.kind, .dropped)
        // Counters: rule 1 of FORWARD saw the three TCP packets (40 bytes each).
        let counted = e.ruleSetWithCounters.table(.filter)!
        XCTAssertEqual(counted.chains[1].rules[0].counters, Counters(packets: 3, bytes: 120))
        XCTAssertEqual(counted.chains[1].counters.packets, 1)  // FORWARD policy once
    }

    func testInterfaceWildcardAndNegation() throws {
        var e = try engine("-A FORWARD -i eth+ ! -o eth1 -s 192.168.0.0/16 -j DROP")
        var o = run(&e, PacketBuilder.tcp(source: lanHost, destination: remote, sourcePort: 1, destinationPort: 2, flags: .syn), in: "eth1")
        XCTAssertEqual(o.d.kind, .dropped)
        o = run(&e, PacketBuilder.tcp(source: remote, destination: lanHost, sourcePort: 1, destinationPort: 2, flags: .syn), in: "eth0")
        XCTAssertEqual(o.d.kind, .forwarded)
    }

    func testRoutingDrops() throws {
        var e = try engine("")
        XCTAssertEqual(run(&e, PacketBuilder.tcp(source: remote, destination: IPv4Address(10, 66, 1, 1), sourcePort: 1, destinationPort: 2, flags: .syn), in: "eth0").d.reason, .blackhole)
        XCTAssertEqual(run(&e, PacketBuilder.tcp(source: remote, destination: lanHost, sourcePort: 1, destinationPort: 2, flags: .syn, ttl: 1), in: "eth0").d.reason, .ttlExceeded)
        XCTAssertEqual(run(&e, PacketBuilder.tcp(source: router, destination: lanHost, sourcePort: 1, destinationPort: 2, flags: .syn), in: "eth0").d.reason, .martianSource)
        XCTAssertEqual(run(&e, PacketBuilder.tcp(source: IPv4Address(127, 0, 0, 1), destination: lanHost, sourcePort: 1, destinationPort: 2, flags: .syn), in: "eth0").d.reason, .martianSource)
        var off = try engine("", network: "ip addr add 192.168.1.1/24 dev eth1\nip addr add 203.0.113.1/24 dev eth0\nip route add default via 203.0.113.254")
        XCTAssertEqual(run(&off, PacketBuilder.tcp(source: lanHost, destination: remote, sourcePort: 1, destinationPort: 2, flags: .syn), in: "eth1").d.reason, .forwardingDisabled)
        var none = try engine("", network: "ip addr add 192.168.1.1/24 dev eth1\nsysctl net.ipv4.ip_forward=1")
        XCTAssertEqual(run(&none, PacketBuilder.tcp(source: lanHost, destination: remote, sourcePort: 1, destinationPort: 2, flags: .syn), in: "eth1").d.reason, .noRoute)
    }

    func testLocallyGeneratedTraversesOutput() throws {
        var e = try engine("-A OUTPUT -o eth0 -p udp --dport 53 -j DROP")
        XCTAssertEqual(run(&e, PacketBuilder.udp(source: router, destination: remote, sourcePort: 4000, destinationPort: 53, payload: [1]), in: nil).d.reason, .rule)
        let o = run(&e, PacketBuilder.udp(source: router, destination: remote, sourcePort: 4000, destinationPort: 123, payload: [1]), in: nil)
        XCTAssertEqual(o.d.kind, .sent)
        XCTAssertEqual(o.frame[8], 64)  // not forwarded: TTL unchanged
        XCTAssertEqual(run(&e, PacketBuilder.udp(source: router, destination: IPv4Address(192, 168, 1, 1), sourcePort: 4000, destinationPort: 53, payload: [1]), in: nil).d.kind, .local)
    }

    func testFragmentsAndHotdrop() throws {
        var e = try engine("-A FORWARD -p udp --dport 53 -j DROP")
        // A later fragment has no ports: the port rule does not match it.
        let later = PacketBuilder.ipv4(source: lanHost, destination: remote, proto: IPProtocol.udp, payload: Array(repeating: 0, count: 16), dontFragment: false, fragmentOffset: 64)
        XCTAssertEqual(run(&e, later, in: "eth1").d.kind, .forwarded)
        // A first fragment too short to hold the UDP ports: the kernel's tcp/udp match hotdrops it.
        let tiny = PacketBuilder.ipv4(source: lanHost, destination: remote, proto: IPProtocol.udp, payload: [0, 53, 0], dontFragment: false, moreFragments: true)
        let o = run(&e, tiny, in: "eth1")
        XCTAssertEqual(o.d.kind, .dropped)
        XCTAssertEqual(o.d.reason, .hotdrop)
    }

    func testMalformedAndNonIPv4AreCounted() throws {
        var e = try engine("")
        var bad = PacketBuilder.udp(source: lanHost, destination: remote, sourcePort: 1, destinationPort: 2, payload: [1, 2])
        bad[0] = 0x43
        let o = run(&e, bad, in: "eth1")
        XCTAssertEqual(o.d.reason, .malformed)
        XCTAssertEqual(o.d.malformed, .badIHL)
        XCTAssertEqual(e.malformed[.badIHL], 1)
        let v6 = run(&e, [0x60] + Array(repeating: 0, count: 39), in: "eth1")
        XCTAssertEqual(v6.d.kind, .dropped)  // .ipv4 link type: a version-6 packet is bad here
        XCTAssertEqual(v6.d.malformed, .badIPVersion)
    }
}
