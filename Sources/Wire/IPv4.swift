public enum IPProtocol {
    public static let icmp: UInt8 = 1
    public static let igmp: UInt8 = 2
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let gre: UInt8 = 47
    public static let esp: UInt8 = 50
    public static let ah: UInt8 = 51
    public static let sctp: UInt8 = 132
}

/// A checked view of an IPv4 header over bytes owned by someone else (capture buffer or NFQUEUE
/// message). `init` does every length check once; accessors after it never trap.
public struct IPv4View {
    public let bytes: UnsafeRawBufferPointer

    @usableFromInline enum Field {
        @usableFromInline static let versionIHL = 0      // byte 0: version (4 bits), IHL (4 bits)
        @usableFromInline static let tos = 1             // byte 1: DSCP/ECN
        @usableFromInline static let totalLength = 2     // bytes 2-3
        @usableFromInline static let identification = 4 // bytes 4-5
        @usableFromInline static let flagsFragment = 6   // bytes 6-7: flags (3 bits), offset (13 bits)
        @usableFromInline static let ttl = 8             // byte 8
        @usableFromInline static let proto = 9           // byte 9
        @usableFromInline static let checksum = 10       // bytes 10-11
        @usableFromInline static let source = 12         // bytes 12-15
        @usableFromInline static let destination = 16    // bytes 16-19
        @usableFromInline static let options = 20        // up to byte IHL*4
    }
    public static let minimumHeaderLength = 20

    /// Checks, in the kernel's order (ip_rcv_core): enough bytes for a base header, version 4,
    /// IHL >= 5, header within the bytes, total length >= header length, total length within the
    /// bytes. On success `bytes` is trimmed to the total length (drops Ethernet padding).
    ///
    /// `missingBytes`: bytes the capture did not keep (snaplen); a total length that runs into
    /// them is accepted and the view then covers only the bytes present (`bytes.count <
    /// totalLength`; use `capturedPayload`).
    @inlinable
    public static func check(_ bytes: UnsafeRawBufferPointer, missingBytes: Int = 0) -> Result<IPv4View, DropReason> {
        guard bytes.count >= minimumHeaderLength else { return .failure(.truncatedIPv4Header) }
        let vihl = bytes[Field.versionIHL]
        guard vihl >> 4 == 4 else { return .failure(.badIPVersion) }
        let hlen = Int(vihl & 0x0F) * 4
        guard hlen >= minimumHeaderLength else { return .failure(.badIHL) }
        let total = Int(bytes.be16(Field.totalLength))
        guard hlen <= bytes.count else {
            return .failure(total < hlen ? .badIPTotalLength : .truncatedIPv4Header)
        }
        guard total >= hlen else { return .failure(.badIPTotalLength) }
        guard total <= bytes.count + missingBytes else { return .failure(.ipTotalLengthBeyondCapture) }
        return .success(IPv4View(unchecked: bytes.slice(0, min(total, bytes.count))))
    }

    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard case .success(let v) = Self.check(bytes) else { return nil }
        self = v
    }

    @inlinable
    init(unchecked bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable public var version: UInt8 { bytes[Field.versionIHL] >> 4 }
    @inlinable public var headerLength: Int { Int(bytes[Field.versionIHL] & 0x0F) * 4 }
    @inlinable public var tos: UInt8 { bytes[Field.tos] }
    @inlinable public var totalLength: Int { Int(bytes.be16(Field.totalLength)) }
    @inlinable public var identification: UInt16 { bytes.be16(Field.identification) }
    @inlinable public var dontFragment: Bool { bytes[Field.flagsFragment] & 0x40 != 0 }
    @inlinable public var moreFragments: Bool { bytes[Field.flagsFragment] & 0x20 != 0 }
    @inlinable public var reservedFlag: Bool { bytes[Field.flagsFragment] & 0x80 != 0 }
    /// Fragment offset in bytes (the field counts 8-byte units).
    @inlinable public var fragmentOffset: Int { Int(bytes.be16(Field.flagsFragment) & 0x1FFF) * 8 }
    /// True for any fragment (first or later); the kernel's `ip_is_fragment`.
    @inlinable public var isFragment: Bool { bytes.be16(Field.flagsFragment) & 0x3FFF != 0 }
    @inlinable public var ttl: UInt8 { bytes[Field.ttl] }
    @inlinable public var proto: UInt8 { bytes[Field.proto] }
    @inlinable public var checksum: UInt16 { bytes.be16(Field.checksum) }
    @inlinable public var source: UInt32 { bytes.be32(Field.source) }
    @inlinable public var destination: UInt32 { bytes.be32(Field.destination) }
    @inlinable public var options: UnsafeRawBufferPointer { bytes.slice(Field.options, headerLength - Field.options) }
    @inlinable public var header: UnsafeRawBufferPointer { bytes.slice(0, headerLength) }
    /// The payload bytes present (all of it unless a capture cut the packet short).
    @inlinable public var payload: UnsafeRawBufferPointer { bytes.slice(headerLength, bytes.count - headerLength) }

    /// True when the header checksum sums to zero (RFC 1071 verification).
    @inlinable public var checksumValid: Bool { Checksum.fold(Checksum.sum(header)) == 0 }

    /// Walks the options as the kernel's ip_options_compile does for its length rules: EOL ends,
    /// NOP is one byte, every other option has a length byte >= 2 that stays inside the header.
    @inlinable public var optionsWellFormed: Bool { IPv4Options.validate(options) }

    public var summary: IPv4Summary {
        IPv4Summary(
            headerLength: headerLength, tos: tos, totalLength: totalLength, identification: identification,
            dontFragment: dontFragment, moreFragments: moreFragments, fragmentOffset: fragmentOffset,
            ttl: ttl, proto: proto, checksumValid: checksumValid,
            source: IPv4Address(source), destination: IPv4Address(destination),
            optionTypes: IPv4Options.types(options)
        )
    }
}

