import Wire

// Match and target extensions: what each holds, how iptables-save prints it. Parsing is in
// RuleParser.swift. Semantics (kernel references in comments) are applied by the engine.

/// `value/mask` as xt_mark and xt_connmark match it: `(mark & mask) == value`.
public struct MarkMask: Equatable, Sendable, CustomStringConvertible {
    public var value: UInt32
    public var mask: UInt32
    public init(value: UInt32, mask: UInt32 = 0xFFFF_FFFF) { self.value = value; self.mask = mask }
    @inlinable public func matches(_ m: UInt32) -> Bool { m & mask == value }
    public var description: String { mask == 0xFFFF_FFFF ? hex(value) : "\(hex(value))/\(hex(mask))" }
}

func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

public struct TCPMatch: Equatable, Sendable {
    public var sourcePort: Inverted<PortRange>?
    public var destinationPort: Inverted<PortRange>?
    /// `--tcp-flags mask comp`: `(flags & mask) == comp`.
    public var flags: Inverted<FlagsSpec>?
    public var option: Inverted<UInt8>?
    public init() {}
}

public struct FlagsSpec: Equatable, Sendable {
    public var mask: UInt8
    public var comparison: UInt8
    public init(mask: UInt8, comparison: UInt8) { self.mask = mask; self.comparison = comparison }
}

public struct UDPMatch: Equatable, Sendable {
    public var sourcePort: Inverted<PortRange>?
    public var destinationPort: Inverted<PortRange>?
    public init() {}
}

/// `--icmp-type`: type 255 = any; codes `codeMin...codeMax`.
public struct ICMPTypeSpec: Equatable, Sendable {
    public var type: UInt8
    public var codeMin: UInt8
    public var codeMax: UInt8
    public init(type: UInt8, codeMin: UInt8 = 0, codeMax: UInt8 = 0xFF) { self.type = type; self.codeMin = codeMin; self.codeMax = codeMax }
    @inlinable public func matches(type t: UInt8, code c: UInt8) -> Bool { type == 0xFF || (t == type && c >= codeMin && c <= codeMax) }
}

public enum MultiportDirection: String, Equatable, Sendable { case source = "--sports", destination = "--dports", either = "--ports" }

public struct MultiportMatch: Equatable, Sendable {
    public var direction: MultiportDirection
    public var ports: [PortRange]
    public var invert: Bool
    public init(direction: MultiportDirection, ports: [PortRange], invert: Bool) { self.direction = direction; self.ports = ports; self.invert = invert }
}

public struct AddressRange: Equatable, Sendable, CustomStringConvertible {
    public var lo: UInt32
    public var hi: UInt32
    public init(lo: UInt32, hi: UInt32) { self.lo = lo; self.hi = hi }
    public var description: String { "\(IPv4Address(lo))-\(IPv4Address(hi))" }
}

public struct IPRangeMatch: Equatable, Sendable {
    public var source: Inverted<AddressRange>?
    public var destination: Inverted<AddressRange>?
    public init() {}
}

/// Route types as xt_addrtype names them (bit = 1 << RTN_*).
public enum AddressType: String, CaseIterable, Sendable {
    case UNSPEC, UNICAST, LOCAL, BROADCAST, ANYCAST, MULTICAST, BLACKHOLE, UNREACHABLE, PROHIBIT, THROW, NAT, XRESOLVE
    public var bit: UInt16 { 1 << UInt16(AddressType.allCases.firstIndex(of: self)!) }
}

public struct AddrTypeMatch: Equatable, Sendable {
    /// Bit sets of `AddressType.bit`; 0 = not given.
    public var sourceTypes: UInt16 = 0, sourceInvert = false
    public var destinationTypes: UInt16 = 0, destinationInvert = false
    public var limitIfaceIn = false
    public var limitIfaceOut = false
    public init() {}
}

public enum TTLComparison: String, Equatable, Sendable { case eq = "--ttl-eq", gt = "--ttl-gt", lt = "--ttl-lt" }

