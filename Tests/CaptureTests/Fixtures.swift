import Capture
import Wire
import XCTest

/// Builders for hand-made capture files. Each field is written explicitly in the chosen byte
/// order, so a test reads like the file layout. (The literal-byte tests in PcapTests and
/// PcapngTests pin these builders to the real format, checked with tshark when written.)
struct ByteBuilder {
    var bigEndian: Bool
    var bytes: [UInt8] = []

    mutating func u16(_ v: UInt16) { bigEndian ? bytes.appendBE16(v) : bytes.appendLE16(v) }
    mutating func u32(_ v: UInt32) { bigEndian ? bytes.appendBE32(v) : bytes.appendLE32(v) }
    mutating func raw(_ v: [UInt8]) { bytes += v }
    mutating func pad4() { while bytes.count % 4 != 0 { bytes.append(0) } }
}

enum Fixture {
    static let frameA: [UInt8] = Array(0 ..< 60)
    static let frameB: [UInt8] = Array(100 ..< 142)
    static let frameC: [UInt8] = [0xde, 0xad, 0xbe, 0xef, 0x01]

    struct PcapRecord {
        var seconds: UInt32
        var fraction: UInt32
        var data: [UInt8]
        var originalLength: UInt32? = nil
    }

    static func pcap(bigEndian: Bool = false, nanosecond: Bool = false, linkType: UInt32 = 1,
                     snapLength: UInt32 = 65_535, _ records: [PcapRecord]) -> [UInt8] {
        var b = ByteBuilder(bigEndian: bigEndian)
        b.u32(nanosecond ? 0xA1B2_3C4D : 0xA1B2_C3D4)
        b.u16(2); b.u16(4)
        b.u32(0); b.u32(0)
        b.u32(snapLength)
        b.u32(linkType)
        for r in records {
            b.u32(r.seconds); b.u32(r.fraction)
            b.u32(UInt32(r.data.count)); b.u32(r.originalLength ?? UInt32(r.data.count))
            b.raw(r.data)
        }
        return b.bytes
    }

    // pcapng blocks: type, total length, body padded to 4, total length.
    static func block(_ type: UInt32, bigEndian: Bool, _ body: (inout ByteBuilder) -> Void) -> [UInt8] {
        var inner = ByteBuilder(bigEndian: bigEndian)
        body(&inner)
        inner.pad4()
        var b = ByteBuilder(bigEndian: bigEndian)
        let length = UInt32(12 + inner.bytes.count)
        b.u32(type); b.u32(length); b.raw(inner.bytes); b.u32(length)
        return b.bytes
    }

    static func shb(bigEndian: Bool) -> [UInt8] {
        block(0x0A0D_0D0A, bigEndian: bigEndian) {
            $0.u32(0x1A2B_3C4D); $0.u16(1); $0.u16(0)
            $0.u32(0xFFFF_FFFF); $0.u32(0xFFFF_FFFF)  // section length -1: unknown
        }
    }

    static func idb(bigEndian: Bool, linkType: UInt16 = 1, snapLength: UInt32 = 0,
                    name: String? = nil, tsresol: UInt8? = nil, tsoffset: Int64? = nil) -> [UInt8] {
        block(1, bigEndian: bigEndian) {
            $0.u16(linkType); $0.u16(0); $0.u32(snapLength)
            if let name {
                $0.u16(2); $0.u16(UInt16(name.utf8.count)); $0.raw(Array(name.utf8)); $0.pad4()
            }
            if let tsresol {
                $0.u16(9); $0.u16(1); $0.raw([tsresol]); $0.pad4()
            }
            if let tsoffset {
                let v = UInt64(bitPattern: tsoffset)
                $0.u16(14); $0.u16(8)
                if $0.bigEndian { $0.u32(UInt32(v >> 32)); $0.u32(UInt32(v & 0xFFFF_FFFF)) }
                else { $0.u32(UInt32(v & 0xFFFF_FFFF)); $0.u32(UInt32(v >> 32)) }
            }
            if name != nil || tsresol != nil || tsoffset != nil { $0.u16(0); $0.u16(0) }
        }
    }

    static func epb(bigEndian: Bool, interface: UInt32, ticks: UInt64, _ data: [UInt8],
                    originalLength: UInt32? = nil) -> [UInt8] {
        block(6, bigEndian: bigEndian) {
            $0.u32(interface); $0.u32(UInt32(ticks >> 32)); $0.u32(UInt32(ticks & 0xFFFF_FFFF))
            $0.u32(UInt32(data.count)); $0.u32(originalLength ?? UInt32(data.count))
            $0.raw(data)
        }
    }

    static func opb(bigEndian: Bool, interface: UInt16, ticks: UInt64, _ data: [UInt8]) -> [UInt8] {
        block(2, bigEndian: bigEndian) {
            $0.u16(interface); $0.u16(0); $0.u32(UInt32(ticks >> 32)); $0.u32(UInt32(ticks & 0xFFFF_FFFF))
            $0.u32(UInt32(data.count)); $0.u32(UInt32(data.count))
            $0.raw(data)
        }
    }

    static func spb(bigEndian: Bool, originalLength: UInt32, _ data: [UInt8]) -> [UInt8] {
        block(3, bigEndian: bigEndian) { $0.u32(originalLength); $0.raw(data) }
    }

    /// A block the reader must skip (NRB 4, ISB 5, custom 0xBAD, ...), with some body.
    static func other(_ type: UInt32, bigEndian: Bool) -> [UInt8] {
        block(type, bigEndian: bigEndian) { $0.raw([1, 2, 3, 4, 5, 6, 7]) }
    }
}

extension CaptureFile {
    func frame(_ i: Int) -> [UInt8] { withFrame(i) { Array($0) } }
    var timestamps: [Int64] { records.map(\.timestampNanos) }
}

/// Checks the one invariant the zero-copy API rests on: every record lies inside the file.
func assertRecordsInBounds(_ file: CaptureFile, file path: StaticString = #filePath, line: UInt = #line) {
    let size = file.withUnsafeBytes { $0.count }
    for (i, r) in file.records.enumerated() {
        XCTAssert(r.offset >= 0 && r.capturedLength >= 0 && r.offset + r.capturedLength <= size,
                  "record \(i) out of bounds: \(r)", file: path, line: line)
        XCTAssert(r.interface >= 0 && r.interface < file.interfaces.count, "record \(i) interface", file: path, line: line)
    }
}
