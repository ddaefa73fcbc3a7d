import XCTest
@testable import Wire

final class ChecksumTests: XCTestCase {
    /// Straightforward RFC 1071 reference, word by word.
    func naive(_ b: [UInt8]) -> UInt16 {
        var s: UInt32 = 0
        var i = 0
        while i + 1 < b.count { s += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
        if i < b.count { s += UInt32(b[i]) << 8 }
        while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
        return ~UInt16(s)
    }

    func testFullChecksumMatchesReferenceForAllLengths() {
        var rng = SystemRandomNumberGenerator()
        for len in 0 ..< 200 {
            let b = (0 ..< len).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            XCTAssertEqual(b.withUnsafeBytes { Checksum.compute($0) }, naive(b), "length \(len)")
        }
        let ones = [UInt8](repeating: 0xFF, count: 1501)
        XCTAssertEqual(ones.withUnsafeBytes { Checksum.compute($0) }, naive(ones))
    }

    func testRFC1071Example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let b: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        XCTAssertEqual(b.withUnsafeBytes { Checksum.sum($0) } % 0xFFFF, 0xddf2)
        XCTAssertEqual(b.withUnsafeBytes { Checksum.compute($0) }, ~UInt16(0xddf2))
    }

    func testFixturesVerify() {
        Fixtures.tcpSYN.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertTrue(ip.checksumValid)
            XCTAssertTrue(TCPView(ip.payload)!.checksumValid(source: ip.source, destination: ip.destination))
        }
        Fixtures.udp.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertTrue(ip.checksumValid)
            XCTAssertTrue(UDPView(ip.payload)!.checksumValid(source: ip.source, destination: ip.destination))
        }
        Fixtures.icmpEcho.withUnsafeBytes { b in
            let ip = IPv4View(b)!
            XCTAssertTrue(ip.checksumValid)
            XCTAssertTrue(ICMPView(ip.payload)!.checksumValid)
        }
    }

    /// RFC 1624: updating a field incrementally gives what recomputing gives.
    func testIncrementalUpdateMatchesRecompute() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0 ..< 2000 {
            var pkt = PacketBuilder.tcp(source: IPv4Address(UInt32.random(in: 0 ... .max, using: &rng)),
                                        destination: IPv4Address(UInt32.random(in: 0 ... .max, using: &rng)),
                                        sourcePort: .random(in: 0 ... .max, using: &rng), destinationPort: 80,
                                        flags: .syn, payload: (0 ..< Int.random(in: 0 ... 40, using: &rng)).map { _ in .random(in: 0 ... 255, using: &rng) })
            let newDst = UInt32.random(in: 0 ... .max, using: &rng)
            let newPort = UInt16.random(in: 0 ... .max, using: &rng)
            let oldDst = pkt.withUnsafeBytes { $0.be32(16) }
            let oldPort = pkt.withUnsafeBytes { $0.be16(22) }
            pkt.withUnsafeMutableBytes { m in
                // IP header: destination address.
                m.setBE16(10, Checksum.update(m.be16(10), old: oldDst, new: newDst))
                m.setBE32(16, newDst)
                // TCP: pseudo-header address and destination port.
                var c = Checksum.update(m.be16(36), old: oldDst, new: newDst)
                c = Checksum.update(c, old: oldPort, new: newPort)
                m.setBE16(36, c)
                m.setBE16(22, newPort)
            }
            pkt.withUnsafeBytes { b in
                let ip = IPv4View(b)!
                XCTAssertTrue(ip.checksumValid)
                XCTAssertTrue(TCPView(ip.payload)!.checksumValid(source: ip.source, destination: ip.destination))
            }
        }
    }

    func testIncrementalUpdateOfTTLDecrement() {
        var pkt = Fixtures.tcpSYN
        pkt.withUnsafeMutableBytes { m in
            let old = m.be16(8)  // TTL + protocol word
            let new = old &- 0x0100
            m.setBE16(10, Checksum.update(m.be16(10), old: old, new: new))
            m.setBE16(8, new)
        }
        XCTAssertEqual(pkt[8], 63)
        XCTAssertTrue(pkt.withUnsafeBytes { IPv4View($0)!.checksumValid })
    }
}