public struct TTLMatch: Equatable, Sendable {
    public var comparison: TTLComparison
    public var value: UInt8
    public var invert: Bool
    public init(comparison: TTLComparison, value: UInt8, invert: Bool) { self.comparison = comparison; self.value = value; self.invert = invert }
}

public enum StatisticMode: Equatable, Sendable {
    /// Probability scaled as the kernel does: matches when `random31 < threshold`.
    case random(probability: Double, threshold: UInt32)
    /// Every `every` packets, starting count `packet` (xt_statistic keeps `every - 1`).
    case nth(every: UInt32, packet: UInt32)
}

public struct StatisticMatch: Equatable, Sendable {
    public var mode: StatisticMode
    public var invert: Bool
    public init(mode: StatisticMode, invert: Bool) { self.mode = mode; self.invert = invert }
}

public struct LimitMatch: Equatable, Sendable {
    /// Packets per `perSeconds` (as written: `3/hour` is 3 per 3600 s).
    public var count: UInt32
    public var perSeconds: UInt32
    public var unitName: String
    public var burst: UInt32
    public init(count: UInt32 = 3, perSeconds: UInt32 = 3600, unitName: String = "hour", burst: UInt32 = 5) {
        self.count = count; self.perSeconds = perSeconds; self.unitName = unitName; self.burst = burst
    }
}

public enum RecentCommand: String, Equatable, Sendable { case set = "--set", rcheck = "--rcheck", update = "--update", remove = "--remove" }

public struct RecentMatch: Equatable, Sendable {
    public var command: RecentCommand
    public var invert: Bool
    public var name: String = "DEFAULT"
    public var seconds: UInt32? = nil
    public var reap = false
    public var hitcount: UInt32? = nil
    public var rttl = false
    public var useDestination = false
    public var mask: UInt32 = 0xFFFF_FFFF
    public init(command: RecentCommand, invert: Bool) { self.command = command; self.invert = invert }
}

public enum PacketType: String, Equatable, Sendable { case unicast, broadcast, multicast }

public enum SetDirection: String, Equatable, Sendable { case src, dst }

public struct SetMatch: Equatable, Sendable {
    public var name: String
    public var directions: [SetDirection]
    public var invert: Bool
    public init(name: String, directions: [SetDirection], invert: Bool) { self.name = name; self.directions = directions; self.invert = invert }
}

/// Conntrack states as xt_conntrack/xt_state bits.
public struct CtState: OptionSet, Equatable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let invalid = CtState(rawValue: 1)
    public static let new = CtState(rawValue: 2)
    public static let established = CtState(rawValue: 4)
    public static let related = CtState(rawValue: 8)
    public static let untracked = CtState(rawValue: 16)
    public static let snat = CtState(rawValue: 32)
    public static let dnat = CtState(rawValue: 64)
    static let names: [(String, CtState)] = [("INVALID", .invalid), ("NEW", .new), ("RELATED", .related), ("ESTABLISHED", .established),
                                              ("UNTRACKED", .untracked), ("SNAT", .snat), ("DNAT", .dnat)]
    public var text: String { Self.names.filter { contains($0.1) }.map(\.0).joined(separator: ",") }
}

public struct CtStatus: OptionSet, Equatable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let expected = CtStatus(rawValue: 1)
    public static let seenReply = CtStatus(rawValue: 2)
    public static let assured = CtStatus(rawValue: 4)
    public static let confirmed = CtStatus(rawValue: 8)
    static let names: [(String, CtStatus)] = [("NONE", []), ("EXPECTED", .expected), ("SEEN_REPLY", .seenReply), ("ASSURED", .assured), ("CONFIRMED", .confirmed)]
    public var text: String { rawValue == 0 ? "NONE" : Self.names.dropFirst().filter { contains($0.1) }.map(\.0).joined(separator: ",") }
}

