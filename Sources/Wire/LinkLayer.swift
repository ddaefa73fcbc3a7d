/// Link-layer header types (tcpdump.org LINKTYPE_ values) that the parser understands.
public enum LinkType: UInt32, Sendable, CaseIterable {
    case null = 0          // BSD loopback: 4-byte address family in the capturing host's order
    case ethernet = 1
    case rawLegacy12 = 12  // raw IP on some BSDs (DLT_RAW)
    case rawLegacy14 = 14  // raw IP on OpenBSD (DLT_RAW)
    case raw = 101         // raw IPv4 or IPv6, by version nibble
    case loop = 108        // OpenBSD loopback: 4-byte address family, network order
    case linuxSLL = 113
    case ipv4 = 228
    case ipv6 = 229
    case linuxSLL2 = 276

    public var name: String {
        switch self {
        case .null: "null"
        case .ethernet: "ethernet"
        case .rawLegacy12, .rawLegacy14, .raw: "raw"
        case .loop: "loop"
        case .linuxSLL: "linux-sll"
        case .ipv4: "ipv4"
        case .ipv6: "ipv6"
        case .linuxSLL2: "linux-sll2"
        }
    }
}

/// What sits on top of the link layer.
public enum L3Kind: UInt8, Sendable, CaseIterable {
    case ipv4, ipv6, arp, other

    public var name: String {
        switch self {
        case .ipv4: "ipv4"
        case .ipv6: "ipv6"
        case .arp: "arp"
        case .other: "other"
        }
    }
}

public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let ipv6: UInt16 = 0x86DD
    public static let vlan: UInt16 = 0x8100      // 802.1Q C-tag
    public static let qinq: UInt16 = 0x88A8      // 802.1ad S-tag
    public static let qinqLegacy: UInt16 = 0x9100

    @inlinable
    public static func isVLANTag(_ t: UInt16) -> Bool { t == vlan || t == qinq || t == qinqLegacy }

    @inlinable
    public static func kind(_ t: UInt16) -> L3Kind {
        switch t {
        case ipv4: .ipv4
        case ipv6: .ipv6
        case arp: .arp
        default: .other
        }
    }
}

/// Ethernet II header view: destination, source, EtherType (bytes 12-13).
public struct EthernetView {
    public let bytes: UnsafeRawBufferPointer
    @usableFromInline static let destination = 0  // bytes 0-5
    @usableFromInline static let source = 6        // bytes 6-11
    @usableFromInline static let etherType = 12    // bytes 12-13
    public static let headerLength = 14

    /// Returns nil unless the 14-byte header is present.
    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.headerLength else { return nil }
        self.bytes = bytes
    }

    @inlinable public var etherType: UInt16 { bytes.be16(Self.etherType) }
    public var destinationMAC: [UInt8] { Array(bytes[0 ..< 6]) }
    public var sourceMAC: [UInt8] { Array(bytes[6 ..< 12]) }
}

/// One 802.1Q / 802.1ad tag: TCI (PCP 3 bits, DEI 1 bit, VID 12 bits) then the next EtherType.
public struct VLANTagView {
    public let bytes: UnsafeRawBufferPointer
    public static let length = 4

    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.length else { return nil }
        self.bytes = bytes
    }

    @inlinable public var tci: UInt16 { bytes.be16(0) }
    @inlinable public var vid: UInt16 { tci & 0x0FFF }
    @inlinable public var pcp: UInt8 { UInt8(tci >> 13) }
    @inlinable public var dei: Bool { tci & 0x1000 != 0 }
    @inlinable public var innerEtherType: UInt16 { bytes.be16(2) }
}

/// The result of decoding the link layer: where the network header starts and what it is.
public struct LinkDecode: Equatable, Sendable {
    public var l3Offset: Int
    public var kind: L3Kind
    public var etherType: UInt16
    public var vlanCount: UInt8
    public var outerVID: UInt16   // first tag's VID (0 when untagged)

    public init(l3Offset: Int, kind: L3Kind, etherType: UInt16, vlanCount: UInt8 = 0, outerVID: UInt16 = 0) {
        self.l3Offset = l3Offset
        self.kind = kind
        self.etherType = etherType
        self.vlanCount = vlanCount
        self.outerVID = outerVID
    }
}

public enum LinkLayer {
    /// Stacked tags beyond this are refused as truncated (no real network stacks 8 tags).
    public static let maxVLANTags = 8

    /// Decodes the link header of `frame`. Never traps; a short header is `.truncatedLinkHeader`.
    @inlinable
    public static func decode(_ frame: UnsafeRawBufferPointer, linkType: LinkType) -> Result<LinkDecode, DropReason> {
        let n = frame.count
        switch linkType {
        case .ethernet:
            guard n >= 14 else { return .failure(.truncatedLinkHeader) }
            var type = frame.be16(12)
            var off = 14
            var tags: UInt8 = 0
            var outer: UInt16 = 0
            while EtherType.isVLANTag(type) {
                guard n >= off + 4, tags < maxVLANTags else { return .failure(.truncatedLinkHeader) }
                if tags == 0 { outer = frame.be16(off) & 0x0FFF }
                type = frame.be16(off + 2)
                off += 4
                tags += 1
            }
            return .success(LinkDecode(l3Offset: off, kind: EtherType.kind(type), etherType: type, vlanCount: tags, outerVID: outer))
        case .linuxSLL:
            // SLL v1: packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2) = 16 bytes.
            guard n >= 16 else { return .failure(.truncatedLinkHeader) }
            let type = frame.be16(14)
            return .success(LinkDecode(l3Offset: 16, kind: EtherType.kind(type), etherType: type))
        case .linuxSLL2:
            // SLL v2: protocol(2) reserved(2) ifindex(4) ARPHRD(2) pkttype(1) addr len(1) addr(8) = 20.
            guard n >= 20 else { return .failure(.truncatedLinkHeader) }
            let type = frame.be16(0)
            return .success(LinkDecode(l3Offset: 20, kind: EtherType.kind(type), etherType: type))
        case .raw, .rawLegacy12, .rawLegacy14:
            guard n >= 1 else { return .failure(.truncatedLinkHeader) }
            switch frame[0] >> 4 {
            case 4: return .success(LinkDecode(l3Offset: 0, kind: .ipv4, etherType: EtherType.ipv4))
            case 6: return .success(LinkDecode(l3Offset: 0, kind: .ipv6, etherType: EtherType.ipv6))
            default: return .success(LinkDecode(l3Offset: 0, kind: .other, etherType: 0))
            }
        case .ipv4:
            return .success(LinkDecode(l3Offset: 0, kind: .ipv4, etherType: EtherType.ipv4))
        case .ipv6:
            return .success(LinkDecode(l3Offset: 0, kind: .ipv6, etherType: EtherType.ipv6))
        case .null, .loop:
            guard n >= 4 else { return .failure(.truncatedLinkHeader) }
            // NULL stores the family in the capturing host's byte order; accept both.
            let be = frame.be32(0)
            let family = linkType == .loop ? be : (be > 0xFFFF ? be.byteSwapped : be)
            switch family {
            case 2: return .success(LinkDecode(l3Offset: 4, kind: .ipv4, etherType: EtherType.ipv4))
            case 24, 28, 30: return .success(LinkDecode(l3Offset: 4, kind: .ipv6, etherType: EtherType.ipv6))
            default: return .success(LinkDecode(l3Offset: 4, kind: .other, etherType: 0))
            }
        }
    }
}
