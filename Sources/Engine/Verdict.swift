import Rules
import Wire

/// What became of a packet.
public enum VerdictKind: UInt8, Sendable, CaseIterable {
    /// Routed through FORWARD and written to an egress interface.
    case forwarded
    /// Delivered to the box (INPUT accepted).
    case local
    case dropped
    /// Dropped by REJECT; the box answered with an ICMP error or a TCP reset.
    case rejected
    /// A locally generated packet that left by an interface.
    case sent
    /// Not IPv4 (IPv6, ARP, other EtherTypes): recognised and counted; outside the IPv4 rule
    /// set, so handed on untouched (inline: the kernel keeps it; replay: not written anywhere).
    case passed

    public var name: String {
        switch self {
        case .forwarded: "forwarded"
        case .local: "local"
        case .dropped: "dropped"
        case .rejected: "rejected"
        case .sent: "sent"
        case .passed: "passed"
        }
    }
}

/// Why a packet was dropped (besides malformed input, which carries a wire `DropReason`).
public enum EngineReason: UInt8, CaseIterable, Sendable {
    case none
    case malformed
    case rule
    case policy
    case hotdrop
    case forwardingDisabled
    case noRoute
    case blackhole
    case unreachable
    case prohibit
    case ttlExceeded
    case martianSource
    case martianDestination
    /// ip_forward refuses frames not addressed to the host (link broadcast or multicast).
    case linkNotUnicast

    public var name: String {
        switch self {
        case .none: "none"
        case .malformed: "malformed"
        case .rule: "rule"
        case .policy: "policy"
        case .hotdrop: "hotdrop"
        case .forwardingDisabled: "forwarding-disabled"
        case .noRoute: "no-route"
        case .blackhole: "blackhole"
        case .unreachable: "unreachable"
        case .prohibit: "prohibit"
        case .ttlExceeded: "ttl-exceeded"
        case .martianSource: "martian-source"
        case .martianDestination: "martian-destination"
        case .linkNotUnicast: "link-not-unicast"
        }
    }
}

/// The outcome of one packet: plain value, no allocation.
public struct Decision: Sendable {
    public var kind: VerdictKind = .dropped
    public var reason: EngineReason = .none
    public var malformed: DropReason? = nil
    /// Egress interface index for forwarded/sent packets; -1 otherwise.
    public var outInterface: Int16 = -1
    /// The rule or policy that decided a drop or reject, as a trace entry.
    public var decidedBy: Int32 = 0
    /// A packet the box sent in answer (REJECT's ICMP error or TCP reset, ICMP time exceeded)
    /// is in the caller's `generated` buffer and left by this interface; -1 when none did.
    public var generatedOut: Int16 = -1
    /// The packet mark at the end (MARK targets).
    public var mark: UInt32 = 0
    /// Bytes a target added to the frame (TCPMSS inserting an option); 0 almost always.
    public var grown: Int = 0
    /// Conntrack state of the packet (nil when conntrack is off).
    public var ct: CtState? = nil

    public init() {}
}

/// Per-packet trace: rules hit, in order (entries >= 0 are global rule ids; an entry < 0 is the
/// policy of global chain `-(entry + 1)`). Caller-owned and reused (cleared, capacity kept).
/// With `detailed`, also a line per hook, table, rule tried and routing decision (for
/// `sluice trace`), and LOG lines; those allocate, so the hot path leaves them off.
public struct HitTrace: Sendable {
    /// The rules and policies that decided, in order (see above), when `recordHits`.
    public var entries: [Int32] = []
    /// Keep `entries` (replay's `rules` field, tests). The engine's own counters (`sluice ctl
    /// counters`, the rule set with counters) do not need them: `sluice run` and `sluice bench`
    /// turn this off and skip an append and a clear per packet.
    public var recordHits = true
    public var detailed = false
    public var lines: [String] = []
    public var logs: [String] = []
    /// Syslog level (--log-level) of each entry of `logs`.
    public var logLevels: [UInt8] = []
    public var logging = false
    /// Keep the NAT rewrites as text (`natText`, replay's `nat` field); allocates.
    public var recordNAT = false
    /// The NAT rewrites applied to the packet, as text ("src a:p -> b:q; " per rewrite), when
    /// `recordNAT` or `detailed`; empty otherwise. Kept here, not in `Decision`, so that the
    /// per-packet `Decision` and the traversal's context hold no reference: creating and
    /// destroying them costs no retain or release.
    public var natText = ""

    public init(detailed: Bool = false, logging: Bool = false) {
        entries.reserveCapacity(64)
        self.detailed = detailed
        self.logging = logging
        self.recordNAT = logging
    }
    @inlinable public mutating func clear() {
        if !entries.isEmpty { entries.removeAll(keepingCapacity: true) }
        if !natText.isEmpty { natText.removeAll(keepingCapacity: true) }
        if detailed { lines.removeAll(keepingCapacity: true) }
        if logging { logs.removeAll(keepingCapacity: true); logLevels.removeAll(keepingCapacity: true) }
    }
    @inlinable public mutating func rule(_ id: Int32) { if recordHits { entries.append(id) } }
    @inlinable public mutating func policy(_ chain: Int32) { if recordHits { entries.append(-(chain + 1)) } }
}

/// Packets the engine emits besides the one it was given, in caller-owned reusable buffers: the
/// box's answer (REJECT, time exceeded) and mirrored copies (COPY).
public struct Emitted: Sendable {
    /// The answer, a raw IPv4 packet; `Decision.generatedOut` says where it left.
    public var reply: [UInt8] = []
    /// COPY clones, back to back; `copies` indexes them.
    public var copyBytes: [UInt8] = []
    public var copies: [(start: Int, count: Int, out: Int16, to: UInt32)] = []

    public init() {
        reply.reserveCapacity(1600)
    }

    @inlinable public mutating func clear() {
        if !reply.isEmpty { reply.removeAll(keepingCapacity: true) }
        if !copies.isEmpty {
            copyBytes.removeAll(keepingCapacity: true)
            copies.removeAll(keepingCapacity: true)
        }
    }

    public func copy(_ i: Int) -> ArraySlice<UInt8> { copyBytes[copies[i].start ..< copies[i].start + copies[i].count] }
}
