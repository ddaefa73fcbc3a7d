/// What the parser extracts from one frame: offsets into the frame plus the header fields that
/// hooks and matches read. A plain value, owned and reused by the caller (one per batch slot);
/// filling it allocates nothing.
public struct ParsedPacket: Sendable {
    /// Outcome of the parse.
    public var kind: L3Kind = .other
    public var drop: DropReason? = nil

    // Link layer.
    public var etherType: UInt16 = 0
    public var vlanCount: UInt8 = 0
    public var outerVID: UInt16 = 0
    /// Offset of the IPv4 header in the frame.
    public var l3Offset: Int32 = 0

    // IPv4.
    public var ipHeaderLength: UInt8 = 0
    public var ipTotalLength: UInt16 = 0
    public var tos: UInt8 = 0
    public var ttl: UInt8 = 0
    public var proto: UInt8 = 0
    public var ipChecksumValid: Bool = true
    public var hasIPOptions: Bool = false
    public var identification: UInt16 = 0
    /// Fragment offset in bytes; `moreFragments`: the MF flag.
    public var fragmentOffset: UInt16 = 0
    public var moreFragments: Bool = false
    public var dontFragment: Bool = false
    public var source: UInt32 = 0
    public var destination: UInt32 = 0
    /// The capture cut this packet short (snaplen): `ipCapturedLength < ipTotalLength`. The
    /// headers present are parsed; what is missing is not an error of the packet.
    public var captureTruncated: Bool = false
    /// Bytes of the IPv4 packet present in the frame (== ipTotalLength unless truncated).
    public var ipCapturedLength: UInt16 = 0

    // L4 (valid when `hasL4`): present for unfragmented packets and first fragments that carry
    // the L4 header's first bytes; never for later fragments.
    public var hasL4: Bool = false
    /// A first fragment too short to hold the L4 header (the kernel's "tinygram").
    public var l4Truncated: Bool = false
    public var l4Offset: Int32 = 0
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    public var tcpFlags: TCPFlags = []
    public var icmpType: UInt8 = 0
    public var icmpCode: UInt8 = 0
    /// ICMP error: the quoted datagram's tuple (as sent, i.e. from the original sender's view).
    public var hasQuote: Bool = false
    public var quote: FlowKey = FlowKey(source: 0, destination: 0, sourcePort: 0, destinationPort: 0, proto: 0)

    @inlinable public init() {}

    /// True for any fragment, first or later.
    @inlinable public var isFragment: Bool { moreFragments || fragmentOffset != 0 }
    /// True for fragments after the first (no L4 header).
    @inlinable public var isLaterFragment: Bool { fragmentOffset != 0 }

    /// The connection tuple of this packet (zero ports when there is no L4 header).
    @inlinable
    public var flowKey: FlowKey {
        switch proto {
        case IPProtocol.icmp:
            return FlowKey(source: source, destination: destination, sourcePort: hasL4 ? sourcePort : 0,
                           destinationPort: UInt16(icmpType) << 8 | UInt16(icmpCode), proto: proto)
        default:
            return FlowKey(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort, proto: proto)
        }
    }
}

public enum PacketParser {
    /// Parses `frame` (the captured bytes) as `linkType` into `p`, resetting it first.
    /// Returns false when the frame is malformed; `p.drop` then says why. A non-IPv4 frame
    /// (IPv6, ARP, other EtherTypes) returns true with `p.kind` telling what it is: it is
    /// recognised and passed through, not dropped.
    ///
    /// `wireLength`: the frame's length on the wire when a capture kept fewer bytes (pcap's
    /// caplen < len). Then an IPv4 total length up to what the wire carried is not an error;
    /// the packet is marked `captureTruncated` and parsed as far as its bytes go.
    @inlinable
    public static func parse(_ frame: UnsafeRawBufferPointer, linkType: LinkType, wireLength: Int? = nil,
                             into p: inout ParsedPacket) -> Bool {
        p = ParsedPacket()
        let link: LinkDecode
        switch LinkLayer.decode(frame, linkType: linkType) {
        case .success(let l): link = l
        case .failure(let r): p.drop = r; return false
        }
        p.kind = link.kind
        p.etherType = link.etherType
        p.vlanCount = link.vlanCount
        p.outerVID = link.outerVID
        p.l3Offset = Int32(link.l3Offset)
        guard link.kind == .ipv4 else { return true }
        let missing = max(0, (wireLength ?? frame.count) - frame.count)
        return parseIPv4(frame.slice(link.l3Offset, frame.count - link.l3Offset), l3Offset: link.l3Offset, missingBytes: missing, into: &p)
    }

