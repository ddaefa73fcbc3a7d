import Capture
import Wire
import XCTest

final class PcapngTests: XCTestCase {
    /// SHB, IDB (Ethernet, snaplen 0, no options), one EPB with 4 bytes; little-endian, written
    /// out byte by byte (tshark: one 4-of-64-byte frame at 1600000000.123456).
    static let literal: [UInt8] = [
        0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0x00, 0x00, 0x00,  // SHB, 28 bytes
        0x4d, 0x3c, 0x2b, 0x1a, 0x01, 0x00, 0x00, 0x00,  // byte-order magic, version 1.0
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // section length -1
        0x1c, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,  // IDB, 20 bytes
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // link type 1, reserved, snaplen 0
        0x14, 0x00, 0x00, 0x00,
        0x06, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00,  // EPB, 36 bytes
        0x00, 0x00, 0x00, 0x00,                          // interface 0
        0x31, 0xaf, 0x05, 0x00, 0x40, 0xe2, 0xa5, 0x07,  // ts high 0x0005af31, low 0x07a5e240 (us)
        0x04, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,  // caplen 4, len 64
        0xaa, 0xbb, 0xcc, 0xdd,
        0x24, 0x00, 0x00, 0x00,
    ]

    func testLiteral() throws {
        let file = try CaptureFile(bytes: Self.literal, name: "literal.pcapng")
        XCTAssertEqual(file.format, .pcapng)
        XCTAssertEqual(file.interfaces, [CaptureInterface(linkTypeRaw: 1, snapLength: 0, timestampUnitsPerSecond: 1_000_000)])
        XCTAssertEqual(file.records, [CaptureRecord(offset: 76, capturedLength: 4, originalLength: 64,
                                                    timestampNanos: 1_600_000_000_123_456_000, interface: 0)])
        XCTAssertEqual(file.frame(0), [0xaa, 0xbb, 0xcc, 0xdd])
        XCTAssertEqual(file.warnings, [])
        XCTAssertEqual(Fixture.shb(bigEndian: false) + Fixture.idb(bigEndian: false)
                       + Fixture.epb(bigEndian: false, interface: 0, ticks: 1_600_000_000_123_456, [0xaa, 0xbb, 0xcc, 0xdd],
                                     originalLength: 64),
                       Self.literal)
    }

    func testTwoInterfacesWithDifferentResolutions() throws {
        for bigEndian in [false, true] {
            let bytes = Fixture.shb(bigEndian: bigEndian)
                + Fixture.idb(bigEndian: bigEndian, linkType: 1, snapLength: 65_535, name: "eth0", tsresol: 9)
                + Fixture.idb(bigEndian: bigEndian, linkType: 101, name: "tun0")  // default: microseconds
                + Fixture.epb(bigEndian: bigEndian, interface: 0, ticks: 1_700_000_000_123_456_789, Fixture.frameA)
                + Fixture.other(5, bigEndian: bigEndian)  // ISB
                + Fixture.epb(bigEndian: bigEndian, interface: 1, ticks: 1_700_000_001_000_001, Fixture.frameC,
                              originalLength: 1400)
            let file = try CaptureFile(bytes: bytes, name: "two.pcapng")
            let label = "bigEndian \(bigEndian)"
            XCTAssertEqual(file.interfaces.map(\.name), ["eth0", "tun0"], label)
            XCTAssertEqual(file.interfaces.map(\.linkType), [.ethernet, .raw], label)
            XCTAssertEqual(file.interfaces.map(\.snapLength), [65_535, 0], label)
            XCTAssertEqual(file.interfaces.map(\.timestampUnitsPerSecond), [1_000_000_000, 1_000_000], label)
            XCTAssertEqual(file.records.map(\.interface), [0, 1], label)
            XCTAssertEqual(file.timestamps, [1_700_000_000_123_456_789, 1_700_000_001_000_001_000], label)
            XCTAssertEqual(file.records.map(\.originalLength), [60, 1400], label)
            XCTAssertEqual(file.frame(0), Fixture.frameA, label)
            XCTAssertEqual(file.frame(1), Fixture.frameC, label)
            XCTAssertEqual(file.warnings, [], label)
        }
    }

