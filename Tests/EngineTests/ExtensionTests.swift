import Classifier
import Diagnostics
import NetModel
import Rules
import Wire
import XCTest
@testable import Engine

/// Matches and targets beyond the filter basics, one behaviour per test, on hand-built packets.
final class ExtensionTests: XCTestCase {
    let network = """
    ip addr add 203.0.113.1/24 dev eth0
    ip addr add 192.168.1.1/24 dev eth1
    ip addr add 198.51.100.1/24 dev eth2
    ip route add default via 203.0.113.254 dev eth0
    ip route add default via 198.51.100.254 dev eth2 table 100
    ip rule add fwmark 0x2 lookup 100
    sysctl net.ipv4.ip_forward=1
    """
    let lan = IPv4Address(192, 168, 1, 10)
    let remote = IPv4Address(93, 184, 216, 34)
    let router = IPv4Address(203, 0, 113, 1)

    func engine(_ rules: String, options: EngineOptions = EngineOptions()) throws -> Engine {
        let set = try RestoreParser.parse(rules, file: "t.rules")
        return try Engine(rules: set, network: try NetworkModel.parse(network, file: "net"), extraInterfaces: ["eth0", "eth1", "eth2"], options: options)
    }

    struct Out { var d: Decision; var rules: [String]; var frame: [UInt8]; var reply: [UInt8]; var logs: [String] }

    func run(_ e: inout Engine, _ packet: [UInt8], in iface: String?, at t: Int64 = 0) -> Out {
        var bytes = packet
        var p = ParsedPacket()
        var trace = HitTrace(logging: true)
        var emitted = Emitted()
        let d = bytes.withUnsafeMutableBytes { m in
            e.process(frame: m, linkType: .ipv4, inInterface: iface.map { e.interfaceIndex($0)! }, timestampNanos: t, parsed: &p, trace: &trace, emitted: &emitted)
        }
        return Out(d: d, rules: trace.entries.map { e.describe(traceEntry: $0) }, frame: bytes, reply: emitted.reply, logs: trace.logs)
    }

    func syn(_ dport: UInt16, from: IPv4Address? = nil, to: IPv4Address? = nil, ttl: UInt8 = 64, flags: TCPFlags = .syn) -> [UInt8] {
        PacketBuilder.tcp(source: from ?? lan, destination: to ?? remote, sourcePort: 40000, destinationPort: dport, sequence: 100, flags: flags,
                          options: [2, 4, 0x05, 0xb4], ttl: ttl)
    }

    func testTablesRunInKernelOrderAndMarkSteersPolicyRouting() throws {
        var e = try engine("""
        *raw
        :PREROUTING ACCEPT [0:0]
        -A PREROUTING -p tcp
        COMMIT
        *mangle
        :PREROUTING ACCEPT [0:0]
        -A PREROUTING -p tcp --dport 443 -j MARK --set-mark 0x2
        COMMIT
        *filter
        :FORWARD ACCEPT [0:0]
        -A FORWARD -m mark --mark 0x2 -o eth2
        COMMIT
        """)
        var o = run(&e, syn(443), in: "eth1")
        XCTAssertEqual(o.rules, ["raw:PREROUTING:1", "raw:PREROUTING:policy", "mangle:PREROUTING:1", "mangle:PREROUTING:policy", "mangle:FORWARD:policy",
                                 "filter:FORWARD:1", "filter:FORWARD:policy", "mangle:POSTROUTING:policy"])
        XCTAssertEqual(e.interfaceName(o.d.outInterface), "eth2")  // fwmark 0x2 -> table 100
        XCTAssertEqual(o.d.mark, 2)
        o = run(&e, syn(80), in: "eth1")
        XCTAssertEqual(e.interfaceName(o.d.outInterface), "eth0")
    }

    func testMarkForms() throws {
        var e = try engine("""
        *mangle
        :PREROUTING ACCEPT [0:0]
        -A PREROUTING -j MARK --set-mark 0xf0
        -A PREROUTING -j MARK --or-mark 0x1
        -A PREROUTING -j MARK --and-mark 0x31
        -A PREROUTING -j MARK --xor-mark 0x3
        COMMIT
        """)
        // 0xf0 | 0x1 = 0xf1; & 0x31 = 0x31; ^ 0x3 = 0x32
        XCTAssertEqual(run(&e, syn(1), in: "eth1").d.mark, 0x32)
    }

