import Capture
import Foundation
import Wire
import XCTest

final class PcapWriterTests: XCTestCase {
    private var paths: [String] = []

    private func temporaryPath(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(getpid())-\(name)").path
        paths.append(path)
        return path
    }

    override func tearDown() {
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
    }

    func testRoundTripMicroAndNano() throws {
        for resolution in [PcapWriter.Resolution.microsecond, .nanosecond] {
            let path = temporaryPath("roundtrip-\(resolution).pcap")
            let writer = try PcapWriter(path: path, linkTypeRaw: LinkType.ipv4.rawValue, resolution: resolution,
                                        snapLength: 50)
            try writer.append(frame: Fixture.frameA, timestampNanos: 1_700_000_000_123_456_789)  // cut to 50
            try writer.append(frame: Fixture.frameC, timestampNanos: 1_700_000_001_000_000_999, originalLength: 1500)
            try Fixture.frameB.withUnsafeBytes { try writer.append(frame: $0, timestampNanos: 5) }
            XCTAssertEqual(writer.count, 3)
            try writer.close()

            let file = try CaptureFile.open(path: path)
            let nano = resolution == .nanosecond
            XCTAssertEqual(file.format, .pcap(bigEndian: false, nanosecond: nano))
            XCTAssertEqual(file.interfaces, [CaptureInterface(linkTypeRaw: 228, snapLength: 50,
                                                              timestampUnitsPerSecond: nano ? 1_000_000_000 : 1_000_000)])
            XCTAssertEqual(file.timestamps, nano ? [1_700_000_000_123_456_789, 1_700_000_001_000_000_999, 5]
                                                 : [1_700_000_000_123_456_000, 1_700_000_001_000_000_000, 0])
            XCTAssertEqual(file.records.map(\.capturedLength), [50, 5, 42])
            XCTAssertEqual(file.records.map(\.originalLength), [60, 1500, 42])
            XCTAssertEqual(file.frame(0), Array(Fixture.frameA.prefix(50)))
            XCTAssertEqual(file.frame(1), Fixture.frameC)
            XCTAssertEqual(file.frame(2), Fixture.frameB)
            XCTAssertEqual(file.warnings, [])
            // The file and the in-memory encoder agree byte for byte.
            let encoded = PcapWriter.encode(
                frames: [(Fixture.frameA, 1_700_000_000_123_456_789), (Fixture.frameC, 1_700_000_001_000_000_999),
                         (Fixture.frameB, 5)],
                linkTypeRaw: 228, resolution: resolution, snapLength: 50)
            var onDisk = file.withUnsafeBytes { Array($0) }
            onDisk[24 + 16 + 50 + 12] = 5  // the encoder has no originalLength: 1500 -> 5
            onDisk[24 + 16 + 50 + 13] = 0
            XCTAssertEqual(onDisk, encoded)
        }
    }

    func testTimestampsOutsideTheFieldAreClamped() throws {
        let bytes = PcapWriter.encode(frames: [([], -1), ([], -1_000_000_000_000), ([], Int64.max)],
                                      linkTypeRaw: 1, resolution: .nanosecond)
        let file = try CaptureFile(bytes: bytes, name: "clamp.pcap")
        XCTAssertEqual(file.timestamps, [0, 0, Int64(UInt32.max) * 1_000_000_000 + 999_999_999])
    }

    func testLargeOutputIsFlushedInPieces() throws {
        let path = temporaryPath("large.pcap")
        let writer = try PcapWriter(path: path, linkTypeRaw: 1)
        let frame = [UInt8](repeating: 0x5a, count: 1500)
        for i in 0 ..< 2000 {  // ~3 MiB: several flushes at 1 MiB
            try writer.append(frame: frame, timestampNanos: Int64(i) * 1000)
        }
        // Not closed yet: what is on disk is whole records up to the last flush.
        let partial = try CaptureFile.open(path: path)
        XCTAssertGreaterThan(partial.records.count, 600)
        XCTAssertEqual(partial.warnings, [])
        try writer.close()
        try writer.close()  // idempotent
        let file = try CaptureFile.open(path: path)
        XCTAssertEqual(file.records.count, 2000)
        XCTAssertEqual(file.records.last?.timestampNanos, 1_999_000)
        XCTAssertEqual(file.frame(1999), frame)
        XCTAssertThrowsError(try writer.append(frame: frame, timestampNanos: 0)) {
            XCTAssertEqual($0 as? CaptureError, .writeFailed(file: path, reason: "writer is closed"))
        }
    }

    func testUnwritablePathFailsAtInit() {
        XCTAssertThrowsError(try PcapWriter(path: "/nonexistent/out.pcap", linkTypeRaw: 1)) {
            XCTAssertEqual("\($0)", "/nonexistent/out.pcap: cannot write: No such file or directory")
        }
    }

    func testDeinitFlushes() throws {
        let path = temporaryPath("deinit.pcap")
        do {
            let writer = try PcapWriter(path: path, linkTypeRaw: 1)
            try writer.append(frame: Fixture.frameA, timestampNanos: 1)
        }
        XCTAssertEqual(try CaptureFile.open(path: path).records.count, 1)
    }
}
