public struct TCPFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
    public static let ece = TCPFlags(rawValue: 0x40)
    public static let cwr = TCPFlags(rawValue: 0x80)

    /// tcpdump-style letters: F S R P . U E W.
    public var description: String {
        var s = ""
        if contains(.fin) { s += "F" }
        if contains(.syn) { s += "S" }
        if contains(.rst) { s += "R" }
        if contains(.psh) { s += "P" }
        if contains(.ack) { s += "." }
        if contains(.urg) { s += "U" }
        if contains(.ece) { s += "E" }
        if contains(.cwr) { s += "W" }
        return s
    }
}

/// A checked view of a TCP header. The base 20 bytes are always present after `check`; for an
/// unfragmented segment the whole header (data offset) is too.
public struct TCPView {
    public let bytes: UnsafeRawBufferPointer

    @usableFromInline enum Field {
        @usableFromInline static let sourcePort = 0      // bytes 0-1
        @usableFromInline static let destinationPort = 2 // bytes 2-3
        @usableFromInline static let sequence = 4        // bytes 4-7
        @usableFromInline static let acknowledgment = 8  // bytes 8-11
        @usableFromInline static let dataOffset = 12     // byte 12, high nibble (32-bit words)
        @usableFromInline static let flags = 13          // byte 13
        @usableFromInline static let window = 14         // bytes 14-15
        @usableFromInline static let checksum = 16       // bytes 16-17
        @usableFromInline static let urgent = 18         // bytes 18-19
        @usableFromInline static let options = 20
    }
    public static let minimumHeaderLength = 20

    /// `bytes` is the IP payload. `fragmented` relaxes the "header within the packet" rule:
    /// a first fragment may carry only part of the options.
    @inlinable
    public static func check(_ bytes: UnsafeRawBufferPointer, fragmented: Bool = false) -> Result<TCPView, DropReason> {
        guard bytes.count >= minimumHeaderLength else { return .failure(.truncatedTCPHeader) }
        let doff = Int(bytes[Field.dataOffset] >> 4) * 4
        guard doff >= minimumHeaderLength else { return .failure(.badTCPDataOffset) }
        guard fragmented || doff <= bytes.count else { return .failure(.tcpDataOffsetBeyondPacket) }
        return .success(TCPView(unchecked: bytes))
    }

    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard case .success(let v) = Self.check(bytes) else { return nil }
        self = v
    }

    @inlinable init(unchecked bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable public var sourcePort: UInt16 { bytes.be16(Field.sourcePort) }
    @inlinable public var destinationPort: UInt16 { bytes.be16(Field.destinationPort) }
    @inlinable public var sequence: UInt32 { bytes.be32(Field.sequence) }
    @inlinable public var acknowledgment: UInt32 { bytes.be32(Field.acknowledgment) }
    @inlinable public var headerLength: Int { Int(bytes[Field.dataOffset] >> 4) * 4 }
    @inlinable public var flags: TCPFlags { TCPFlags(rawValue: bytes[Field.flags]) }
    @inlinable public var window: UInt16 { bytes.be16(Field.window) }
    @inlinable public var checksum: UInt16 { bytes.be16(Field.checksum) }
    @inlinable public var urgentPointer: UInt16 { bytes.be16(Field.urgent) }
    /// The options present in these bytes (may be cut short in a first fragment).
    @inlinable public var options: UnsafeRawBufferPointer {
        bytes.slice(Field.options, min(headerLength, bytes.count) - Field.options)
    }
    @inlinable public var payload: UnsafeRawBufferPointer {
        let h = min(headerLength, bytes.count)
        return bytes.slice(h, bytes.count - h)
    }

    /// Options walk with bounds: EOL ends, NOP is one byte, others carry a length >= 2 inside
    /// the header. False for options that run past the header.
    @inlinable public var optionsWellFormed: Bool {
        let o = options
        var i = 0
        while i < o.count {
            let k = o[i]
            if k == 0 { return true }
            if k == 1 { i += 1; continue }
            guard i + 1 < o.count else { return false }
            let len = Int(o[i + 1])
            guard len >= 2, i + len <= o.count else { return false }
            i += len
        }
        return true
    }

    /// The MSS option value, if present and well-formed.
    public var mss: UInt16? {
        let o = options
        var i = 0
        while i < o.count {
            let k = o[i]
            if k == 0 { return nil }
            if k == 1 { i += 1; continue }
            guard i + 1 < o.count else { return nil }
            let len = Int(o[i + 1])
            guard len >= 2, i + len <= o.count else { return nil }
            if k == 2 && len == 4 { return o.be16(i + 2) }
            i += len
        }
        return nil
    }

    /// Verifies the checksum over pseudo-header + segment (needs the full segment).
    public func checksumValid(source: UInt32, destination: UInt32) -> Bool {
        let ph = Checksum.pseudoHeaderSum(src: source, dst: destination, proto: IPProtocol.tcp, length: UInt16(bytes.count))
        return Checksum.fold(Checksum.sum(bytes, initial: ph)) == 0
    }

    public var summary: TCPSummary {
        TCPSummary(sourcePort: sourcePort, destinationPort: destinationPort, sequence: sequence,
                   acknowledgment: acknowledgment, headerLength: headerLength, flags: flags,
                   window: window, mss: mss, payloadLength: payload.count)
    }
}

public struct TCPSummary: Equatable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequence: UInt32
    public var acknowledgment: UInt32
    public var headerLength: Int
    public var flags: TCPFlags
    public var window: UInt16
    public var mss: UInt16?
    public var payloadLength: Int

    public init(sourcePort: UInt16, destinationPort: UInt16, sequence: UInt32 = 0, acknowledgment: UInt32 = 0,
                headerLength: Int = 20, flags: TCPFlags, window: UInt16 = 65535, mss: UInt16? = nil, payloadLength: Int = 0) {
        self.sourcePort = sourcePort; self.destinationPort = destinationPort; self.sequence = sequence
        self.acknowledgment = acknowledgment; self.headerLength = headerLength; self.flags = flags
        self.window = window; self.mss = mss; self.payloadLength = payloadLength
    }
}