    func testPowerOfTwoResolutionAndOffset() throws {
        let bytes = Fixture.shb(bigEndian: false)
            + Fixture.idb(bigEndian: false, tsresol: 0x80 | 10, tsoffset: 1_000)  // 1/1024 s, +1000 s
            + Fixture.epb(bigEndian: false, interface: 0, ticks: 5 * 1024 + 512, [])
            + Fixture.idb(bigEndian: false, tsresol: 0)                            // whole seconds
            + Fixture.epb(bigEndian: false, interface: 1, ticks: 7, [])
        let file = try CaptureFile(bytes: bytes, name: "pow2.pcapng")
        XCTAssertEqual(file.interfaces.map(\.timestampUnitsPerSecond), [1024, 1])
        XCTAssertEqual(file.timestamps, [1_005_500_000_000, 7_000_000_000])
    }

    func testUnusableResolutionFallsBackToMicroseconds() throws {
        let bytes = Fixture.shb(bigEndian: false) + Fixture.idb(bigEndian: false, tsresol: 20)
            + Fixture.epb(bigEndian: false, interface: 0, ticks: 3_000_000, [])
        let file = try CaptureFile(bytes: bytes, name: "res.pcapng")
        XCTAssertEqual(file.timestamps, [3_000_000_000])
        XCTAssertEqual(file.warnings, ["interface block at offset 28: if_tsresol 0x14 does not fit 64 bits; using microseconds"])
    }

    func testHugeTimestampIsClampedNotTrapped() throws {
        let bytes = Fixture.shb(bigEndian: false) + Fixture.idb(bigEndian: false, tsresol: 0)
            + Fixture.epb(bigEndian: false, interface: 0, ticks: UInt64.max, [])
        let file = try CaptureFile(bytes: bytes, name: "huge.pcapng")
        XCTAssertEqual(file.timestamps, [Int64.max])
        XCTAssertEqual(file.warnings, ["timestamp out of range in record 0; clamped"])
    }

    func testSimplePacketBlock() throws {
        let bytes = Fixture.shb(bigEndian: true)
            + Fixture.idb(bigEndian: true, snapLength: 40)
            + Fixture.spb(bigEndian: true, originalLength: 60, Fixture.frameA)  // cut to the snaplen
            + Fixture.spb(bigEndian: true, originalLength: 5, Fixture.frameC)   // body padded to 8: cut to 5
            + Fixture.spb(bigEndian: true, originalLength: 1500, Fixture.frameC) // only the block's 8 bytes
        let file = try CaptureFile(bytes: bytes, name: "spb.pcapng")
        XCTAssertEqual(file.records.map(\.capturedLength), [40, 5, 8])
        XCTAssertEqual(file.records.map(\.originalLength), [60, 5, 1500])
        XCTAssertEqual(file.timestamps, [0, 0, 0])  // an SPB has no timestamp
        XCTAssertEqual(file.frame(0), Array(Fixture.frameA.prefix(40)))
        XCTAssertEqual(file.frame(1), Fixture.frameC)
        XCTAssertEqual(file.frame(2), Fixture.frameC + [0, 0, 0])
    }

    func testObsoletePacketBlock() throws {
        let bytes = Fixture.shb(bigEndian: false) + Fixture.idb(bigEndian: false) + Fixture.idb(bigEndian: false)
            + Fixture.opb(bigEndian: false, interface: 1, ticks: 2_000_001, Fixture.frameB)
        let file = try CaptureFile(bytes: bytes, name: "opb.pcapng")
        XCTAssertEqual(file.records, [CaptureRecord(offset: 28 + 20 + 20 + 28, capturedLength: 42, originalLength: 42,
                                                    timestampNanos: 2_000_001_000, interface: 1)])
        XCTAssertEqual(file.frame(0), Fixture.frameB)
    }