public struct ConntrackMatch: Equatable, Sendable {
    public var state: Inverted<CtState>?
    public var status: Inverted<CtStatus>?
    public var proto: Inverted<UInt8>?
    public var origSource: Inverted<IPv4Prefix>?
    public var origDestination: Inverted<IPv4Prefix>?
    public var replySource: Inverted<IPv4Prefix>?
    public var replyDestination: Inverted<IPv4Prefix>?
    public var origSourcePort: Inverted<PortRange>?
    public var origDestinationPort: Inverted<PortRange>?
    public var replySourcePort: Inverted<PortRange>?
    public var replyDestinationPort: Inverted<PortRange>?
    /// `--ctdir ORIGINAL|REPLY`: true = REPLY.
    public var directionReply: Bool?
    public init() {}
}

/// A match module loaded with `-m` (or implicitly by `-p tcp --dport`), in the order written.
public enum MatchExtension: Equatable, Sendable {
    case tcp(TCPMatch)
    case udp(UDPMatch)
    case icmp(Inverted<ICMPTypeSpec>?)
    case multiport(MultiportMatch)
    case iprange(IPRangeMatch)
    case addrtype(AddrTypeMatch)
    case mark(Inverted<MarkMask>)
    case comment(String)
    case length(Inverted<PortRange>)
    case ttl(TTLMatch)
    case statistic(StatisticMatch)
    case limit(LimitMatch)
    case recent(RecentMatch)
    case mac(Inverted<UInt64>)
    case pkttype(Inverted<PacketType>)
    case set(SetMatch)
    case conntrack(ConntrackMatch)
    case state(Inverted<CtState>)
    case connmark(Inverted<MarkMask>)
    /// `-m physdev --physdev-is-bridged` (and its `!`): Sluice models routers, no bridges, so no
    /// packet is bridged.
    case physdevIsBridged(invert: Bool)
    /// `-m policy --dir in|out --pol none|ipsec`: no IPsec in the model, so `none` always holds.
    case policy(directionIn: Bool, ipsec: Bool, invert: Bool)
    /// `-m nfacct --nfacct-name NAME`: counts into the named accounting object and, with no
    /// quota, always matches (xt_nfacct).
    case nfacct(String)
    /// `-m socket [--transparent] [--nowildcard] [--restore-skmark]`: needs the box's sockets.
    case socket(transparent: Bool, nowildcard: Bool, restoreSkmark: Bool)
    /// `-m owner --uid-owner/--gid-owner/--socket-exists`: needs the sending socket.
    case owner(uid: Inverted<ClosedRangeU32>?, gid: Inverted<ClosedRangeU32>?, socketExists: Bool?)

    public var moduleName: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .icmp: "icmp"
        case .multiport: "multiport"
        case .iprange: "iprange"
        case .addrtype: "addrtype"
        case .mark: "mark"
        case .comment: "comment"
        case .length: "length"
        case .ttl: "ttl"
        case .statistic: "statistic"
        case .limit: "limit"
        case .recent: "recent"
        case .mac: "mac"
        case .pkttype: "pkttype"
        case .set: "set"
        case .conntrack: "conntrack"
        case .state: "state"
        case .connmark: "connmark"
        case .physdevIsBridged: "physdev"
        case .policy: "policy"
        case .nfacct: "nfacct"
        case .socket: "socket"
        case .owner: "owner"
        }
    }

    /// Needs the box's sockets (owner, socket): a capture carries no socket, so these cannot be
    /// evaluated in replay.
    public var needsSockets: Bool {
        switch self {
        case .socket, .owner: true
        default: false
        }
    }

    /// Needs connection tracking (state, direction, connmark).
    public var needsConntrack: Bool {
        switch self {
        case .conntrack, .state, .connmark: true
        default: false
        }
    }
}

