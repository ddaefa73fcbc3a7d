import Conntrack
import NetModel
import Rules
import Wire
import XCTest
@testable import Engine

/// Connection tracking and NAT in the engine: states, bindings applied both ways, RELATED ICMP
/// errors translated, CONNMARK, hairpin.
final class ConntrackNATTests: XCTestCase {
    let network = """
    ip addr add 203.0.113.1/24 dev eth0
    ip addr add 192.168.1.1/24 dev eth1
    ip route add default via 203.0.113.254 dev eth0
    sysctl net.ipv4.ip_forward=1
    """
    let lan = IPv4Address(192, 168, 1, 10)
    let server = IPv4Address(192, 168, 1, 20)
    let remote = IPv4Address(93, 184, 216, 34)
    let wan = IPv4Address(203, 0, 113, 1)

    func engine(_ rules: String) throws -> Engine {
        var o = EngineOptions()
        o.conntrackCapacity = 1024
        o.conntrackSecret = (1, 2)
        return try Engine(rules: try RestoreParser.parse(rules, file: "t.rules"), network: try NetworkModel.parse(network, file: "net"),
                          extraInterfaces: ["eth0", "eth1"], options: o)
    }

    struct Out { var d: Decision; var frame: [UInt8]; var reply: [UInt8] }

    func run(_ e: inout Engine, _ packet: [UInt8], in iface: String, at t: Int64 = 0) -> Out {
        var bytes = packet
        var p = ParsedPacket()
        var trace = HitTrace(logging: true)
        var emitted = Emitted()
        let d = bytes.withUnsafeMutableBytes { m in
            e.process(frame: m, linkType: .ipv4, inInterface: e.interfaceIndex(iface)!, timestampNanos: t, parsed: &p, trace: &trace, emitted: &emitted)
        }
        return Out(d: d, frame: bytes, reply: emitted.reply)
    }

    func tcp(_ s: IPv4Address, _ sp: UInt16, _ d: IPv4Address, _ dp: UInt16, _ flags: TCPFlags, seq: UInt32, ack: UInt32 = 0) -> [UInt8] {
        PacketBuilder.tcp(source: s, destination: d, sourcePort: sp, destinationPort: dp, sequence: seq, acknowledgment: ack, flags: flags)
    }

    func header(_ b: [UInt8]) -> (src: IPv4Address, dst: IPv4Address, sport: UInt16, dport: UInt16, valid: Bool) {
        b.withUnsafeBytes { r in
            let ip = IPv4View(r)!
            let t = TCPView(ip.payload)
            let u = UDPView(ip.payload)
            let sport = ip.proto == 6 ? t!.sourcePort : u?.sourcePort ?? 0
            let dport = ip.proto == 6 ? t!.destinationPort : u?.destinationPort ?? 0
            let l4ok = ip.proto == 6 ? t!.checksumValid(source: ip.source, destination: ip.destination) : true
            return (IPv4Address(ip.source), IPv4Address(ip.destination), sport, dport, ip.checksumValid && l4ok)
        }
    }

    let stateful = """
    *nat
    :PREROUTING ACCEPT [0:0]
    :INPUT ACCEPT [0:0]
    :OUTPUT ACCEPT [0:0]
    :POSTROUTING ACCEPT [0:0]
    -A PREROUTING -i eth0 -d 203.0.113.1 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.20:22
    -A PREROUTING -i eth1 -d 203.0.113.1 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.20:22
    -A POSTROUTING -o eth0 -s 192.168.1.0/24 -j MASQUERADE
    -A POSTROUTING -o eth1 -s 192.168.1.0/24 -d 192.168.1.0/24 -j MASQUERADE
    COMMIT
    *filter
    :FORWARD DROP [0:0]
    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    -A FORWARD -m conntrack --ctstate INVALID -j DROP
    -A FORWARD -m conntrack --ctstate DNAT -j ACCEPT
    -A FORWARD -i eth1 -o eth0 -j ACCEPT
    COMMIT
    """