    /// Like pcapng-test-generator's test202: sections LE, BE, LE; interface ids restart per section.
    func testSectionsWithDifferentByteOrders() throws {
        let bytes = Fixture.shb(bigEndian: false)
            + Fixture.idb(bigEndian: false, linkType: 1, name: "le0")
            + Fixture.epb(bigEndian: false, interface: 0, ticks: 1, Fixture.frameA)
            + Fixture.other(4, bigEndian: false)  // NRB
            + Fixture.shb(bigEndian: true)
            + Fixture.idb(bigEndian: true, linkType: 0, name: "be0")
            + Fixture.idb(bigEndian: true, linkType: 1, name: "be1")
            + Fixture.other(0xBAD, bigEndian: true)  // custom block
            + Fixture.epb(bigEndian: true, interface: 1, ticks: 2, Fixture.frameB)
            + Fixture.spb(bigEndian: true, originalLength: 5, Fixture.frameC)
            + Fixture.shb(bigEndian: false)
            + Fixture.idb(bigEndian: false, linkType: 0, name: "le1")
            + Fixture.epb(bigEndian: false, interface: 0, ticks: 3, Fixture.frameC)
        let file = try CaptureFile(bytes: bytes, name: "sections.pcapng")
        XCTAssertEqual(file.interfaces.map(\.name), ["le0", "be0", "be1", "le1"])
        XCTAssertEqual(file.interfaces.map(\.linkType), [.ethernet, .null, .ethernet, .null])
        XCTAssertEqual(file.records.map(\.interface), [0, 2, 1, 3])
        XCTAssertEqual(file.timestamps, [1000, 2000, 0, 3000])
        XCTAssertEqual((0 ..< 4).map(file.frame), [Fixture.frameA, Fixture.frameB, Fixture.frameC, Fixture.frameC])
        XCTAssertEqual(file.warnings, [])
    }

    func testDamageEndsTheReadKeepingEarlierRecords() throws {
        let head = Fixture.shb(bigEndian: false) + Fixture.idb(bigEndian: false)
            + Fixture.epb(bigEndian: false, interface: 0, ticks: 1, Fixture.frameA)  // ends at offset 140
        let good = Fixture.epb(bigEndian: false, interface: 0, ticks: 2, Fixture.frameB)  // 76 bytes

        func read(_ tail: [UInt8]) throws -> CaptureFile {
            let file = try CaptureFile(bytes: head + tail, name: "bad.pcapng")
            XCTAssertEqual(file.records.count, 1)
            XCTAssertEqual(file.frame(0), Fixture.frameA)
            assertRecordsInBounds(file)
            return file
        }
        var bad = good
        bad[4] = 13  // not a multiple of 4
        XCTAssertEqual(try read(bad).warnings, ["block at offset 140 has bad length 13 (76 bytes left)"])
        bad[4] = 8   // shorter than type + lengths
        XCTAssertEqual(try read(bad).warnings, ["block at offset 140 has bad length 8 (76 bytes left)"])
        XCTAssertEqual(try read(Array(good.dropLast(4))).warnings, ["block at offset 140 has bad length 76 (72 bytes left)"])
        XCTAssertEqual(try read(Array(good.prefix(6))).warnings, ["truncated block at offset 140: 6 bytes left"])
        bad = good
        bad[bad.count - 4] = 80
        XCTAssertEqual(try read(bad).warnings, ["block at offset 140: trailing length 80 differs from 76"])
        bad = good
        bad[20] = 45  // caplen 45 > the 44 data bytes (42 + padding) the block holds
        XCTAssertEqual(try read(bad).warnings,
                       ["packet block at offset 140: captured length 45 exceeds the block (44 bytes)"])
        XCTAssertEqual(try read(Fixture.shb(bigEndian: false).prefix(8) + [1, 2, 3, 4] + Fixture.shb(bigEndian: false).dropFirst(12)).warnings,
                       ["section header at offset 140 has byte-order magic 0x4030201"])
    }

