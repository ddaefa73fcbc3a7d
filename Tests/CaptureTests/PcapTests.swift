import Capture
import Wire
import XCTest

final class PcapTests: XCTestCase {
    /// Written out byte by byte (tshark reads it as one 4-of-64-byte Ethernet frame at
    /// 2020-09-13 12:26:40.123456 UTC).
    static let literalLittleEndianMicro: [UInt8] = [
        0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00,  // magic, version 2.4
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // thiszone, sigfigs
        0xff, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // snaplen 65535, link type 1
        0x00, 0x10, 0x5e, 0x5f, 0x40, 0xe2, 0x01, 0x00,  // 1600000000 s, 123456 us
        0x04, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,  // caplen 4, len 64
        0xaa, 0xbb, 0xcc, 0xdd,
    ]

    func testLiteralLittleEndianMicro() throws {
        let file = try CaptureFile(bytes: Self.literalLittleEndianMicro, name: "literal.pcap")
        XCTAssertEqual(file.format, .pcap(bigEndian: false, nanosecond: false))
        XCTAssertEqual(file.interfaces, [CaptureInterface(linkTypeRaw: 1, snapLength: 65_535, timestampUnitsPerSecond: 1_000_000)])
        XCTAssertEqual(file.interfaces[0].linkType, .ethernet)
        XCTAssertEqual(file.records, [CaptureRecord(offset: 40, capturedLength: 4, originalLength: 64,
                                                    timestampNanos: 1_600_000_000_123_456_000, interface: 0)])
        XCTAssertEqual(file.frame(0), [0xaa, 0xbb, 0xcc, 0xdd])
        XCTAssertEqual(file.warnings, [])
        // The builder produces the same bytes, so the other fixtures can trust it.
        XCTAssertEqual(Fixture.pcap([.init(seconds: 1_600_000_000, fraction: 123_456, data: [0xaa, 0xbb, 0xcc, 0xdd],
                                           originalLength: 64)]),
                       Self.literalLittleEndianMicro)
    }

    func testBothByteOrdersAndResolutions() throws {
        for bigEndian in [false, true] {
            for nanosecond in [false, true] {
                let bytes = Fixture.pcap(bigEndian: bigEndian, nanosecond: nanosecond, linkType: 113, [
                    .init(seconds: 10, fraction: 999, data: Fixture.frameA),
                    .init(seconds: 11, fraction: 0, data: Fixture.frameB, originalLength: 1500),
                ])
                let file = try CaptureFile(bytes: bytes, name: "f.pcap")
                let label = "bigEndian \(bigEndian) nanosecond \(nanosecond)"
                XCTAssertEqual(file.format, .pcap(bigEndian: bigEndian, nanosecond: nanosecond), label)
                XCTAssertEqual(file.interfaces[0].linkType, .linuxSLL, label)
                XCTAssertEqual(file.interfaces[0].timestampUnitsPerSecond, nanosecond ? 1_000_000_000 : 1_000_000, label)
                XCTAssertEqual(file.timestamps, [10_000_000_000 + (nanosecond ? 999 : 999_000), 11_000_000_000], label)
                XCTAssertEqual(file.records.map(\.originalLength), [60, 1500], label)
                XCTAssertEqual(file.frame(0), Fixture.frameA, label)
                XCTAssertEqual(file.frame(1), Fixture.frameB, label)
                XCTAssertEqual(file.warnings, [], label)
            }
        }
    }

    func testLinkTypeUpperBitsAreMasked() throws {
        // 0x14000000: "FCS length present", 4-byte FCS (LT_FCS_LENGTH_PRESENT | LT_FCS_LENGTH(2)).
        let file = try CaptureFile(bytes: Fixture.pcap(linkType: 0x1400_0001, []), name: "fcs.pcap")
        XCTAssertEqual(file.interfaces[0].linkTypeRaw, 1)
        XCTAssertEqual(file.interfaces[0].linkType, .ethernet)
        let unknown = try CaptureFile(bytes: Fixture.pcap(linkType: 147, []), name: "user0.pcap")
        XCTAssertEqual(unknown.interfaces[0].linkTypeRaw, 147)
        XCTAssertNil(unknown.interfaces[0].linkType)
    }

    func testHeaderOnlyFileHasNoRecords() throws {
        let file = try CaptureFile(bytes: Fixture.pcap([]), name: "empty.pcap")
        XCTAssertEqual(file.records, [])
        XCTAssertEqual(file.warnings, [])
    }

