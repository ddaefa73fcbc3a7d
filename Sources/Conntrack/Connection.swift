import Wire

/// Status bits of a connection, with the kernel's bit numbers (`enum ip_conntrack_status`) so
/// that dumps and netlink-style output can use the raw value.
public struct ConnStatus: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let expected = ConnStatus(rawValue: 1 << 0)     // RELATED to a master (helpers/ICMP)
    public static let seenReply = ConnStatus(rawValue: 1 << 1)
    public static let assured = ConnStatus(rawValue: 1 << 2)
    public static let confirmed = ConnStatus(rawValue: 1 << 3)    // its first packet was accepted
    public static let srcNAT = ConnStatus(rawValue: 1 << 4)       // reply tuple differs in destination
    public static let dstNAT = ConnStatus(rawValue: 1 << 5)       // reply tuple differs in source
    public static let seqAdjust = ConnStatus(rawValue: 1 << 6)
    public static let srcNATDone = ConnStatus(rawValue: 1 << 7)   // SNAT binding set up (nat table consulted)
    public static let dstNATDone = ConnStatus(rawValue: 1 << 8)   // DNAT binding set up
    public static let dying = ConnStatus(rawValue: 1 << 9)
    public static let fixedTimeout = ConnStatus(rawValue: 1 << 10)
    public static let natClash = ConnStatus(rawValue: 1 << 12)   // never ASSURED (kernel IPS_NAT_CLASH)
}

/// The TCP states of `nf_conntrack_proto_tcp` (`enum tcp_conntrack`), same numbering.
public enum TCPConnState: UInt8, Sendable, CaseIterable {
    case none = 0, synSent, synRecv, established, finWait, closeWait, lastAck, timeWait, close, synSent2

    /// The name `conntrack -L` prints.
    public var name: String {
        switch self {
        case .none: "NONE"
        case .synSent: "SYN_SENT"
        case .synRecv: "SYN_RECV"
        case .established: "ESTABLISHED"
        case .finWait: "FIN_WAIT"
        case .closeWait: "CLOSE_WAIT"
        case .lastAck: "LAST_ACK"
        case .timeWait: "TIME_WAIT"
        case .close: "CLOSE"
        case .synSent2: "SYN_SENT2"
        }
    }
}

/// Window-tracking data for one direction (the kernel's `ip_ct_tcp_state`), 18 bytes.
public struct TCPPeer: Equatable, Sendable {
    public var end: UInt32 = 0        // td_end: highest seq + len seen from this side
    public var maxEnd: UInt32 = 0     // td_maxend: highest right edge of the peer's window
    public var maxWin: UInt32 = 0     // td_maxwin: largest window seen (0 = nothing seen yet)
    public var maxAck: UInt32 = 0     // td_maxack: highest ack sent (valid with .maxAckSet)
    public var scale: UInt8 = 0       // td_scale: window scale shift
    public var flags: UInt8 = 0       // TCPPeer.Flag bits
    @inlinable public init() {}

    /// IP_CT_TCP_FLAG_* values.
    public enum Flag {
        public static let windowScale: UInt8 = 0x01
        public static let sackPermitted: UInt8 = 0x02
        public static let closeInit: UInt8 = 0x04
        public static let beLiberal: UInt8 = 0x08
        public static let dataUnacknowledged: UInt8 = 0x10
        public static let maxAckSet: UInt8 = 0x20
        // Used only in TCPTrack.lastFlags:
        public static let expectChallengeAck: UInt8 = 0x40
        public static let simultaneousOpen: UInt8 = 0x80
    }
}

/// Per-connection TCP tracking (the kernel's `ip_ct_tcp`), 58 bytes. For UDP the first 8 bytes
/// hold the stream timestamp instead (see `Connection.udpStreamAt`); ICMP and others leave it 0.
public struct TCPTrack: Equatable, Sendable {
    public var original = TCPPeer()   // seen[0]
    public var reply = TCPPeer()      // seen[1]
    public var state: TCPConnState = .none
    public var lastIndex: UInt8 = 0   // TCPFlagIndex of the last in-window / ignored packet
    public var lastDir: UInt8 = 0     // 0 original, 1 reply
    public var lastFlags: UInt8 = 0   // options of an ignored SYN, challenge ACK, simultaneous open
    public var lastWin: UInt16 = 0
    public var lastSeq: UInt32 = 0
    public var lastAck: UInt32 = 0
    public var lastEnd: UInt32 = 0
    public var lastWScale: UInt8 = 0
    public var retrans: UInt8 = 0     // identical ACK segments seen in a row
    @inlinable public init() {}

    @inlinable
    func peer(_ dir: Int) -> TCPPeer { dir == 0 ? original : reply }
    @inlinable
    mutating func setPeer(_ dir: Int, _ p: TCPPeer) { if dir == 0 { original = p } else { reply = p } }
}

