import XCTest
@testable import Wire

final class LinkLayerTests: XCTestCase {
    let mac1: [UInt8] = [0x02, 0, 0, 0, 0, 1]
    let mac2: [UInt8] = [0x02, 0, 0, 0, 0, 2]

    func parse(_ f: [UInt8], _ lt: LinkType) -> ParsedPacket {
        var p = ParsedPacket()
        _ = f.withUnsafeBytes { PacketParser.parse($0, linkType: lt, into: &p) }
        return p
    }

    func testEthernetAndVLANStacks() {
        let plain = PacketBuilder.ethernet(destination: mac1, source: mac2, payload: Fixtures.udp)
        var p = parse(plain, .ethernet)
        XCTAssertEqual(p.kind, .ipv4); XCTAssertEqual(p.l3Offset, 14); XCTAssertEqual(p.destinationPort, 53)
        let q = PacketBuilder.ethernet(destination: mac1, source: mac2, vlanTags: [100], payload: Fixtures.udp)
        p = parse(q, .ethernet)
        XCTAssertEqual(p.l3Offset, 18); XCTAssertEqual(p.vlanCount, 1); XCTAssertEqual(p.outerVID, 100)
        // 802.1ad S-tag then 802.1Q C-tag.
        var qinq = mac1 + mac2
        qinq.appendBE16(EtherType.qinq); qinq.appendBE16(2001)
        qinq.appendBE16(EtherType.vlan); qinq.appendBE16(7)
        qinq.appendBE16(EtherType.ipv4); qinq += Fixtures.tcpSYN
        p = parse(qinq, .ethernet)
        XCTAssertEqual(p.kind, .ipv4); XCTAssertEqual(p.l3Offset, 22); XCTAssertEqual(p.vlanCount, 2)
        XCTAssertEqual(p.outerVID, 2001); XCTAssertEqual(p.destinationPort, 22)
        // A tag cut short.
        p = parse(Array(qinq[0 ..< 16]), .ethernet)
        XCTAssertEqual(p.drop, .truncatedLinkHeader)
    }

    func testNonIPv4IsRecognisedNotDropped() {
        let arp = PacketBuilder.ethernet(destination: mac1, source: mac2, etherType: EtherType.arp, payload: Array(repeating: 0, count: 28))
        var pp = ParsedPacket()
        XCTAssertTrue(arp.withUnsafeBytes { PacketParser.parse($0, linkType: .ethernet, into: &pp) })
        XCTAssertEqual(pp.kind, .arp); XCTAssertNil(pp.drop)
        let v6 = PacketBuilder.ethernet(destination: mac1, source: mac2, etherType: EtherType.ipv6, payload: [0x60] + Array(repeating: 0, count: 39))
        XCTAssertEqual(parse(v6, .ethernet).kind, .ipv6)
        XCTAssertEqual(parse([0x60] + Array(repeating: 0, count: 39), .raw).kind, .ipv6)
        XCTAssertEqual(parse(PacketBuilder.ethernet(destination: mac1, source: mac2, etherType: 0x88CC, payload: [1]), .ethernet).kind, .other)
    }

    func testCookedAndRawAndNull() {
        var sll: [UInt8] = [0, 0, 0, 1, 0, 6] + mac1 + [0, 0]
        sll.appendBE16(EtherType.ipv4)
        var p = parse(sll + Fixtures.udp, .linuxSLL)
        XCTAssertEqual(p.l3Offset, 16); XCTAssertEqual(p.destinationPort, 53)
        var sll2: [UInt8] = []
        sll2.appendBE16(EtherType.ipv4); sll2 += [0, 0, 0, 0, 0, 2, 0, 1, 0, 6] + mac1 + [0, 0]
        p = parse(sll2 + Fixtures.udp, .linuxSLL2)
        XCTAssertEqual(p.l3Offset, 20); XCTAssertEqual(p.destinationPort, 53)
        XCTAssertEqual(parse(Fixtures.udp, .raw).destinationPort, 53)
        XCTAssertEqual(parse(Fixtures.udp, .ipv4).destinationPort, 53)
        // NULL: AF_INET (2) in little-endian (captured on x86) and big-endian.
        XCTAssertEqual(parse([2, 0, 0, 0] + Fixtures.udp, .null).destinationPort, 53)
        XCTAssertEqual(parse([0, 0, 0, 2] + Fixtures.udp, .null).destinationPort, 53)
        XCTAssertEqual(parse([0, 0, 0, 2] + Fixtures.udp, .loop).destinationPort, 53)
        XCTAssertEqual(parse([30, 0, 0, 0] + Array(repeating: 0, count: 40), .null).kind, .ipv6)
        XCTAssertEqual(parse([2, 0], .null).drop, .truncatedLinkHeader)
        XCTAssertEqual(parse(Array(sll[0 ..< 10]), .linuxSLL).drop, .truncatedLinkHeader)
    }

    func testTruncatedEthernet() {
        for n in 0 ..< 14 {
            XCTAssertEqual(parse(Array(repeating: 0, count: n), .ethernet).drop, .truncatedLinkHeader)
        }
    }

    /// Every prefix of every fixture, under every link type, parses without trapping.
    func testNoTrapOnAnyPrefix() {
        let frames = [PacketBuilder.ethernet(destination: mac1, source: mac2, vlanTags: [1, 2], payload: Fixtures.tcpSYN),
                      PacketBuilder.icmpError(source: IPv4Address(1, 2, 3, 4), destination: IPv4Address(5, 6, 7, 8), type: 3, code: 3, quoting: Fixtures.udp),
                      Fixtures.icmpEcho]
        var p = ParsedPacket()
        var rng = SystemRandomNumberGenerator()
        for f in frames {
            for n in 0 ... f.count {
                for lt in LinkType.allCases {
                    _ = f.withUnsafeBytes { PacketParser.parse($0.slice(0, n), linkType: lt, into: &p) }
                }
            }
            // And random corruption.
            for _ in 0 ..< 2000 {
                var g = f
                for _ in 0 ..< 3 { g[Int.random(in: 0 ..< g.count, using: &rng)] = .random(in: 0 ... 255, using: &rng) }
                for lt in LinkType.allCases { _ = g.withUnsafeBytes { PacketParser.parse($0, linkType: lt, into: &p) } }
            }
        }
    }
}

final class FlowKeyTests: XCTestCase {
    func testSizeBudget() {
        XCTAssertEqual(MemoryLayout<FlowKey>.size, 16)
        XCTAssertEqual(MemoryLayout<FlowKey>.stride, 16)
    }

    func testReverseAndCanonical() {
        let k = FlowKey(source: 1, destination: 2, sourcePort: 1000, destinationPort: 80, proto: 6)
        XCTAssertEqual(k.reversed.reversed, k)
        XCTAssertEqual(k.canonical, k.reversed.canonical)
        XCTAssertNotEqual(k, k.reversed)
    }

    func testFromParsedPacket() {
        var p = ParsedPacket()
        _ = Fixtures.icmpEcho.withUnsafeBytes { PacketParser.parse($0, linkType: .ipv4, into: &p) }
        XCTAssertEqual(p.flowKey, FlowKey(source: 0x0A00_0001, destination: 0x0A00_0002, sourcePort: 0x0102, destinationPort: 0x0800, proto: 1))
    }
}
