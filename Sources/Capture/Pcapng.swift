import Wire

/// pcapng (draft-ietf-opsawg-pcapng): a sequence of blocks `type, total length, body, total
/// length`, each section opened by an SHB whose byte-order magic sets the order of every field
/// in the section. Offsets are relative to the start of a block.
enum PcapngLayout {
    static let type = 0                 // bytes 0-3
    static let totalLength = 4          // bytes 4-7, repeated in the block's last 4 bytes
    static let minimumBlockLength = 12  // type, length, trailing length

    enum SectionHeader {
        static let type: UInt32 = 0x0A0D_0D0A
        static let byteOrderMagic = 8   // bytes 8-11: 1a2b3c4d in the section's order
        static let versionMajor = 12    // bytes 12-13
        static let versionMinor = 14    // bytes 14-15 (16-23: section length, may be -1; unused)
        static let minimumLength = 28
        static let magicValue: UInt32 = 0x1A2B_3C4D
    }

    enum InterfaceDescription {
        static let type: UInt32 = 1
        static let linkType = 8         // bytes 8-9 (10-11 reserved)
        static let snapLength = 12      // bytes 12-15, 0 = unlimited
        static let options = 16
        static let minimumLength = 20
    }

    /// EPB (type 6) and the obsolete packet block (type 2) share this layout, except that the
    /// OPB's interface id is 16 bits (bytes 8-9) followed by a 16-bit drop count.
    enum EnhancedPacket {
        static let type: UInt32 = 6
        static let obsoleteType: UInt32 = 2
        static let interfaceID = 8      // bytes 8-11 (OPB: 8-9)
        static let timestampHigh = 12   // bytes 12-15
        static let timestampLow = 16    // bytes 16-19
        static let capturedLength = 20  // bytes 20-23
        static let originalLength = 24  // bytes 24-27
        static let data = 28
        static let minimumLength = 32
    }

    enum SimplePacket {
        static let type: UInt32 = 3
        static let originalLength = 8   // bytes 8-11
        static let data = 12
        static let minimumLength = 16
    }

    enum Option {
        static let code = 0             // bytes 0-1
        static let length = 2           // bytes 2-3
        static let value = 4            // value padded to 4 bytes
        static let endOfOptions: UInt16 = 0
        static let ifName: UInt16 = 2
        static let ifTsresol: UInt16 = 9
        static let ifTsoffset: UInt16 = 14
    }
}

/// What a packet block needs to know about an interface of the current section.
private struct SectionInterface {
    var global: Int
    var unitsPerSecond: UInt64
    var offsetSeconds: Int64
    var snapLength: UInt32
}

extension CaptureIndexer {
    mutating func indexPcapng() throws(CaptureError) {
        typealias L = PcapngLayout
        format = .pcapng
        var bigEndian = false
        var section: [SectionInterface] = []
        var offset = 0

        blocks: while offset < bytes.count {
            let left = bytes.count - offset
            // A damaged first block means there is no section to read: that is a header error.
            // Later damage ends the read, keeping the records before it.
            func stop(_ reason: String) throws(CaptureError) {
                if offset == 0 { throw .badHeader(file: name, reason: reason) }
                warnings.add(reason)
            }
            guard left >= L.minimumBlockLength else {
                try stop("truncated block at offset \(offset): \(left) bytes left"); break
            }
            let type = bytes.u32(offset + L.type, bigEndian: bigEndian)
            if type == L.SectionHeader.type {
                let magic = bytes.le32(offset + L.SectionHeader.byteOrderMagic)
                if magic == L.SectionHeader.magicValue {
                    bigEndian = false
                } else if magic == L.SectionHeader.magicValue.byteSwapped {
                    bigEndian = true
                } else {
                    try stop("section header at offset \(offset) has byte-order magic 0x\(String(magic, radix: 16))")
                    break
                }
            }
            let length = Int(bytes.u32(offset + L.totalLength, bigEndian: bigEndian))
            guard length >= L.minimumBlockLength, length % 4 == 0, length <= left else {
                try stop("block at offset \(offset) has bad length \(length) (\(left) bytes left)"); break
            }
            let block = bytes.slice(offset, length)
            guard block.u32(length - 4, bigEndian: bigEndian) == UInt32(length) else {
                try stop("block at offset \(offset): trailing length \(block.u32(length - 4, bigEndian: bigEndian)) "
                    + "differs from \(length)")
                break
            }

            switch type {
            case L.SectionHeader.type:
                guard length >= L.SectionHeader.minimumLength else {
                    try stop("section header at offset \(offset) is \(length) bytes"); break blocks
                }
                let major = block.u16(L.SectionHeader.versionMajor, bigEndian: bigEndian)
                guard major == 1 else {
                    try stop("section header at offset \(offset) has version \(major), expected 1"); break blocks
                }
                section = []  // interface ids restart in every section

            case L.InterfaceDescription.type:
                guard length >= L.InterfaceDescription.minimumLength else {
                    try stop("interface block at offset \(offset) is \(length) bytes"); break blocks
                }
                section.append(addInterface(block, at: offset, bigEndian: bigEndian))

            case L.EnhancedPacket.type, L.EnhancedPacket.obsoleteType:
                typealias P = L.EnhancedPacket
                guard length >= P.minimumLength else {
                    try stop("packet block at offset \(offset) is \(length) bytes"); break blocks
                }
                let id = type == P.type ? Int(block.u32(P.interfaceID, bigEndian: bigEndian))
                                        : Int(block.u16(P.interfaceID, bigEndian: bigEndian))
                let capturedLength = Int(block.u32(P.capturedLength, bigEndian: bigEndian))
                guard capturedLength <= length - P.minimumLength else {
                    try stop("packet block at offset \(offset): captured length \(capturedLength) "
                        + "exceeds the block (\(length - P.minimumLength) bytes)")
                    break blocks
                }
                guard id < section.count else {
                    warnings.add("packet block at offset \(offset) names interface \(id), "
                        + "the section has \(section.count); skipped")
                    break
                }
                let ticks = UInt64(block.u32(P.timestampHigh, bigEndian: bigEndian)) << 32
                    | UInt64(block.u32(P.timestampLow, bigEndian: bigEndian))
                let interface = section[id]
                let timestamp = clampedTimestamp(Self.nanos(ticks: ticks, unitsPerSecond: interface.unitsPerSecond,
                                                            offsetSeconds: interface.offsetSeconds))
                records.append(CaptureRecord(
                    offset: offset + P.data, capturedLength: capturedLength,
                    originalLength: Int(block.u32(P.originalLength, bigEndian: bigEndian)),
                    timestampNanos: timestamp, interface: interface.global))

            case L.SimplePacket.type:
                typealias P = L.SimplePacket
                guard length >= P.minimumLength else {
                    try stop("simple packet block at offset \(offset) is \(length) bytes"); break blocks
                }
                guard let interface = section.first else {
                    warnings.add("simple packet block at offset \(offset) before any interface; skipped")
                    break
                }
                // No captured length field: the data is what the block holds (padding included),
                // cut to the original length and the interface's snap length.
                let originalLength = Int(block.u32(P.originalLength, bigEndian: bigEndian))
                var capturedLength = min(originalLength, length - P.minimumLength)
                if interface.snapLength != 0 { capturedLength = min(capturedLength, Int(interface.snapLength)) }
                records.append(CaptureRecord(
                    offset: offset + P.data, capturedLength: capturedLength, originalLength: originalLength,
                    timestampNanos: 0, interface: interface.global))

            default:
                break  // NRB, ISB, DSB, custom and unknown blocks: skipped by their length
            }
            offset += length
        }
    }

