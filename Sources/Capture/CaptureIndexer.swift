import Wire

/// Warnings, capped so that a hostile file (a million bad timestamps) cannot make indexing
/// cost more memory than the records themselves.
struct Warnings {
    static let limit = 100
    private(set) var messages: [String] = []
    private var dropped = 0

    mutating func add(_ message: @autoclosure () -> String) {
        if messages.count < Self.limit { messages.append(message()) } else { dropped += 1 }
    }

    mutating func finish() {
        if dropped > 0 { messages.append("\(dropped) more warnings not shown") }
    }
}

/// Builds the record index of a whole file in one pass. Every record it emits has been checked
/// to lie inside the buffer; nothing it reads can trap, whatever the bytes are.
struct CaptureIndexer {
    let bytes: UnsafeRawBufferPointer
    let name: String
    var format = CaptureFormat.pcapng
    var interfaces: [CaptureInterface] = []
    var records: [CaptureRecord] = []
    var warnings = Warnings()

    static let pcapMagicMicro: UInt32 = 0xA1B2_C3D4
    static let pcapMagicNano: UInt32 = 0xA1B2_3C4D
    static let pcapngSectionHeader: UInt32 = 0x0A0D_0D0A  // the same in both byte orders

    static func index(_ bytes: UnsafeRawBufferPointer, name: String) throws(CaptureError) -> CaptureIndexer {
        var indexer = CaptureIndexer(bytes: bytes, name: name)
        guard bytes.count >= 4 else {
            throw .badHeader(file: name, reason: "file is \(bytes.count) bytes, too short for any header")
        }
        let magicLE = bytes.le32(0)
        switch magicLE {
        case pcapMagicMicro, pcapMagicNano, pcapMagicMicro.byteSwapped, pcapMagicNano.byteSwapped:
            try indexer.indexPcap()
        case pcapngSectionHeader:
            try indexer.indexPcapng()
        default:
            // Report the magic as it reads in file order, which is how people grep for it.
            throw .unknownMagic(file: name, magic: bytes.be32(0))
        }
        indexer.warnings.finish()
        return indexer
    }

    // MARK: timestamps

    static let nanosPerSecond: UInt64 = 1_000_000_000

    /// `seconds * 1e9 + nanos`, or nil when that does not fit in Int64.
    static func combine(seconds: Int64, nanos: Int64) -> Int64? {
        let (scaled, o1) = seconds.multipliedReportingOverflow(by: Int64(nanosPerSecond))
        let (sum, o2) = scaled.addingReportingOverflow(nanos)
        return o1 || o2 ? nil : sum
    }

    /// Nanoseconds for `ticks` units of 1/`unitsPerSecond` plus `offsetSeconds`, truncated
    /// toward zero; nil when it does not fit in Int64. `unitsPerSecond` is never 0.
    static func nanos(ticks: UInt64, unitsPerSecond: UInt64, offsetSeconds: Int64) -> Int64? {
        let seconds = ticks / unitsPerSecond
        let fraction = ticks % unitsPerSecond
        // fraction < unitsPerSecond, so fraction * 1e9 / unitsPerSecond < 1e9: the full-width
        // product cannot make the quotient overflow.
        let (nanos, _) = unitsPerSecond.dividingFullWidth(nanosPerSecond.multipliedFullWidth(by: fraction))
        guard seconds <= UInt64(Int64.max) else { return nil }
        let (total, overflow) = Int64(seconds).addingReportingOverflow(offsetSeconds)
        return overflow ? nil : combine(seconds: total, nanos: Int64(nanos))
    }

    /// The timestamp of the record about to be appended; one that does not fit in Int64
    /// (pcapng ticks near 2^64, a huge if_tsoffset) is clamped to Int64.max with a warning.
    mutating func clampedTimestamp(_ value: Int64?) -> Int64 {
        if let value { return value }
        warnings.add("timestamp out of range in record \(records.count); clamped")
        return Int64.max
    }
}

extension UnsafeRawBufferPointer {
    /// A 16/32-bit read in the byte order of the file or section being parsed.
    @inline(__always)
    func u16(_ offset: Int, bigEndian: Bool) -> UInt16 { bigEndian ? be16(offset) : le16(offset) }

    @inline(__always)
    func u32(_ offset: Int, bigEndian: Bool) -> UInt32 { bigEndian ? be32(offset) : le32(offset) }
}
