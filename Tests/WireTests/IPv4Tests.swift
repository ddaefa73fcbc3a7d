import XCTest
@testable import Wire

final class IPv4Tests: XCTestCase {
    func testDeconstruct() {
        Fixtures.tcpSYN.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertEqual(ip.summary, IPv4Summary(
                headerLength: 20, totalLength: 44, identification: 0x1234, dontFragment: true, ttl: 64,
                proto: IPProtocol.tcp, checksumValid: true,
                source: IPv4Address("192.168.1.10")!, destination: IPv4Address("10.0.0.5")!))
            XCTAssertFalse(ip.isFragment)
        }
    }

    func testConstructMatchesFixture() {
        let built = PacketBuilder.tcp(source: IPv4Address("192.168.1.10")!, destination: IPv4Address("10.0.0.5")!,
                                      sourcePort: 40000, destinationPort: 22, sequence: 1, flags: .syn,
                                      options: [0x02, 0x04, 0x05, 0xb4], identification: 0x1234)
        XCTAssertEqual(built, Fixtures.tcpSYN)
    }

    func testOverlongTrimsPadding() {
        // Ethernet pads short frames: bytes beyond total length are not part of the packet.
        let padded = Fixtures.udp + [0, 0, 0, 0, 0, 0]
        padded.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertEqual(ip.bytes.count, 32)
            XCTAssertEqual(ip.payload.count, 12)
        }
    }

    func testTruncated() {
        for n in 0 ..< 20 {
            Fixtures.udp.withUnsafeBytes { b in
                XCTAssertEqual(reason(IPv4View.check(b.slice(0, n))), .truncatedIPv4Header, "n=\(n)")
            }
        }
        Fixtures.udp.withUnsafeBytes { b in
            XCTAssertEqual(reason(IPv4View.check(b.slice(0, 31))), .ipTotalLengthBeyondCapture)
        }
    }

    func testBadVersionAndIHL() {
        var p = Fixtures.udp
        p[0] = 0x65
        XCTAssertEqual(p.withUnsafeBytes { reason(IPv4View.check($0)) }, .badIPVersion)
        p[0] = 0x44
        XCTAssertEqual(p.withUnsafeBytes { reason(IPv4View.check($0)) }, .badIHL)
        p[0] = 0x4F  // IHL 15 = 60 bytes, total length 32
        XCTAssertEqual(p.withUnsafeBytes { reason(IPv4View.check($0)) }, .badIPTotalLength)
        p = Fixtures.udp
        p[3] = 10  // total length < header
        XCTAssertEqual(p.withUnsafeBytes { reason(IPv4View.check($0)) }, .badIPTotalLength)
    }

    func testBadChecksumIsReportedNotRejected() {
        var p = Fixtures.udp
        p[10] ^= 0xFF
        p.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertFalse(ip.checksumValid)
        }
    }

    func testOptions() {
        // Router alert (4 bytes) then a record-route with room for one address (7 bytes) + EOL.
        let opts: [UInt8] = [148, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0]
        let p = PacketBuilder.ipv4(source: IPv4Address(1, 2, 3, 4), destination: IPv4Address(5, 6, 7, 8), proto: 2, payload: [1, 2, 3, 4], options: opts)
        p.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertEqual(ip.headerLength, 32)
            XCTAssertTrue(ip.optionsWellFormed)
            XCTAssertEqual(ip.summary.optionTypes, [148, 7])
            XCTAssertTrue(IPv4Options.contains(ip.options, type: IPv4Options.routerAlert))
            XCTAssertFalse(IPv4Options.contains(ip.options, type: IPv4Options.lsrr))
            XCTAssertEqual(ip.payload.count, 4)
        }
        // An option whose length runs past the header.
        let bad = PacketBuilder.ipv4(source: IPv4Address(1, 2, 3, 4), destination: IPv4Address(5, 6, 7, 8), proto: 2, payload: [], options: [130, 11, 0, 0])
        XCTAssertFalse(bad.withUnsafeBytes { IPv4View($0)!.optionsWellFormed })
        var pp = ParsedPacket()
        XCTAssertFalse(bad.withUnsafeBytes { PacketParser.parse($0, linkType: .ipv4, into: &pp) })
        XCTAssertEqual(pp.drop, .badIPOptions)
        // Length byte of 1 is invalid too.
        let bad1 = PacketBuilder.ipv4(source: IPv4Address(1, 2, 3, 4), destination: IPv4Address(5, 6, 7, 8), proto: 2, payload: [], options: [7, 1, 0, 0])
        XCTAssertFalse(bad1.withUnsafeBytes { IPv4View($0)!.optionsWellFormed })
    }

    func testFragments() {
        let first = PacketBuilder.ipv4(source: IPv4Address(1, 1, 1, 1), destination: IPv4Address(2, 2, 2, 2), proto: IPProtocol.udp,
                                       payload: [0x00, 0x35, 0x00, 0x35, 0x01, 0x00, 0, 0] + Array(repeating: 0, count: 16),
                                       dontFragment: false, moreFragments: true)
        var p = ParsedPacket()
        XCTAssertTrue(first.withUnsafeBytes { PacketParser.parse($0, linkType: .ipv4, into: &p) })
        XCTAssertTrue(p.isFragment); XCTAssertFalse(p.isLaterFragment); XCTAssertTrue(p.hasL4)
        XCTAssertEqual(p.destinationPort, 53)  // UDP length 256 > bytes: fine in a first fragment
        let later = PacketBuilder.ipv4(source: IPv4Address(1, 1, 1, 1), destination: IPv4Address(2, 2, 2, 2), proto: IPProtocol.udp,
                                       payload: Array(repeating: 0xAB, count: 24), dontFragment: false, fragmentOffset: 24)
        XCTAssertTrue(later.withUnsafeBytes { PacketParser.parse($0, linkType: .ipv4, into: &p) })
        XCTAssertTrue(p.isLaterFragment); XCTAssertFalse(p.hasL4); XCTAssertEqual(p.fragmentOffset, 24)
        // A first fragment too short for the TCP header: a "tinygram", kept, flagged.
        let tiny = PacketBuilder.ipv4(source: IPv4Address(1, 1, 1, 1), destination: IPv4Address(2, 2, 2, 2), proto: IPProtocol.tcp,
                                      payload: Array(repeating: 0, count: 8), dontFragment: false, moreFragments: true)
        XCTAssertTrue(tiny.withUnsafeBytes { PacketParser.parse($0, linkType: .ipv4, into: &p) })
        XCTAssertTrue(p.l4Truncated); XCTAssertFalse(p.hasL4)
    }

    func testAddressParsing() {
        XCTAssertEqual(IPv4Address("10.1.2.3")?.value, 0x0A01_0203)
        XCTAssertNil(IPv4Address("10.1.2"))
        XCTAssertNil(IPv4Address("10.1.2.256"))
        XCTAssertNil(IPv4Address("10.1..2"))
        XCTAssertNil(IPv4Address("10.1.2.3 "))
        XCTAssertNil(IPv4Address("1.2.3.0004"))
        XCTAssertEqual(IPv4Prefix("10.0.0.0/8")?.length, 8)
        XCTAssertEqual(IPv4Prefix("10.0.0.1")?.length, 32)
        XCTAssertEqual(IPv4Prefix("10.0.0.0/255.255.0.0")?.length, 16)
        XCTAssertNil(IPv4Prefix("10.0.0.0/255.0.255.0"))
        XCTAssertNil(IPv4Prefix("10.0.0.0/33"))
        XCTAssertTrue(IPv4Prefix("10.1.2.3/8")!.contains(IPv4Address("10.200.0.1")!.value))
        XCTAssertTrue(IPv4Prefix("0.0.0.0/0")!.contains(0xFFFF_FFFF))
        XCTAssertEqual(IPv4Prefix("10.1.2.3/24")!.description, "10.1.2.0/24")
    }
}

func reason<T>(_ r: Result<T, DropReason>) -> DropReason? {
    if case .failure(let e) = r { return e }
    return nil
}
