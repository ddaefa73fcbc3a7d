/// Why the wire layer refused a frame. Every case has a stable name (used in verdicts.jsonl
/// and counters) and a counter slot (`rawValue`).
public enum DropReason: UInt8, CaseIterable, Sendable {
    case truncatedLinkHeader
    case unsupportedLinkType
    case truncatedIPv4Header
    case badIPVersion
    case badIHL
    case badIPTotalLength
    case ipTotalLengthBeyondCapture
    case badIPOptions
    case truncatedTCPHeader
    case badTCPDataOffset
    case tcpDataOffsetBeyondPacket
    case truncatedUDPHeader
    case badUDPLength
    case truncatedICMPHeader
    case icmpErrorShortQuote
    case icmpErrorBadInnerHeader

    /// Stable, kebab-case name.
    public var name: String {
        switch self {
        case .truncatedLinkHeader: "truncated-link-header"
        case .unsupportedLinkType: "unsupported-link-type"
        case .truncatedIPv4Header: "truncated-ipv4-header"
        case .badIPVersion: "bad-ip-version"
        case .badIHL: "bad-ihl"
        case .badIPTotalLength: "bad-ip-total-length"
        case .ipTotalLengthBeyondCapture: "ip-total-length-beyond-capture"
        case .badIPOptions: "bad-ip-options"
        case .truncatedTCPHeader: "truncated-tcp-header"
        case .badTCPDataOffset: "bad-tcp-data-offset"
        case .tcpDataOffsetBeyondPacket: "tcp-data-offset-beyond-packet"
        case .truncatedUDPHeader: "truncated-udp-header"
        case .badUDPLength: "bad-udp-length"
        case .truncatedICMPHeader: "truncated-icmp-header"
        case .icmpErrorShortQuote: "icmp-error-short-quote"
        case .icmpErrorBadInnerHeader: "icmp-error-bad-inner-header"
        }
    }
}

/// One counter per drop reason; a plain value, bumped without allocation.
public struct DropCounters: Sendable, Equatable {
    public var counts: [UInt64]

    public init() { counts = Array(repeating: 0, count: DropReason.allCases.count) }

    @inlinable
    public subscript(reason: DropReason) -> UInt64 {
        get { counts[Int(reason.rawValue)] }
        set { counts[Int(reason.rawValue)] = newValue }
    }

    public var total: UInt64 { counts.reduce(0, &+) }

    public static func += (a: inout DropCounters, b: DropCounters) {
        for i in a.counts.indices { a.counts[i] &+= b.counts[i] }
    }
}
extension DropReason: Error {}