public enum IPv4Options {
    public static let eol: UInt8 = 0
    public static let nop: UInt8 = 1
    public static let routerAlert: UInt8 = 148
    public static let recordRoute: UInt8 = 7
    public static let lsrr: UInt8 = 131
    public static let ssrr: UInt8 = 137
    public static let timestamp: UInt8 = 68
    public static let security: UInt8 = 130

    @inlinable
    public static func validate(_ o: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < o.count {
            let t = o[i]
            if t == eol { return true }
            if t == nop { i += 1; continue }
            guard i + 1 < o.count else { return false }
            let len = Int(o[i + 1])
            guard len >= 2, i + len <= o.count else { return false }
            i += len
        }
        return true
    }

    /// Option type bytes in order (EOL ends the list; NOP skipped); stops at the first malformed option.
    public static func types(_ o: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < o.count {
            let t = o[i]
            if t == eol { break }
            if t == nop { i += 1; continue }
            guard i + 1 < o.count else { break }
            let len = Int(o[i + 1])
            guard len >= 2, i + len <= o.count else { break }
            out.append(t)
            i += len
        }
        return out
    }

    /// True when an option of type `type` is present (for matches that need options).
    @inlinable
    public static func contains(_ o: UnsafeRawBufferPointer, type: UInt8) -> Bool {
        var i = 0
        while i < o.count {
            let t = o[i]
            if t == eol { return false }
            if t == nop { i += 1; continue }
            if t == type { return true }
            guard i + 1 < o.count else { return false }
            let len = Int(o[i + 1])
            guard len >= 2 else { return false }
            i += len
        }
        return false
    }
}

/// What tests compare for an IPv4 header.
public struct IPv4Summary: Equatable, Sendable {
    public var headerLength: Int
    public var tos: UInt8
    public var totalLength: Int
    public var identification: UInt16
    public var dontFragment: Bool
    public var moreFragments: Bool
    public var fragmentOffset: Int
    public var ttl: UInt8
    public var proto: UInt8
    public var checksumValid: Bool
    public var source: IPv4Address
    public var destination: IPv4Address
    public var optionTypes: [UInt8]

    public init(headerLength: Int = 20, tos: UInt8 = 0, totalLength: Int, identification: UInt16 = 0,
                dontFragment: Bool = false, moreFragments: Bool = false, fragmentOffset: Int = 0,
                ttl: UInt8 = 64, proto: UInt8, checksumValid: Bool = true,
                source: IPv4Address, destination: IPv4Address, optionTypes: [UInt8] = []) {
        self.headerLength = headerLength; self.tos = tos; self.totalLength = totalLength
        self.identification = identification; self.dontFragment = dontFragment
        self.moreFragments = moreFragments; self.fragmentOffset = fragmentOffset; self.ttl = ttl
        self.proto = proto; self.checksumValid = checksumValid; self.source = source
        self.destination = destination; self.optionTypes = optionTypes
    }
}