    /// Registers the interface an IDB describes; options it cannot use are ignored, bad ones warned.
    private mutating func addInterface(_ block: UnsafeRawBufferPointer, at blockOffset: Int,
                                       bigEndian: Bool) -> SectionInterface {
        typealias I = PcapngLayout.InterfaceDescription
        typealias O = PcapngLayout.Option
        var interface = CaptureInterface(
            linkTypeRaw: UInt32(block.u16(I.linkType, bigEndian: bigEndian)),
            snapLength: block.u32(I.snapLength, bigEndian: bigEndian),
            timestampUnitsPerSecond: 1_000_000)  // pcapng default: microseconds
        var offsetSeconds: Int64 = 0

        var option = I.options
        let end = block.count - 4  // before the trailing length
        while end - option >= O.value {
            let code = block.u16(option + O.code, bigEndian: bigEndian)
            let valueLength = Int(block.u16(option + O.length, bigEndian: bigEndian))
            if code == O.endOfOptions { break }
            let value = option + O.value
            guard valueLength <= end - value else {
                warnings.add("interface block at offset \(blockOffset): option \(code) runs past the block")
                break
            }
            switch (code, valueLength) {
            case (O.ifName, _):
                let text = block.slice(value, valueLength)
                interface.name = String(decoding: text.prefix { $0 != 0 }, as: UTF8.self)
            case (O.ifTsresol, 1):
                let exponent = Int(block[value] & 0x7F)
                let powerOfTwo = block[value] & 0x80 != 0
                if powerOfTwo ? exponent <= 63 : exponent <= 19 {
                    interface.timestampUnitsPerSecond = powerOfTwo ? 1 << UInt64(exponent) : pow10(exponent)
                } else {
                    warnings.add("interface block at offset \(blockOffset): if_tsresol 0x\(String(block[value], radix: 16)) "
                        + "does not fit 64 bits; using microseconds")
                }
            case (O.ifTsoffset, 8):
                let high = UInt64(block.u32(value + (bigEndian ? 0 : 4), bigEndian: bigEndian))
                let low = UInt64(block.u32(value + (bigEndian ? 4 : 0), bigEndian: bigEndian))
                offsetSeconds = Int64(bitPattern: high << 32 | low)
            default:
                break
            }
            option = value + ((valueLength + 3) & ~3)  // values are padded to 4 bytes
        }
        interfaces.append(interface)
        return SectionInterface(global: interfaces.count - 1, unitsPerSecond: interface.timestampUnitsPerSecond,
                                offsetSeconds: offsetSeconds, snapLength: interface.snapLength)
    }
}

private func pow10(_ exponent: Int) -> UInt64 {
    var value: UInt64 = 1
    for _ in 0 ..< exponent { value *= 10 }
    return value
}