    func testPacketsOnMissingInterfacesAreSkipped() throws {
        let bytes = Fixture.shb(bigEndian: false)
            + Fixture.spb(bigEndian: false, originalLength: 5, Fixture.frameC)
            + Fixture.idb(bigEndian: false)
            + Fixture.epb(bigEndian: false, interface: 1, ticks: 1, Fixture.frameA)
            + Fixture.epb(bigEndian: false, interface: 0, ticks: 2, Fixture.frameB)
        let file = try CaptureFile(bytes: bytes, name: "ids.pcapng")
        XCTAssertEqual(file.records.count, 1)
        XCTAssertEqual(file.frame(0), Fixture.frameB)
        XCTAssertEqual(file.warnings, ["simple packet block at offset 28 before any interface; skipped",
                                       "packet block at offset 72 names interface 1, the section has 1; skipped"])
    }

    func testBadFirstBlockIsAHeaderError() {
        var badMagic = Fixture.shb(bigEndian: false)
        badMagic[8] = 0
        XCTAssertThrowsError(try CaptureFile(bytes: badMagic, name: "m.pcapng")) {
            XCTAssertEqual($0 as? CaptureError,
                           .badHeader(file: "m.pcapng", reason: "section header at offset 0 has byte-order magic 0x1a2b3c00"))
        }
        var badVersion = Fixture.shb(bigEndian: true)
        badVersion[13] = 2
        XCTAssertThrowsError(try CaptureFile(bytes: badVersion, name: "v.pcapng")) {
            XCTAssertEqual($0 as? CaptureError,
                           .badHeader(file: "v.pcapng", reason: "section header at offset 0 has version 2, expected 1"))
        }
        XCTAssertThrowsError(try CaptureFile(bytes: Array(Fixture.shb(bigEndian: false).prefix(10)), name: "t.pcapng")) {
            XCTAssertEqual($0 as? CaptureError,
                           .badHeader(file: "t.pcapng", reason: "truncated block at offset 0: 10 bytes left"))
        }
    }

    /// Every prefix and many random corruptions of valid files: the reader may warn or throw, but
    /// never traps, and every record it returns lies inside the buffer.
    func testDamagedInputNeverTraps() {
        let samples = [
            Fixture.shb(bigEndian: false) + Fixture.idb(bigEndian: false, name: "x", tsresol: 9, tsoffset: -5)
                + Fixture.epb(bigEndian: false, interface: 0, ticks: 9, Fixture.frameA)
                + Fixture.shb(bigEndian: true) + Fixture.idb(bigEndian: true, snapLength: 3)
                + Fixture.spb(bigEndian: true, originalLength: 9, Fixture.frameC)
                + Fixture.opb(bigEndian: true, interface: 0, ticks: 1, Fixture.frameB),
            Fixture.pcap(bigEndian: true, nanosecond: true, [.init(seconds: 1, fraction: 2, data: Fixture.frameA),
                                                             .init(seconds: 3, fraction: 4, data: Fixture.frameB)]),
        ]
        var rng = SplitMix64(seed: 0x5eed)
        for sample in samples {
            var inputs = (0 ... sample.count).map { Array(sample.prefix($0)) }
            for _ in 0 ..< 2000 {
                var damaged = sample
                for _ in 0 ..< 1 + Int(rng.next() % 4) {
                    damaged[Int(rng.next() % UInt64(damaged.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                inputs.append(damaged)
            }
            for input in inputs {
                if let file = try? CaptureFile(bytes: input, name: "fuzz") {
                    assertRecordsInBounds(file)
                    for i in file.records.indices { _ = file.withFrame(i) { $0.reduce(0, &+) } }
                }
            }
        }
    }
}