    func testTruncatedLastRecordKeepsTheOthers() throws {
        let whole = Fixture.pcap([.init(seconds: 1, fraction: 0, data: Fixture.frameA),
                                  .init(seconds: 2, fraction: 0, data: Fixture.frameB)])
        let file = try CaptureFile(bytes: Array(whole.dropLast(3)), name: "cut.pcap")
        XCTAssertEqual(file.records.count, 1)
        XCTAssertEqual(file.frame(0), Fixture.frameA)
        XCTAssertEqual(file.warnings, ["truncated last record at offset 100: captured length 42, 39 bytes left"])

        let headerCut = try CaptureFile(bytes: Array(whole.prefix(24 + 16 + 60 + 7)), name: "cut2.pcap")
        XCTAssertEqual(headerCut.records.count, 1)
        XCTAssertEqual(headerCut.warnings, ["truncated last record at offset 100: 7 of 16 header bytes"])
    }

    func testInvalidMicrosecondsAreKeptArithmeticallyAndWarned() throws {
        let bytes = Fixture.pcap([.init(seconds: 5, fraction: 10, data: Fixture.frameC),
                                  .init(seconds: 5, fraction: 1_500_000, data: Fixture.frameC),
                                  .init(seconds: 4, fraction: 4_294_967_295, data: Fixture.frameC)])
        let file = try CaptureFile(bytes: bytes, name: "ts.pcap")
        XCTAssertEqual(file.timestamps, [5_000_010_000, 6_500_000_000, 4_000_000_000 + 4_294_967_295_000])
        XCTAssertEqual(file.warnings, ["timestamp microseconds >= 1000000 in record 1",
                                       "timestamp microseconds >= 1000000 in record 2"])

        let nano = try CaptureFile(bytes: Fixture.pcap(nanosecond: true, [.init(seconds: 0, fraction: 1_000_000_000, data: [])]),
                                   name: "tsn.pcap")
        XCTAssertEqual(nano.timestamps, [1_000_000_000])
        XCTAssertEqual(nano.warnings, ["timestamp nanoseconds >= 1000000000 in record 0"])
    }

    func testWarningsAreCapped() throws {
        let bad = Fixture.PcapRecord(seconds: 0, fraction: 2_000_000, data: [])
        let file = try CaptureFile(bytes: Fixture.pcap(Array(repeating: bad, count: 150)), name: "many.pcap")
        XCTAssertEqual(file.records.count, 150)
        XCTAssertEqual(file.warnings.count, 101)
        XCTAssertEqual(file.warnings.last, "50 more warnings not shown")
    }

    func testRejectedFilesNameTheFile() {
        func error(_ bytes: [UInt8]) -> CaptureError? {
            do { _ = try CaptureFile(bytes: bytes, name: "x.pcap"); return nil } catch { return error }
        }
        XCTAssertEqual(error([]), .badHeader(file: "x.pcap", reason: "file is 0 bytes, too short for any header"))
        XCTAssertEqual(error([0xd4, 0xc3]), .badHeader(file: "x.pcap", reason: "file is 2 bytes, too short for any header"))
        XCTAssertEqual(error(Array("GET / HTTP/1.1\r\n".utf8)), .unknownMagic(file: "x.pcap", magic: 0x4745_5420))
        XCTAssertEqual(error(Array(Fixture.pcap([]).prefix(20))),
                       .badHeader(file: "x.pcap", reason: "classic pcap header needs 24 bytes, file has 20"))
        var oldVersion = Fixture.pcap([])
        oldVersion[4] = 1
        XCTAssertEqual(error(oldVersion), .badHeader(file: "x.pcap", reason: "classic pcap version 1.4, expected 2.x"))
        XCTAssertEqual(error(Array("GET / HTTP/1.1\r\n".utf8))?.description,
                       "x.pcap: not a pcap or pcapng file (magic 0x47455420)")
    }

    func testOpenReportsTheSystemError() throws {
        XCTAssertThrowsError(try CaptureFile.open(path: "/nonexistent/sluice.pcap")) { error in
            XCTAssertEqual(error as? CaptureError,
                           .unreadable(file: "/nonexistent/sluice.pcap", reason: "No such file or directory"))
            XCTAssertEqual("\(error)", "/nonexistent/sluice.pcap: cannot read: No such file or directory")
        }
        XCTAssertThrowsError(try CaptureFile.open(path: "/")) { error in
            XCTAssertEqual(error as? CaptureError, .unreadable(file: "/", reason: "Is a directory"))
        }
    }

    func testOpenReadsTheSameAsBytes() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("capture-open-\(getpid()).pcap").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bytes = Fixture.pcap([.init(seconds: 1, fraction: 2, data: Fixture.frameA)])
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        let file = try CaptureFile.open(path: path)
        XCTAssertEqual(file.name, path)
        XCTAssertEqual(file.records, try CaptureFile(bytes: bytes, name: "b").records)
        XCTAssertEqual(file.withUnsafeBytes { Array($0) }, bytes)
    }

    func testRecordLayoutBudget() {
        // The index is an array of these; keep it a plain 40-byte value.
        XCTAssertEqual(MemoryLayout<CaptureRecord>.size, 40)
    }
}