    func testMasqueradeBothWaysAndStates() throws {
        var e = try engine(stateful)
        var o = run(&e, tcp(lan, 50000, remote, 80, .syn, seq: 1), in: "eth1")
        XCTAssertEqual(o.d.kind, .forwarded); XCTAssertEqual(o.d.ct, .new)
        var h = header(o.frame)
        XCTAssertEqual(h.src, wan); XCTAssertEqual(h.sport, 50000); XCTAssertTrue(h.valid)
        // The reply comes to the WAN address and goes back to the LAN host.
        o = run(&e, tcp(remote, 80, wan, 50000, [.syn, .ack], seq: 100, ack: 2), in: "eth0")
        XCTAssertEqual(o.d.kind, .forwarded); XCTAssertEqual(o.d.ct, .established)
        h = header(o.frame)
        XCTAssertEqual(h.dst, lan); XCTAssertEqual(h.dport, 50000); XCTAssertTrue(h.valid)
        XCTAssertEqual(e.interfaceName(o.d.outInterface), "eth1")
        // Something unsolicited to the WAN address on another port is not forwarded.
        o = run(&e, tcp(remote, 80, wan, 50001, .ack, seq: 5, ack: 5), in: "eth0")
        XCTAssertNotEqual(o.d.kind, .forwarded)
        let listing = e.conntrackListing(now: 0)
        XCTAssertTrue(listing.hasPrefix("tcp      6 60 SYN_RECV src=192.168.1.10 dst=93.184.216.34 sport=50000 dport=80 src=93.184.216.34 dst=203.0.113.1 sport=80 dport=50000 mark=0 use=1"), listing)
    }

    /// `-m conntrack --ctstate` alone compiles to the state residual; with any other option
    /// (here `--ctdir`) to the full conntrack match. Both answer as xt_conntrack: an
    /// ESTABLISHED packet in the original direction passes the state-only rule and not the one
    /// that also asks for REPLY.
    func testConntrackStateAloneAndWithDirection() throws {
        func rules(_ extra: String) -> String {
            "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m conntrack --ctstate NEW\(extra.isEmpty ? "" : " --ctdir ORIGINAL") -j ACCEPT\n"
                + "-A FORWARD -m conntrack --ctstate ESTABLISHED\(extra) -j ACCEPT\nCOMMIT\n"
        }
        var alone = try engine(rules(""))
        var withDir = try engine(rules(" --ctdir REPLY"))
        func isState(_ m: ResidualMatch) -> Bool { if case .ctState = m { return true }; return false }
        func isConntrack(_ m: ResidualMatch) -> Bool { if case .conntrack = m { return true }; return false }
        XCTAssertEqual(alone.residuals.filter(isState).count, 2)
        XCTAssertEqual(alone.residuals.filter(isConntrack).count, 0)
        XCTAssertEqual(withDir.residuals.filter(isConntrack).count, 2)
        let syn = tcp(lan, 40000, remote, 80, .syn, seq: 1)
        let synAck = tcp(remote, 80, lan, 40000, [.syn, .ack], seq: 100, ack: 2)
        let ack = tcp(lan, 40000, remote, 80, .ack, seq: 2, ack: 101)
        for e in [0, 1] {
            func go(_ p: [UInt8], _ i: String) -> Decision { e == 0 ? run(&alone, p, in: i).d : run(&withDir, p, in: i).d }
            var d = go(syn, "eth1")
            XCTAssertEqual(d.kind, .forwarded, "engine \(e): NEW, original direction"); XCTAssertEqual(d.ct, .new)
            d = go(synAck, "eth0")
            XCTAssertEqual(d.kind, .forwarded, "engine \(e): ESTABLISHED, reply direction"); XCTAssertEqual(d.ct, .established)
            d = go(ack, "eth1")
            XCTAssertEqual(d.ct, .established)
            XCTAssertEqual(d.kind, e == 0 ? .forwarded : .dropped, "engine \(e): ESTABLISHED, original direction")
        }
    }

    func testMasqueradePicksAnotherPortWhenTaken() throws {
        var e = try engine(stateful)
        _ = run(&e, tcp(lan, 50000, remote, 80, .syn, seq: 1), in: "eth1")
        let other = IPv4Address(192, 168, 1, 11)
        let o = run(&e, tcp(other, 50000, remote, 80, .syn, seq: 1), in: "eth1")
        let h = header(o.frame)
        XCTAssertEqual(h.src, wan)
        XCTAssertNotEqual(h.sport, 50000)
        XCTAssertTrue(h.valid)
    }