    func testRejectPortUnreachableQuotesTheForwardedPacket() throws {
        var e = try engine("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 23 -j REJECT\nCOMMIT\n")
        let o = run(&e, syn(23), in: "eth1")
        XCTAssertEqual(o.d.kind, .rejected)
        XCTAssertEqual(e.interfaceName(o.d.generatedOut), "eth1")
        o.reply.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertEqual(ip.source, IPv4Address(192, 168, 1, 1).value)  // the route back to the sender picks eth1's address
            XCTAssertEqual(ip.destination, lan.value)
            XCTAssertEqual(ip.ttl, 64)
            XCTAssertEqual(ip.tos, 0xC0)
            XCTAssertTrue(ip.checksumValid)
            let icmp = ICMPView(ip.payload)!
            XCTAssertEqual(icmp.type, 3); XCTAssertEqual(icmp.code, 3)
            XCTAssertTrue(icmp.checksumValid)
            // The quote is the packet as REJECT saw it: TTL already decremented by forwarding.
            XCTAssertEqual(icmp.quote?.summary.destinationPort, 23)
            XCTAssertEqual(ip.payload[8 + 8], 63)
        }
    }

    func testRejectTCPResetForALocalPort() throws {
        var e = try engine("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset\nCOMMIT\n")
        let o = run(&e, syn(25, from: IPv4Address(198, 18, 0, 5), to: router), in: "eth0")
        XCTAssertEqual(o.d.kind, .rejected)
        XCTAssertEqual(e.interfaceName(o.d.generatedOut), "eth0")  // back along the default route
        o.reply.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertEqual(ip.source, router.value)
            XCTAssertTrue(ip.dontFragment)
            let t = TCPView(ip.payload)!
            XCTAssertEqual(t.flags, [.rst, .ack])
            XCTAssertEqual(t.sequence, 0)
            XCTAssertEqual(t.acknowledgment, 101)  // seq + SYN
            XCTAssertEqual(t.sourcePort, 25)
            XCTAssertTrue(t.checksumValid(source: ip.source, destination: ip.destination))
        }
    }

    func testTTLTargetAndTTLMatchSeeTheForwardDecrement() throws {
        var e = try engine("""
        *mangle
        :PREROUTING ACCEPT [0:0]
        -A PREROUTING -p tcp --dport 1 -j TTL --ttl-set 10
        COMMIT
        *filter
        :FORWARD ACCEPT [0:0]
        -A FORWARD -m ttl --ttl-eq 9 -j ACCEPT
        -A FORWARD -j DROP
        COMMIT
        """)
        let o = run(&e, syn(1), in: "eth1")
        XCTAssertEqual(o.d.kind, .forwarded)
        XCTAssertEqual(o.frame[8], 9)
        XCTAssertTrue(o.frame.withUnsafeBytes { IPv4View($0)!.checksumValid })
        XCTAssertEqual(run(&e, syn(2), in: "eth1").d.kind, .dropped)
    }

    func testTCPFlagsOptionsMultiportLengthIPRange() throws {
        var e = try engine("""
        *filter
        :FORWARD DROP [0:0]
        -A FORWARD -p tcp --syn -m tcp --tcp-option 2 -m multiport --dports 20:22,80 -m length --length 40:100 -m iprange --src-range 192.168.1.5-192.168.1.15 -j ACCEPT
        COMMIT
        """)
        XCTAssertEqual(run(&e, syn(80), in: "eth1").d.kind, .forwarded)
        XCTAssertEqual(run(&e, syn(21), in: "eth1").d.kind, .forwarded)
        XCTAssertEqual(run(&e, syn(23), in: "eth1").d.kind, .dropped)
        XCTAssertEqual(run(&e, syn(80, flags: [.syn, .ack]), in: "eth1").d.kind, .dropped)
        XCTAssertEqual(run(&e, syn(80, from: IPv4Address(192, 168, 1, 20)), in: "eth1").d.kind, .dropped)
        let noOpt = PacketBuilder.tcp(source: lan, destination: remote, sourcePort: 1, destinationPort: 80, flags: .syn)
        XCTAssertEqual(run(&e, noOpt, in: "eth1").d.kind, .dropped)
    }

    func testStatisticNthAndRandomAreDeterministic() throws {
        let rules = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m statistic --mode nth --every 3 --packet 0 -j DROP\nCOMMIT\n"
        var e = try engine(rules)
        let kinds = (0 ..< 6).map { _ in run(&e, syn(1), in: "eth1").d.kind }
        // xt_statistic as the kernel runs it: --every 3 --packet 0 matches the 1st, 4th, ... packet.
        XCTAssertEqual(kinds, [.dropped, .forwarded, .forwarded, .dropped, .forwarded, .forwarded])
        let random = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m statistic --mode random --probability 0.5 -j DROP\nCOMMIT\n"
        var a = try engine(random), b = try engine(random)
        let ra = (0 ..< 200).map { _ in run(&a, syn(1), in: "eth1").d.kind }
        let rb = (0 ..< 200).map { _ in run(&b, syn(1), in: "eth1").d.kind }
        XCTAssertEqual(ra, rb)
        let dropped = ra.filter { $0 == .dropped }.count
        XCTAssertTrue(dropped > 70 && dropped < 130, "\(dropped) of 200")
    }

    func testLimitUsesPacketTimestamps() throws {
        var e = try engine("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m limit --limit 1/second --limit-burst 2 -j ACCEPT\nCOMMIT\n")
        let s: Int64 = 1_000_000_000
        let kinds = [0, 0, 0, s / 2, s, 3 * s, 3 * s, 3 * s].map { run(&e, syn(1), in: "eth1", at: $0).d.kind }
        // Burst of 2, then one credit per second (half a credit at 0.5 s is not enough).
        XCTAssertEqual(kinds, [.forwarded, .forwarded, .dropped, .dropped, .forwarded, .forwarded, .forwarded, .dropped])
    }

    func testRecentSetAndUpdateWithHitcount() throws {
        var e = try engine("""
        *filter
        :INPUT ACCEPT [0:0]
        -A INPUT -p tcp --dport 22 -m recent --update --seconds 60 --hitcount 3 --name ssh -j DROP
        -A INPUT -p tcp --dport 22 -m recent --set --name ssh
        COMMIT
        """)
        let s: Int64 = 1_000_000_000
        let kinds = (0 ..< 5).map { i in run(&e, syn(22, to: router), in: "eth0", at: Int64(i) * s).d.kind }
        // --set stamps every accepted packet; --update matches once 3 stamps lie within 60 s
        // (the fourth packet), then stamps again itself.
        XCTAssertEqual(kinds, [.local, .local, .local, .dropped, .dropped])
        let later = run(&e, syn(22, to: router), in: "eth0", at: 200 * s).d.kind
        XCTAssertEqual(later, .local)
    }

    func testAddrTypeAndPkttypeAndSet() throws {
        var sets = EngineOptions()
        sets.ipsets = try IPSetCollection.parse("create blocked hash:net family inet\nadd blocked 93.184.216.0/24\n", file: "sets")
        var e = try engine("""
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        -A INPUT -m addrtype --dst-type BROADCAST -m pkttype --pkt-type broadcast -j DROP
        -A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT
        -A INPUT -j DROP
        -A FORWARD -m set --match-set blocked dst -j DROP
        COMMIT
        """, options: sets)
        XCTAssertEqual(run(&e, PacketBuilder.udp(source: lan, destination: IPv4Address(192, 168, 1, 255), sourcePort: 1, destinationPort: 2, payload: [1]), in: "eth1").d.reason, .rule)
        XCTAssertEqual(run(&e, syn(22, to: IPv4Address(192, 168, 1, 1)), in: "eth1").d.kind, .local)
        // The WAN address is LOCAL, but not on eth1: --limit-iface-in makes it UNICAST there.
        XCTAssertEqual(run(&e, syn(22, to: router), in: "eth1").d.kind, .dropped)
        XCTAssertEqual(run(&e, syn(80), in: "eth1").d.kind, .dropped)
        XCTAssertEqual(run(&e, syn(80, to: IPv4Address(1, 1, 1, 1)), in: "eth1").d.kind, .forwarded)
    }

    func testLogLineIsKernelStyle() throws {
        var e = try engine("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j LOG --log-prefix \"fw: \"\nCOMMIT\n")
        let o = run(&e, syn(22), in: "eth1")
        XCTAssertEqual(o.logs, ["fw: IN=eth1 OUT=eth0 SRC=192.168.1.10 DST=93.184.216.34 LEN=44 TOS=0x00 PREC=0x00 TTL=63 ID=0 DF PROTO=TCP SPT=40000 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0 "])
    }

    func testTCPMSSLowersTheOption() throws {
        var e = try engine("*mangle\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400\nCOMMIT\n")
        let o = run(&e, syn(80), in: "eth1")
        o.frame.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            let t = TCPView(ip.payload)!
            XCTAssertEqual(t.mss, 1400)
            XCTAssertTrue(t.checksumValid(source: ip.source, destination: ip.destination))
        }
    }

    func testTimeExceededIsSentBack() throws {
        var e = try engine("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")
        let o = run(&e, syn(80, ttl: 1), in: "eth1")
        XCTAssertEqual(o.d.reason, .ttlExceeded)
        XCTAssertEqual(e.interfaceName(o.d.generatedOut), "eth1")
        o.reply.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertEqual(ICMPView(ip.payload)!.type, 11)
            XCTAssertEqual(ip.source, IPv4Address(192, 168, 1, 1).value)
        }
    }

    func testSocketMatchesAreRefusedAtLoadWithTheirLine() {
        XCTAssertThrowsError(try engine("*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m owner --uid-owner 0 -j ACCEPT\nCOMMIT\n")) { err in
            XCTAssertEqual((err as? Diagnostic)?.description,
                           "t.rules:3:1: match 'owner' needs the box's sockets, which a capture does not carry; Sluice cannot evaluate it")
        }
    }
}