public enum RejectWith: String, CaseIterable, Equatable, Sendable {
    case netUnreachable = "icmp-net-unreachable"
    case hostUnreachable = "icmp-host-unreachable"
    case portUnreachable = "icmp-port-unreachable"
    case protoUnreachable = "icmp-proto-unreachable"
    case netProhibited = "icmp-net-prohibited"
    case hostProhibited = "icmp-host-prohibited"
    case adminProhibited = "icmp-admin-prohibited"
    case tcpReset = "tcp-reset"

    /// ICMP destination-unreachable code (RFC 792 / 1812).
    public var icmpCode: UInt8 {
        switch self {
        case .netUnreachable: 0
        case .hostUnreachable: 1
        case .protoUnreachable: 2
        case .portUnreachable: 3
        case .netProhibited: 9
        case .hostProhibited: 10
        case .adminProhibited: 13
        case .tcpReset: 0
        }
    }
}

public struct LogOptions: Equatable, Sendable {
    public var prefix: String?
    public var level: UInt8 = 4
    public var tcpSequence = false
    public var tcpOptions = false
    public var ipOptions = false
    public var uid = false
    /// NFLOG: the group; printed as NFLOG, logged like LOG.
    public var nflogGroup: UInt16? = nil
    public var nflogRange: UInt32? = nil
    public var nflogThreshold: UInt16? = nil
    public init() {}
}

/// NAT address/port range: `a.b.c.d[-a.b.c.e][:p1[-p2]]`.
public struct NATRange: Equatable, Sendable, CustomStringConvertible {
    public var minAddress: UInt32?
    public var maxAddress: UInt32?
    public var minPort: UInt16?
    public var maxPort: UInt16?
    public init(minAddress: UInt32? = nil, maxAddress: UInt32? = nil, minPort: UInt16? = nil, maxPort: UInt16? = nil) {
        self.minAddress = minAddress; self.maxAddress = maxAddress; self.minPort = minPort; self.maxPort = maxPort
    }
    public var description: String {
        var s = ""
        if let a = minAddress {
            s += IPv4Address(a).description
            if let b = maxAddress, b != a { s += "-\(IPv4Address(b))" }
        }
        if let p = minPort {
            s += ":\(p)"
            if let q = maxPort, q != p { s += "-\(q)" }
        }
        return s
    }
}

public struct NATFlags: Equatable, Sendable {
    public var random = false
    public var randomFully = false
    public var persistent = false
    public init() {}
}

public enum CopyDirection: String, Equatable, Sendable { case inbound = "--inbound", outbound = "--outbound", bidirectional = "--bidirectional" }

public enum ConnmarkOp: Equatable, Sendable {
    /// `--set-xmark value/mask`: ctmark = (ctmark & ~mask) ^ value.
    case setXMark(value: UInt32, mask: UInt32)
    /// `--save-mark --nfmask n --ctmask c`: ctmark = (ctmark & ~c) ^ (mark & n).
    case save(nfmask: UInt32, ctmask: UInt32)
    /// `--restore-mark --nfmask n --ctmask c`: mark = (mark & ~n) ^ (ctmark & c).
    case restore(nfmask: UInt32, ctmask: UInt32)
}

public enum TTLOp: Equatable, Sendable { case set(UInt8), dec(UInt8), inc(UInt8) }

public enum TCPMSSOp: Equatable, Sendable { case set(UInt16), clampToPMTU }

/// An inclusive range of 32-bit ids (`--uid-owner 1000-1999`).
public struct ClosedRangeU32: Equatable, Sendable, CustomStringConvertible {
    public var lo: UInt32
    public var hi: UInt32
    public init(_ lo: UInt32, _ hi: UInt32) { self.lo = lo; self.hi = hi }
    public var description: String { lo == hi ? "\(lo)" : "\(lo)-\(hi)" }
}

/// TPROXY's options.
public struct TProxyOptions: Equatable, Sendable {
    public var onPort: UInt16
    public var onIP: UInt32?
    public var mark: MarkMask?
    public init(onPort: UInt16, onIP: UInt32?, mark: MarkMask?) { self.onPort = onPort; self.onIP = onIP; self.mark = mark }
}
