/// A checked view of a UDP header: the 8-byte header is present and the length field is in
/// [8, bytes available].
public struct UDPView {
    public let bytes: UnsafeRawBufferPointer

    @usableFromInline enum Field {
        @usableFromInline static let sourcePort = 0      // bytes 0-1
        @usableFromInline static let destinationPort = 2 // bytes 2-3
        @usableFromInline static let length = 4          // bytes 4-5
        @usableFromInline static let checksum = 6        // bytes 6-7
    }
    public static let headerLength = 8

    /// `fragmented`: the datagram continues in later fragments, so the length field may exceed
    /// these bytes.
    @inlinable
    public static func check(_ bytes: UnsafeRawBufferPointer, fragmented: Bool = false) -> Result<UDPView, DropReason> {
        guard bytes.count >= headerLength else { return .failure(.truncatedUDPHeader) }
        let len = Int(bytes.be16(Field.length))
        guard len >= headerLength, fragmented || len <= bytes.count else { return .failure(.badUDPLength) }
        return .success(UDPView(unchecked: bytes))
    }

    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard case .success(let v) = Self.check(bytes) else { return nil }
        self = v
    }

    @inlinable init(unchecked bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable public var sourcePort: UInt16 { bytes.be16(Field.sourcePort) }
    @inlinable public var destinationPort: UInt16 { bytes.be16(Field.destinationPort) }
    @inlinable public var length: Int { Int(bytes.be16(Field.length)) }
    @inlinable public var checksum: UInt16 { bytes.be16(Field.checksum) }
    /// A zero checksum means "not computed" in IPv4 (RFC 768).
    @inlinable public var hasChecksum: Bool { checksum != 0 }
    @inlinable public var payload: UnsafeRawBufferPointer {
        let end = min(length, bytes.count)
        return bytes.slice(Self.headerLength, end - Self.headerLength)
    }

    public func checksumValid(source: UInt32, destination: UInt32) -> Bool {
        guard hasChecksum else { return true }
        let seg = bytes.slice(0, min(length, bytes.count))
        let ph = Checksum.pseudoHeaderSum(src: source, dst: destination, proto: IPProtocol.udp, length: UInt16(seg.count))
        return Checksum.fold(Checksum.sum(seg, initial: ph)) == 0
    }

    public var summary: UDPSummary {
        UDPSummary(sourcePort: sourcePort, destinationPort: destinationPort, length: length,
                   checksumPresent: hasChecksum, payloadLength: payload.count)
    }
}

public struct UDPSummary: Equatable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var length: Int
    public var checksumPresent: Bool
    public var payloadLength: Int

    public init(sourcePort: UInt16, destinationPort: UInt16, length: Int, checksumPresent: Bool = true, payloadLength: Int) {
        self.sourcePort = sourcePort; self.destinationPort = destinationPort; self.length = length
        self.checksumPresent = checksumPresent; self.payloadLength = payloadLength
    }
}
