import Wire
import XCTest
@testable import Engine

final class NATRewriteTests: XCTestCase {
    func rewrite(_ pkt: [UInt8], _ manip: NATManip, _ a: IPv4Address, _ port: UInt16) -> [UInt8] {
        var b = pkt
        var p = ParsedPacket()
        XCTAssertTrue(b.withUnsafeBytes { PacketParser.parseIPv4($0, into: &p) })
        b.withUnsafeMutableBytes { m in
            NATRewrite.apply(m, l3: 0, l4: Int(p.l4Offset), capturedEnd: m.count, proto: p.proto, l4Present: p.hasL4, manip: manip, address: a.value, port: port)
        }
        return b
    }

    func testTCPAndUDPChecksumsStayValid() {
        let tcp = PacketBuilder.tcp(source: IPv4Address(192, 168, 1, 10), destination: IPv4Address(203, 0, 113, 1), sourcePort: 40000,
                                    destinationPort: 8080, flags: .syn, payload: Array("hello".utf8))
        let d = rewrite(tcp, .destination, IPv4Address(10, 0, 0, 5), 22)
        d.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertTrue(ip.checksumValid)
            XCTAssertEqual(ip.destination, IPv4Address(10, 0, 0, 5).value)
            let t = TCPView(ip.payload)!
            XCTAssertEqual(t.destinationPort, 22)
            XCTAssertTrue(t.checksumValid(source: ip.source, destination: ip.destination))
        }
        let udp = PacketBuilder.udp(source: IPv4Address(192, 168, 1, 10), destination: IPv4Address(9, 9, 9, 9), sourcePort: 5353, destinationPort: 53, payload: [1, 2, 3])
        let s = rewrite(udp, .source, IPv4Address(203, 0, 113, 1), 61000)
        s.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertTrue(ip.checksumValid)
            let u = UDPView(ip.payload)!
            XCTAssertEqual(u.sourcePort, 61000)
            XCTAssertTrue(u.checksumValid(source: ip.source, destination: ip.destination))
        }
        let noSum = PacketBuilder.udp(source: IPv4Address(192, 168, 1, 10), destination: IPv4Address(9, 9, 9, 9), sourcePort: 1, destinationPort: 53, payload: [1], checksum: false)
        let n = rewrite(noSum, .source, IPv4Address(203, 0, 113, 1), 2)
        XCTAssertEqual(n.withUnsafeBytes { UDPView(IPv4View($0)!.payload)!.checksum }, 0)
    }

    func testICMPEchoIdentifierAndErrorQuote() {
        let echo = PacketBuilder.icmpEcho(source: IPv4Address(192, 168, 1, 10), destination: IPv4Address(8, 8, 8, 8), request: true, identifier: 7, sequence: 1)
        let e = rewrite(echo, .source, IPv4Address(203, 0, 113, 1), 9)
        e.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertTrue(ip.checksumValid)
            let c = ICMPView(ip.payload)!
            XCTAssertEqual(c.identifier, 9)
            XCTAssertTrue(c.checksumValid)
        }
        // An error from the Internet quoting the translated datagram is put back in LAN terms.
        let sent = PacketBuilder.udp(source: IPv4Address(203, 0, 113, 1), destination: IPv4Address(9, 9, 9, 9), sourcePort: 61000, destinationPort: 53, payload: [1])
        var err = PacketBuilder.icmpError(source: IPv4Address(9, 9, 9, 9), destination: IPv4Address(203, 0, 113, 1), type: 3, code: 3, quoting: sent)
        err.withUnsafeMutableBytes { m in
            NATRewrite.apply(m, l3: 0, l4: 20, capturedEnd: m.count, proto: IPProtocol.icmp, l4Present: true, manip: .destination, address: IPv4Address(192, 168, 1, 10).value, port: 0)
            NATRewrite.applyToQuote(m, l4: 20, capturedEnd: m.count, manip: .source, address: IPv4Address(192, 168, 1, 10).value, port: 5353)
        }
        err.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertTrue(ip.checksumValid)
            let c = ICMPView(ip.payload)!
            XCTAssertTrue(c.checksumValid)
            XCTAssertEqual(c.quote?.summary, ICMPQuoteSummary(proto: 17, source: IPv4Address(192, 168, 1, 10), destination: IPv4Address(9, 9, 9, 9), sourcePort: 5353, destinationPort: 53))
            // The quoted header's own checksum was updated too.
            XCTAssertEqual(Checksum.fold(Checksum.sum(UnsafeRawBufferPointer(rebasing: b[28 ..< 48]))), 0)
        }
    }

    func testPortChooser() {
        XCTAssertEqual(PortChooser.choose(original: 40000, range: 1024 ... 65535) { _ in true }, 40000)
        XCTAssertEqual(PortChooser.choose(original: 40000, range: 1024 ... 65535) { $0 != 40000 }, 40001)
        XCTAssertEqual(PortChooser.choose(original: 80, range: 1024 ... 2000) { _ in true }, 1024 + (80 % 977) + 1)
        XCTAssertNil(PortChooser.choose(original: 5, range: 10 ... 12) { _ in false })
        XCTAssertEqual(PortChooser.defaultRange(for: 22), 1 ... 511)
        XCTAssertEqual(PortChooser.defaultRange(for: 700), 600 ... 1023)
    }
}