/// One tracked connection: a plain value, 120 bytes (stride; asserted <= 128 in a test).
///
/// Layout (bytes): original 0-15, reply 16-31, deadline 32-39, spare 40-47, mark 48-51,
/// id 52-55, tcp 56-113, status 114-115, spare16 116-117, padding to 120.
/// Spare: `spare` (8 bytes) and `spare16` (2 bytes) belong to the integrator (NAT range/rule
/// index, zone, helper id...); the table never reads or writes them after insert (zeroed then).
public struct Connection: Equatable, Sendable {
    /// Tuple of the first packet. Changed only by the table.
    public internal(set) var original: FlowKey
    /// Tuple replies are expected to carry (NAT changes it: `ConnTable.setReplyTuple`).
    public internal(set) var reply: FlowKey
    /// Absolute expiry time in ns, on the caller's clock (capture time in replay). Set through
    /// the table (`update`, `setTimeout`) so the timer wheel stays right.
    public internal(set) var deadline: Int64
    /// Free for the NAT/engine integration (see the type comment).
    public var spare: UInt64 = 0
    /// ctmark (CONNMARK).
    public var mark: UInt32 = 0
    /// Insertion serial: the listing order, and "oldest" for early drop. Wraps after 2^32.
    public internal(set) var id: UInt32
    public var tcp = TCPTrack()
    public var status: ConnStatus = []
    /// Free for the integration.
    public var spare16: UInt16 = 0

    @usableFromInline
    init(original: FlowKey, reply: FlowKey, deadline: Int64, id: UInt32) {
        self.original = original; self.reply = reply; self.deadline = deadline; self.id = id
    }

    @inlinable public var proto: UInt8 { original.proto }

    /// UDP only: after this time a connection that has seen a reply is a stream (kernel
    /// `proto.udp.stream_ts`). Stored in the protocol area, which UDP does not otherwise use.
    public internal(set) var udpStreamAt: Int64 {
        get { Int64(bitPattern: UInt64(tcp.original.end) << 32 | UInt64(tcp.original.maxEnd)) }
        set {
            tcp.original.end = UInt32(truncatingIfNeeded: UInt64(bitPattern: newValue) >> 32)
            tcp.original.maxEnd = UInt32(truncatingIfNeeded: UInt64(bitPattern: newValue))
        }
    }
}

/// Timeouts in nanoseconds. `kernelDefaults` are the values of a stock Linux kernel.
public struct Timeouts: Equatable, Sendable {
    public var tcpSynSent: Int64, tcpSynRecv: Int64, tcpEstablished: Int64, tcpFinWait: Int64
    public var tcpCloseWait: Int64, tcpLastAck: Int64, tcpTimeWait: Int64, tcpClose: Int64
    public var tcpSynSent2: Int64, tcpRetrans: Int64, tcpUnacknowledged: Int64
    /// tcp_max_retrans: identical ACKs after which the retrans timeout applies.
    public var tcpMaxRetrans: UInt8
    public var udp: Int64, udpStream: Int64
    /// A replied UDP connection becomes a stream (ASSURED, udpStream timeout) once it is still
    /// active this long after its first packet (kernel: 2 s). 0 gives the old behaviour:
    /// ASSURED on the first packet after the reply.
    public var udpStreamDelay: Int64
    public var icmp: Int64, generic: Int64

    public static let second: Int64 = 1_000_000_000

    public static let kernelDefaults: Timeouts = {
        let s = second
        return Timeouts(tcpSynSent: 120 * s, tcpSynRecv: 60 * s, tcpEstablished: 432_000 * s,
                        tcpFinWait: 120 * s, tcpCloseWait: 60 * s, tcpLastAck: 30 * s,
                        tcpTimeWait: 120 * s, tcpClose: 10 * s, tcpSynSent2: 120 * s,
                        tcpRetrans: 300 * s, tcpUnacknowledged: 300 * s, tcpMaxRetrans: 3,
                        udp: 30 * s, udpStream: 120 * s, udpStreamDelay: 2 * s,
                        icmp: 30 * s, generic: 600 * s)
    }()

    public init(tcpSynSent: Int64, tcpSynRecv: Int64, tcpEstablished: Int64, tcpFinWait: Int64,
                tcpCloseWait: Int64, tcpLastAck: Int64, tcpTimeWait: Int64, tcpClose: Int64,
                tcpSynSent2: Int64, tcpRetrans: Int64, tcpUnacknowledged: Int64, tcpMaxRetrans: UInt8,
                udp: Int64, udpStream: Int64, udpStreamDelay: Int64, icmp: Int64, generic: Int64) {
        self.tcpSynSent = tcpSynSent; self.tcpSynRecv = tcpSynRecv; self.tcpEstablished = tcpEstablished
        self.tcpFinWait = tcpFinWait; self.tcpCloseWait = tcpCloseWait; self.tcpLastAck = tcpLastAck
        self.tcpTimeWait = tcpTimeWait; self.tcpClose = tcpClose; self.tcpSynSent2 = tcpSynSent2
        self.tcpRetrans = tcpRetrans; self.tcpUnacknowledged = tcpUnacknowledged
        self.tcpMaxRetrans = tcpMaxRetrans
        self.udp = udp; self.udpStream = udpStream; self.udpStreamDelay = udpStreamDelay
        self.icmp = icmp; self.generic = generic
    }

    @inlinable
    public func tcp(_ s: TCPConnState) -> Int64 {
        switch s {
        case .none, .synSent: tcpSynSent
        case .synRecv: tcpSynRecv
        case .established: tcpEstablished
        case .finWait: tcpFinWait
        case .closeWait: tcpCloseWait
        case .lastAck: tcpLastAck
        case .timeWait: tcpTimeWait
        case .close: tcpClose
        case .synSent2: tcpSynSent2
        }
    }

    /// The timeout a connection gets at insert, before its first packet is tracked.
    @inlinable
    public func initial(proto: UInt8) -> Int64 {
        switch proto {
        case 6: tcpSynSent
        case 17, 136: udp
        case 1: icmp
        default: generic
        }
    }
}