    func testPortForwardAndHairpin() throws {
        var e = try engine(stateful)
        var o = run(&e, tcp(IPv4Address(198, 51, 100, 7), 40000, wan, 8080, .syn, seq: 1), in: "eth0")
        XCTAssertEqual(o.d.kind, .forwarded)
        var h = header(o.frame)
        XCTAssertEqual(h.dst, server); XCTAssertEqual(h.dport, 22); XCTAssertTrue(h.valid)
        o = run(&e, tcp(server, 22, IPv4Address(198, 51, 100, 7), 40000, [.syn, .ack], seq: 9, ack: 2), in: "eth1")
        h = header(o.frame)
        XCTAssertEqual(h.src, wan); XCTAssertEqual(h.sport, 8080); XCTAssertTrue(h.valid)
        // Hairpin: a LAN host uses the public address; DNAT to the server and MASQUERADE back
        // through eth1 so the server answers the router, not the host directly.
        o = run(&e, tcp(lan, 41000, wan, 8080, .syn, seq: 1), in: "eth1")
        XCTAssertEqual(o.d.kind, .forwarded)
        XCTAssertEqual(e.interfaceName(o.d.outInterface), "eth1")
        h = header(o.frame)
        XCTAssertEqual(h.dst, server); XCTAssertEqual(h.src, IPv4Address(192, 168, 1, 1)); XCTAssertTrue(h.valid)
    }

    func testICMPErrorIsRelatedAndTranslated() throws {
        var e = try engine(stateful)
        let query = PacketBuilder.udp(source: lan, destination: IPv4Address(9, 9, 9, 9), sourcePort: 5353, destinationPort: 53, payload: [1, 2])
        var o = run(&e, query, in: "eth1")
        XCTAssertEqual(o.d.kind, .forwarded)
        // The error quotes the translated datagram (from the WAN address).
        let err = PacketBuilder.icmpError(source: IPv4Address(9, 9, 9, 9), destination: wan, type: 3, code: 3, quoting: o.frame)
        o = run(&e, err, in: "eth0")
        XCTAssertEqual(o.d.ct, .related)
        XCTAssertEqual(o.d.kind, .forwarded)
        o.frame.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertEqual(ip.destination, lan.value)
            XCTAssertTrue(ip.checksumValid)
            let c = ICMPView(ip.payload)!
            XCTAssertTrue(c.checksumValid)
            XCTAssertEqual(c.quote?.summary, ICMPQuoteSummary(proto: 17, source: lan, destination: IPv4Address(9, 9, 9, 9), sourcePort: 5353, destinationPort: 53))
        }
        // An error about nothing known is INVALID and dropped.
        let stray = PacketBuilder.icmpError(source: IPv4Address(9, 9, 9, 9), destination: wan, type: 3, code: 3,
                                            quoting: PacketBuilder.udp(source: wan, destination: IPv4Address(1, 1, 1, 1), sourcePort: 1, destinationPort: 2, payload: [0]))
        o = run(&e, stray, in: "eth0")
        XCTAssertEqual(o.d.ct, .invalid)
    }

    func testDroppedFirstPacketLeavesNoConnection() throws {
        var e = try engine("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m state --state NEW -p tcp --dport 23 -j DROP\nCOMMIT\n")
        _ = run(&e, tcp(lan, 1, remote, 23, .syn, seq: 1), in: "eth1")
        XCTAssertEqual(e.conntrack?.count, 0)
        _ = run(&e, tcp(lan, 1, remote, 22, .syn, seq: 1), in: "eth1")
        XCTAssertEqual(e.conntrack?.count, 1)
    }

    func testConnmarkSaveAndRestore() throws {
        var e = try engine("""
        *mangle
        :PREROUTING ACCEPT [0:0]
        -A PREROUTING -j CONNMARK --restore-mark
        -A PREROUTING -m mark --mark 0 -i eth1 -j MARK --set-mark 7
        -A PREROUTING -j CONNMARK --save-mark
        COMMIT
        """)
        _ = run(&e, tcp(lan, 1, remote, 80, .syn, seq: 1), in: "eth1")
        let o = run(&e, tcp(remote, 80, lan, 1, [.syn, .ack], seq: 5, ack: 2), in: "eth0")
        XCTAssertEqual(o.d.mark, 7)  // the reply got the connection's mark back
        XCTAssertTrue(e.conntrackListing(now: 0).contains("mark=7"))
    }

    func testBadChecksumIsInvalid() throws {
        var e = try engine("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n")
        var p = tcp(lan, 1, remote, 80, .syn, seq: 1)
        p[36] ^= 0xFF  // TCP checksum
        XCTAssertEqual(run(&e, p, in: "eth1").d.reason, .rule)
    }
}
