public enum ICMPType {
    public static let echoReply: UInt8 = 0
    public static let destinationUnreachable: UInt8 = 3
    public static let sourceQuench: UInt8 = 4
    public static let redirect: UInt8 = 5
    public static let echoRequest: UInt8 = 8
    public static let timeExceeded: UInt8 = 11
    public static let parameterProblem: UInt8 = 12
    public static let timestampRequest: UInt8 = 13
    public static let timestampReply: UInt8 = 14

    /// Error messages quote the offending datagram (the kernel's `icmp_is_err`).
    @inlinable
    public static func isError(_ t: UInt8) -> Bool {
        t == destinationUnreachable || t == sourceQuench || t == redirect || t == timeExceeded || t == parameterProblem
    }

    @inlinable
    public static func isQuery(_ t: UInt8) -> Bool {
        t == echoRequest || t == echoReply || t == timestampRequest || t == timestampReply || t == 15 || t == 16 || t == 17 || t == 18
    }
}

/// A checked view of an ICMP message: the 8-byte header is present; for an error message the
/// quoted IPv4 header and the first 8 bytes of its payload are too (`quote`).
public struct ICMPView {
    public let bytes: UnsafeRawBufferPointer

    @usableFromInline enum Field {
        @usableFromInline static let type = 0       // byte 0
        @usableFromInline static let code = 1       // byte 1
        @usableFromInline static let checksum = 2   // bytes 2-3
        @usableFromInline static let identifier = 4 // bytes 4-5 (echo, timestamp)
        @usableFromInline static let sequence = 6   // bytes 6-7 (echo, timestamp)
        @usableFromInline static let quote = 8      // errors: the original IPv4 header + 8 bytes
    }
    public static let headerLength = 8

    /// `fragmented`: a first fragment; the quote of an error may continue in the next fragment,
    /// so its absence is not an error here.
    @inlinable
    public static func check(_ bytes: UnsafeRawBufferPointer, fragmented: Bool = false) -> Result<ICMPView, DropReason> {
        guard bytes.count >= headerLength else { return .failure(.truncatedICMPHeader) }
        let v = ICMPView(unchecked: bytes)
        if ICMPType.isError(v.type) && !fragmented {
            if case .failure(let r) = ICMPQuoteView.check(bytes.slice(headerLength, bytes.count - headerLength)) {
                return .failure(r)
            }
        }
        return .success(v)
    }

    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard case .success(let v) = Self.check(bytes) else { return nil }
        self = v
    }

    @inlinable init(unchecked bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable public var type: UInt8 { bytes[Field.type] }
    @inlinable public var code: UInt8 { bytes[Field.code] }
    @inlinable public var checksum: UInt16 { bytes.be16(Field.checksum) }
    @inlinable public var identifier: UInt16 { bytes.be16(Field.identifier) }
    @inlinable public var sequence: UInt16 { bytes.be16(Field.sequence) }
    @inlinable public var isError: Bool { ICMPType.isError(type) }

    /// The nested view of the quoted datagram, for error messages whose quote is complete.
    @inlinable public var quote: ICMPQuoteView? {
        guard isError else { return nil }
        guard case .success(let q) = ICMPQuoteView.check(bytes.slice(Field.quote, bytes.count - Field.quote)) else { return nil }
        return q
    }

    public var checksumValid: Bool { Checksum.fold(Checksum.sum(bytes)) == 0 }

    public var summary: ICMPSummary {
        ICMPSummary(type: type, code: code,
                    identifier: ICMPType.isQuery(type) ? identifier : nil,
                    sequence: ICMPType.isQuery(type) ? sequence : nil,
                    quote: quote?.summary)
    }
}

/// The datagram quoted by an ICMP error: its IPv4 header (with options) and at least the first
/// 8 bytes of its L4 header (ports for TCP/UDP, type/code/id for ICMP). The quoted total length
/// describes the original datagram, not the quote, so it is not checked against the bytes.
public struct ICMPQuoteView {
    public let bytes: UnsafeRawBufferPointer

    @inlinable
    public static func check(_ bytes: UnsafeRawBufferPointer) -> Result<ICMPQuoteView, DropReason> {
        guard bytes.count >= IPv4View.minimumHeaderLength else { return .failure(.icmpErrorShortQuote) }
        let vihl = bytes[0]
        let hlen = Int(vihl & 0x0F) * 4
        guard vihl >> 4 == 4, hlen >= IPv4View.minimumHeaderLength else { return .failure(.icmpErrorBadInnerHeader) }
        guard bytes.count >= hlen + 8 else { return .failure(.icmpErrorShortQuote) }
        return .success(ICMPQuoteView(bytes: bytes))
    }

    @inlinable init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable public var headerLength: Int { Int(bytes[0] & 0x0F) * 4 }
    @inlinable public var proto: UInt8 { bytes[9] }
    @inlinable public var source: UInt32 { bytes.be32(12) }
    @inlinable public var destination: UInt32 { bytes.be32(16) }
    @inlinable public var fragmentOffset: Int { Int(bytes.be16(6) & 0x1FFF) * 8 }
    /// The first 8 bytes of the quoted L4 header.
    @inlinable public var l4: UnsafeRawBufferPointer { bytes.slice(headerLength, 8) }
    /// Ports for TCP/UDP/SCTP quotes (the first two 16-bit words); for ICMP, identifier in `sourcePort`.
    @inlinable public var sourcePort: UInt16 { proto == IPProtocol.icmp ? bytes.be16(headerLength + 4) : bytes.be16(headerLength) }
    @inlinable public var destinationPort: UInt16 { proto == IPProtocol.icmp ? UInt16(bytes[headerLength]) << 8 | UInt16(bytes[headerLength + 1]) : bytes.be16(headerLength + 2) }

    public var summary: ICMPQuoteSummary {
        ICMPQuoteSummary(proto: proto, source: IPv4Address(source), destination: IPv4Address(destination),
                         sourcePort: sourcePort, destinationPort: destinationPort)
    }
}

public struct ICMPQuoteSummary: Equatable, Sendable {
    public var proto: UInt8
    public var source: IPv4Address
    public var destination: IPv4Address
    /// TCP/UDP: ports. ICMP: identifier, and type << 8 | code.
    public var sourcePort: UInt16
    public var destinationPort: UInt16

    public init(proto: UInt8, source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16) {
        self.proto = proto; self.source = source; self.destination = destination
        self.sourcePort = sourcePort; self.destinationPort = destinationPort
    }
}

public struct ICMPSummary: Equatable, Sendable {
    public var type: UInt8
    public var code: UInt8
    public var identifier: UInt16?
    public var sequence: UInt16?
    public var quote: ICMPQuoteSummary?

    public init(type: UInt8, code: UInt8, identifier: UInt16? = nil, sequence: UInt16? = nil, quote: ICMPQuoteSummary? = nil) {
        self.type = type; self.code = code; self.identifier = identifier; self.sequence = sequence; self.quote = quote
    }
}