    /// Parses an IPv4 packet that starts at offset 0 of `bytes` (NFQUEUE hands these).
    @inlinable
    public static func parseIPv4(_ bytes: UnsafeRawBufferPointer, l3Offset: Int = 0, missingBytes: Int = 0,
                                 into p: inout ParsedPacket) -> Bool {
        p.kind = .ipv4
        let ip: IPv4View
        switch IPv4View.check(bytes, missingBytes: missingBytes) {
        case .success(let v): ip = v
        case .failure(let r): p.drop = r; return false
        }
        p.captureTruncated = ip.bytes.count < ip.totalLength
        p.ipCapturedLength = UInt16(ip.bytes.count)
        let hlen = ip.headerLength
        p.ipHeaderLength = UInt8(hlen)
        p.ipTotalLength = UInt16(ip.totalLength)
        p.tos = ip.tos
        p.ttl = ip.ttl
        p.proto = ip.proto
        p.identification = ip.identification
        p.fragmentOffset = UInt16(ip.fragmentOffset)
        p.moreFragments = ip.moreFragments
        p.dontFragment = ip.dontFragment
        p.source = ip.source
        p.destination = ip.destination
        p.ipChecksumValid = ip.checksumValid
        if hlen > IPv4View.minimumHeaderLength {
            p.hasIPOptions = true
            guard ip.optionsWellFormed else { p.drop = .badIPOptions; return false }
        }
        guard p.fragmentOffset == 0 else { return true }  // later fragment: no L4 header

        let l4 = ip.payload
        // A first fragment, or a capture cut short, may hold only part of the L4 header.
        let fragmented = p.moreFragments || p.captureTruncated
        p.l4Offset = Int32(l3Offset + hlen)
        switch p.proto {
        case IPProtocol.tcp:
            switch TCPView.check(l4, fragmented: fragmented) {
            case .success(let t):
                p.hasL4 = true
                p.sourcePort = t.sourcePort
                p.destinationPort = t.destinationPort
                p.tcpFlags = t.flags
            case .failure(let r):
                if fragmented && r == .truncatedTCPHeader { p.l4Truncated = p.moreFragments; return true }
                p.drop = r; return false
            }
        case IPProtocol.udp:
            switch UDPView.check(l4, fragmented: fragmented) {
            case .success(let u):
                p.hasL4 = true
                p.sourcePort = u.sourcePort
                p.destinationPort = u.destinationPort
            case .failure(let r):
                if fragmented && r == .truncatedUDPHeader { p.l4Truncated = p.moreFragments; return true }
                p.drop = r; return false
            }
        case IPProtocol.icmp:
            switch ICMPView.check(l4, fragmented: fragmented) {
            case .success(let c):
                p.hasL4 = true
                p.icmpType = c.type
                p.icmpCode = c.code
                if ICMPType.isQuery(c.type) {
                    p.sourcePort = c.identifier
                    p.destinationPort = c.sequence
                }
                if let q = c.quote {
                    p.hasQuote = true
                    p.quote = FlowKey(source: q.source, destination: q.destination,
                                      sourcePort: q.sourcePort, destinationPort: q.destinationPort, proto: q.proto)
                }
            case .failure(let r):
                if fragmented && r == .truncatedICMPHeader { p.l4Truncated = p.moreFragments; return true }
                p.drop = r; return false
            }
        default:
            break  // other protocols: L3 only
        }
        return true
    }
}
