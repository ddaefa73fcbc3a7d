import Wire

/// Classic pcap (tcpdump.org pcap-savefile(5)): a 24-byte file header, then records of a
/// 16-byte header and the captured bytes, all in the byte order the magic reveals.
enum PcapLayout {
    // File header.
    static let magic = 0           // bytes 0-3: a1b2c3d4 (usec) or a1b23c4d (nsec), either order
    static let versionMajor = 4    // bytes 4-5
    static let versionMinor = 6    // bytes 6-7
    static let snapLength = 16     // bytes 16-19 (8-15: thiszone, sigfigs; always 0, ignored)
    static let linkType = 20       // bytes 20-23: LINKTYPE in bits 0-15, FCS info in bits 26-31
    static let fileHeaderLength = 24
    // Record header, relative to the record.
    static let seconds = 0         // bytes 0-3
    static let fraction = 4        // bytes 4-7: micro- or nanoseconds
    static let capturedLength = 8  // bytes 8-11
    static let originalLength = 12 // bytes 12-15
    static let recordHeaderLength = 16
}

extension CaptureIndexer {
    mutating func indexPcap() throws(CaptureError) {
        typealias L = PcapLayout
        guard bytes.count >= L.fileHeaderLength else {
            throw .badHeader(file: name, reason: "classic pcap header needs 24 bytes, file has \(bytes.count)")
        }
        let bigEndian = bytes.be32(L.magic) == Self.pcapMagicMicro || bytes.be32(L.magic) == Self.pcapMagicNano
        let nanosecond = bytes.u32(L.magic, bigEndian: bigEndian) == Self.pcapMagicNano
        let major = bytes.u16(L.versionMajor, bigEndian: bigEndian)
        let minor = bytes.u16(L.versionMinor, bigEndian: bigEndian)
        guard major == 2 else {
            throw .badHeader(file: name, reason: "classic pcap version \(major).\(minor), expected 2.x")
        }
        format = .pcap(bigEndian: bigEndian, nanosecond: nanosecond)
        let unitsPerSecond: UInt64 = nanosecond ? 1_000_000_000 : 1_000_000
        let snapLength = bytes.u32(L.snapLength, bigEndian: bigEndian)
        // libpcap: LT_LINKTYPE(x) is the low 16 bits; the rest is FCS length and reserved bits.
        let linkType = bytes.u32(L.linkType, bigEndian: bigEndian) & 0xFFFF
        interfaces = [CaptureInterface(linkTypeRaw: linkType, snapLength: snapLength,
                                       timestampUnitsPerSecond: unitsPerSecond)]

        let fractionScale = Int64(Self.nanosPerSecond / unitsPerSecond)
        var offset = L.fileHeaderLength
        while offset < bytes.count {
            let left = bytes.count - offset
            guard left >= L.recordHeaderLength else {
                warnings.add("truncated last record at offset \(offset): \(left) of 16 header bytes")
                break
            }
            let capturedLength = Int(bytes.u32(offset + L.capturedLength, bigEndian: bigEndian))
            let data = offset + L.recordHeaderLength
            guard capturedLength <= bytes.count - data else {
                warnings.add("truncated last record at offset \(offset): captured length \(capturedLength), "
                    + "\(bytes.count - data) bytes left")
                break
            }
            if snapLength != 0 && capturedLength > Int(snapLength) {
                // Kept whole (tshark does too); libpcap would cut it to the snap length.
                warnings.add("captured length \(capturedLength) > snap length \(snapLength) in record \(records.count)")
            }
            let seconds = bytes.u32(offset + L.seconds, bigEndian: bigEndian)
            let fraction = bytes.u32(offset + L.fraction, bigEndian: bigEndian)
            if UInt64(fraction) >= unitsPerSecond {
                // Kept as given: converted arithmetically, as libpcap hands it on unchanged.
                warnings.add("timestamp \(nanosecond ? "nanoseconds >= 1000000000" : "microseconds >= 1000000") "
                    + "in record \(records.count)")
            }
            // Cannot overflow: seconds < 2^32 and fraction * scale < 2^42.
            let timestamp = Int64(seconds) * Int64(Self.nanosPerSecond) + Int64(fraction) * fractionScale
            records.append(CaptureRecord(
                offset: data, capturedLength: capturedLength,
                originalLength: Int(bytes.u32(offset + L.originalLength, bigEndian: bigEndian)),
                timestampNanos: timestamp, interface: 0))
            offset = data + capturedLength
        }
    }
}
