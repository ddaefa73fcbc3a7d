import Wire

/// The conntrack state a packet gets (`--ctstate`). RELATED and UNTRACKED are decided by the
/// integrator (ICMP errors, the raw table's NOTRACK); the tracker returns the other three.
public enum CTState: UInt8, Sendable {
    case new, established, related, invalid, untracked
}

/// Why a packet is INVALID (or `.none`), for counters and traces.
public enum InvalidReason: UInt8, Sendable {
    case none, badChecksum, badTCPFlags, tcpState, outOfWindow, invalidRST, cannotCreate, tableFull, clash
}

public struct TrackResult: Equatable, Sendable {
    public var state: CTState
    /// The packet travels in the reply direction.
    public var reply: Bool
    public var reason: InvalidReason = .none
    /// The kernel "ignored" the packet (IGNORE outcome, challenge ACK): accepted, but the
    /// connection's state and timeout were not changed.
    public var ignored = false
    /// The connection was deleted after this packet (RST answering the first packet, invalid
    /// first packet of an unconfirmed connection). The index is free again.
    public var removed = false
    /// TIME_WAIT/CLOSE reopened by a new SYN: the old connection was deleted; look the packet
    /// up again and create a new one (the kernel's NF_REPEAT). `ConnTable.track` does that.
    public var reopen = false

    @inlinable
    public init(state: CTState, reply: Bool, reason: InvalidReason = .none) {
        self.state = state; self.reply = reply; self.reason = reason
    }
    @inlinable
    static func invalid(_ r: InvalidReason, reply: Bool) -> TrackResult { TrackResult(state: .invalid, reply: reply, reason: r) }
}

/// Index into the TCP transition table, the kernel's `enum tcp_bit_set`.
@usableFromInline
enum TCPFlagIndex {
    @usableFromInline static let syn: UInt8 = 0, synAck: UInt8 = 1, fin: UInt8 = 2, ack: UInt8 = 3, rst: UInt8 = 4, none: UInt8 = 5

    /// RST wins, then SYN (with or without ACK), FIN, ACK (get_conntrack_index).
    @inlinable
    static func of(_ f: UInt8) -> UInt8 {
        if f & 0x04 != 0 { return rst }
        if f & 0x02 != 0 { return f & 0x10 != 0 ? synAck : syn }
        if f & 0x01 != 0 { return fin }
        if f & 0x10 != 0 { return ack }
        return none
    }
}

@usableFromInline
enum TCPTable {
    @usableFromInline static let IV: UInt8 = 10   // invalid outcome (TCP_CONNTRACK_MAX)
    @usableFromInline static let IG: UInt8 = 11   // ignore outcome

    /// tcp_conntracks[direction][flag index][old state], re-expressed from the kernel's table
    /// (net/netfilter/nf_conntrack_proto_tcp.c). Columns: NO SS SR ES FW CW LA TW CL S2.
    @usableFromInline static let next: [UInt8] = {
        let NO: UInt8 = 0, SS: UInt8 = 1, SR: UInt8 = 2, ES: UInt8 = 3, FW: UInt8 = 4, CW: UInt8 = 5
        let LA: UInt8 = 6, TW: UInt8 = 7, CL: UInt8 = 8, S2: UInt8 = 9
        let original: [[UInt8]] = [
            /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],  // new, retransmit, reopen from TW/CL
            /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],  // only in simultaneous open
            /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],  // NO -> ES: loose pick-up
            /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        ]
        let reply: [[UInt8]] = [
            /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],  // SS -> S2: simultaneous open
            /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
            /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
            /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        ]
        _ = NO
        return (original + reply).flatMap { $0 }
    }()

    @inlinable @inline(__always)
    static func transition(dir: Int, index: UInt8, state: UInt8) -> UInt8 {
        next[dir * 60 + Int(index) * 10 + Int(state)]
    }

    /// tcp_valid_flags: with PSH, ECE and CWR masked off, the only valid combinations of
    /// FIN SYN RST ACK URG. (SYN+FIN, SYN+RST, FIN without ACK, no flags at all: invalid.)
    @inlinable
    static func validFlags(_ f: UInt8) -> Bool {
        switch f & 0x37 {
        case 0x02, 0x22, 0x12,          // SYN, SYN|URG, SYN|ACK
             0x04, 0x14,                // RST, RST|ACK
             0x11, 0x31,                // FIN|ACK, FIN|ACK|URG
             0x10, 0x30:                // ACK, ACK|URG
            return true
        default:
            return false
        }
    }
}

@inlinable @inline(__always) func seqBefore(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) < 0 }
@inlinable @inline(__always) func seqAfter(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: b &- a) < 0 }

extension ConnTable {
    // MARK: Creation rules

    /// Whether a packet with no connection may create one: TCP only a SYN (no ACK/RST/FIN), or
    /// with `tcpLoose` any valid ACK-only segment (mid-stream pick-up); ICMP only queries (echo,
    /// timestamp, info, address mask requests); UDP and others always.
    @inlinable
    public func canCreate(proto: UInt8, tcpFlags: UInt8 = 0, icmpType: UInt8 = 0) -> Bool {
        switch proto {
        case 6:
            guard TCPTable.validFlags(tcpFlags) else { return false }
            let idx = TCPFlagIndex.of(tcpFlags)
            return idx == TCPFlagIndex.syn || (tcpLoose && idx == TCPFlagIndex.ack)
        case 1:
            return icmpType == 8 || icmpType == 13 || icmpType == 15 || icmpType == 17
        default:
            return true
        }
    }

    /// The reply tuple of a connection whose first packet has tuple `k`, without NAT: ports and
    /// addresses swapped; for ICMP the identifier stays and the type becomes the answer's
    /// (echo 8 ↔ reply 0, timestamp 13 ↔ 14, info 15 ↔ 16, mask 17 ↔ 18). nil for ICMP types
    /// that have no answer (errors, unknown): they never create a connection.
    @inlinable
    public static func replyTuple(for k: FlowKey) -> FlowKey? {
        guard k.proto == 1 else { return k.reversed }
        let type = UInt8(truncatingIfNeeded: k.destinationPort >> 8)
        let inv: UInt8
        switch type {
        case 8: inv = 0
        case 0: inv = 8
        case 13: inv = 14
        case 14: inv = 13
        case 15: inv = 16
        case 16: inv = 15
        case 17: inv = 18
        case 18: inv = 17
        default: return nil
        }
        return FlowKey(source: k.destination, destination: k.source, sourcePort: k.sourcePort,
                       destinationPort: UInt16(inv) << 8 | (k.destinationPort & 0xff), proto: 1)
    }

    // MARK: Per-packet entry points

    /// Everything for one packet: find its connection (either tuple), or create one if the
    /// packet may (then it is unconfirmed: `confirm` it when the packet is accepted, `remove`
    /// it when dropped), and run the protocol tracker. `index` is -1 when there is no
    /// connection (INVALID). ICMP errors (RELATED) are the caller's business: look up their
    /// embedded tuple instead of calling this.
    public mutating func track(_ key: FlowKey, tcp seg: TCPSegment? = nil, now: Int64,
                               checksumValid: Bool = true) -> (index: Int32, result: TrackResult, created: Bool) {
        if let hit = find(key, now: now) {
            let r = update(hit.index, reply: hit.reply, tcp: seg, now: now, checksumValid: checksumValid)
            if !r.reopen { return (r.removed ? -1 : hit.index, r, false) }
        }
        guard checksumValid else { return (-1, .invalid(.badChecksum, reply: false), false) }
        if key.proto == 6, let seg, !TCPTable.validFlags(seg.flags) {
            return (-1, .invalid(.badTCPFlags, reply: false), false)
        }
        let icmpType = UInt8(truncatingIfNeeded: key.destinationPort >> 8)
        guard canCreate(proto: key.proto, tcpFlags: seg?.flags ?? 0, icmpType: icmpType),
              let reply = Self.replyTuple(for: key) else {
            return (-1, .invalid(.cannotCreate, reply: false), false)
        }
        guard let i = insert(original: key, reply: reply, now: now) else {
            return (-1, .invalid(count >= capacity ? .tableFull : .clash, reply: false), false)
        }
        let r = update(i, reply: false, tcp: seg, now: now, checksumValid: true)
        return (r.removed ? -1 : i, r, !r.removed)
    }

    /// Runs the protocol tracker for a packet of connection `i` in the given direction and sets
    /// the new deadline. `tcp` is required for TCP (a missing one is INVALID). With
    /// `checksumValid` false (checksum verification on, bad checksum) the packet is INVALID and
    /// nothing changes. An INVALID first packet of an unconfirmed connection removes it.
    public mutating func update(_ i: Int32, reply: Bool, tcp seg: TCPSegment? = nil, now: Int64,
                                checksumValid: Bool = true) -> TrackResult {
        let c = conns[Int(i)]
        // ctinfo is decided before the protocol handler runs, as in resolve_normal_ct.
        let state: CTState = reply || c.status.contains(.seenReply) ? .established : .new
        var r: TrackResult
        if !checksumValid {
            r = .invalid(.badChecksum, reply: reply)
        } else {
            switch c.proto {
            case 6:
                if let seg { r = tcpPacket(i, dir: reply ? 1 : 0, seg, now: now, state: state) }
                else { r = .invalid(.tcpState, reply: reply) }
            case 17, 136:
                r = TrackResult(state: state, reply: reply)
                if c.status.contains(.seenReply) {
                    var t = timeouts.udp
                    var stream = false
                    if now > c.udpStreamAt {
                        t = timeouts.udpStream
                        stream = !c.status.contains(.assured)
                    }
                    setDeadline(i, now &+ t)
                    if stream && !c.status.contains(.natClash) { conns[Int(i)].status.insert(.assured) }
                } else {
                    setDeadline(i, now &+ timeouts.udp)
                }
            case 1:
                r = TrackResult(state: state, reply: reply)
                setDeadline(i, now &+ timeouts.icmp)
            default:
                r = TrackResult(state: state, reply: reply)
                setDeadline(i, now &+ timeouts.generic)
            }
        }
        if r.state == .invalid {
            if !conns[Int(i)].status.contains(.confirmed) && isLive(i) && conns[Int(i)].id == c.id
                && isFirstPacket(c) {
                retire(i); r.removed = true
            }
            return r
        }
        if r.removed || r.reopen { return r }
        if reply { conns[Int(i)].status.insert(.seenReply) }
        return r
    }

    /// An unconfirmed connection whose tracker has not accepted a packet yet.
    @inlinable
    func isFirstPacket(_ c: Connection) -> Bool {
        c.proto == 6 ? c.tcp.state == .none : !c.status.contains(.seenReply)
    }

    // MARK: TCP (nf_conntrack_tcp_packet)

    @usableFromInline
    mutating func tcpPacket(_ i: Int32, dir: Int, _ seg: TCPSegment, now: Int64, state ctstate: CTState) -> TrackResult {
        let reply = dir == 1
        // tcp_error: flag combinations (the checksum was handled by the caller).
        guard TCPTable.validFlags(seg.flags) else { return .invalid(.badTCPFlags, reply: reply) }
        let index = TCPFlagIndex.of(seg.flags)
        var t = conns[Int(i)].tcp

        if t.state == .none {
            // tcp_new: only SYN, or an ACK with loose pick-up, starts tracking.
            let first = TCPTable.transition(dir: 0, index: index, state: 0)
            var o = TCPPeer()
            if first == TCPConnState.synSent.rawValue {
                o.end = seg.end; o.maxEnd = o.end
                o.maxWin = max(UInt32(seg.window), 1)
                Self.applyOptions(seg, to: &o)
                t = TCPTrack(); t.original = o
            } else if first == TCPConnState.established.rawValue && tcpLoose {
                o.end = seg.end
                o.maxWin = max(UInt32(seg.window), 1)
                o.maxEnd = o.end &+ o.maxWin
                // History lost: assume SACK, and be liberal (window scale unknown).
                o.flags = TCPPeer.Flag.sackPermitted | TCPPeer.Flag.beLiberal
                t = TCPTrack(); t.original = o
                t.reply.flags = o.flags
            } else {
                return .invalid(.cannotCreate, reply: reply)
            }
            t.lastIndex = TCPFlagIndex.none
        }

        let old = t.state.rawValue
        var new = TCPTable.transition(dir: dir, index: index, state: old)
        var oldState = old
        var skipWindow = false
        let assured = conns[Int(i)].status.contains(.assured)
        let seenReply = conns[Int(i)].status.contains(.seenReply)

        var ignore = false
        if new == TCPConnState.synSent.rawValue {
            if old >= TCPConnState.timeWait.rawValue {
                // A SYN on a closed/closing connection: reopen if it was closed properly (FIN
                // seen) or reset by this side; otherwise treat as IGNORE.
                if (t.original.flags | t.reply.flags) & TCPPeer.Flag.closeInit != 0
                    || (Int(t.lastDir) == dir && t.lastIndex == TCPFlagIndex.rst) {
                    retire(i)
                    var r = TrackResult(state: ctstate, reply: reply)
                    r.removed = true; r.reopen = true
                    return r
                }
                ignore = true
            }
        } else if new == TCPTable.IG {
            ignore = true
        }

        if ignore {
            if index == TCPFlagIndex.synAck && t.lastIndex == TCPFlagIndex.syn && Int(t.lastDir) != dir
                && seg.ack == t.lastEnd {
                // The SYN/ACK answers a SYN we ignored: endpoints are in sync, we were not.
                oldState = TCPConnState.synSent.rawValue
                new = TCPConnState.synRecv.rawValue
                let ld = Int(t.lastDir)
                var p = t.peer(ld)
                p.end = t.lastEnd; p.maxEnd = t.lastEnd
                p.maxWin = t.lastWin == 0 ? 1 : UInt32(t.lastWin)
                p.scale = t.lastWScale
                t.lastFlags &= ~TCPPeer.Flag.expectChallengeAck
                p.flags = t.lastFlags
                t.setPeer(ld, p)
                t.setPeer(dir, TCPPeer())
            } else {
                t.lastIndex = index
                t.lastDir = UInt8(dir)
                t.lastSeq = seg.seq
                t.lastEnd = seg.end
                t.lastWin = seg.window
                if index == TCPFlagIndex.syn && dir == 0 {
                    // Remember the SYN's options in case the server answers it.
                    t.lastFlags = 0; t.lastWScale = 0
                    if let ws = seg.windowScale { t.lastFlags |= TCPPeer.Flag.windowScale; t.lastWScale = ws }
                    if seg.sackPermitted { t.lastFlags |= TCPPeer.Flag.sackPermitted }
                    if old == TCPConnState.lastAck.rawValue { t.lastFlags |= TCPPeer.Flag.expectChallengeAck }
                }
                conns[Int(i)].tcp = t
                var r = TrackResult(state: ctstate, reply: reply)
                r.ignored = true
                return r
            }
        } else if new == TCPTable.IV {
            return .invalid(.tcpState, reply: reply)
        } else if new == TCPConnState.timeWait.rawValue {
            // RFC 5961 challenge ACK to a SYN in LAST_ACK: not the last ACK.
            if old == TCPConnState.lastAck.rawValue && index == TCPFlagIndex.ack && Int(t.lastDir) != dir
                && t.lastIndex == TCPFlagIndex.syn && t.lastFlags & TCPPeer.Flag.expectChallengeAck != 0 {
                t.lastFlags &= ~TCPPeer.Flag.expectChallengeAck
                conns[Int(i)].tcp = t
                var r = TrackResult(state: ctstate, reply: reply)
                r.ignored = true
                return r
            }
        } else if new == TCPConnState.synSent2.rawValue {
            t.lastFlags |= TCPPeer.Flag.simultaneousOpen
        } else if new == TCPConnState.synRecv.rawValue {
            if dir == 1 && index == TCPFlagIndex.ack && t.lastFlags & TCPPeer.Flag.simultaneousOpen != 0 {
                new = TCPConnState.established.rawValue
            }
        } else if new == TCPConnState.close.rawValue && index == TCPFlagIndex.rst {
            var toWindow = false
            let other = t.peer(1 - dir)
            if other.flags & TCPPeer.Flag.maxAckSet != 0 {
                if seqBefore(seg.seq, other.maxAck) { return .invalid(.invalidRST, reply: reply) }
                let established = old == TCPConnState.established.rawValue && assured
                if !established || seg.seq == other.maxAck {
                    toWindow = true
                } else if t.lastIndex == TCPFlagIndex.ack && Int(t.lastDir) == dir && seg.seq == t.lastEnd {
                    toWindow = true       // RST right after the data it ends (a "train")
                } else {
                    new = old             // inexact RST: keep state, allow a challenge ACK
                }
            }
            if !toWindow && ((seenReply && t.lastIndex == TCPFlagIndex.syn)
                             || (!assured && t.lastIndex == TCPFlagIndex.ack)) && seg.ack == t.lastEnd {
                skipWindow = true         // RST to a SYN/ACK we let through: no window check
            }
        }

        if !skipWindow && !inWindow(&t, dir: dir, index: index, seg) {
            conns[Int(i)].tcp = t
            return .invalid(seg.rst ? .invalidRST : .outOfWindow, reply: reply)
        }

        // In-window from here on.
        t.lastIndex = index
        t.lastDir = UInt8(dir)
        let newState = TCPConnState(rawValue: new)!
        t.state = newState
        if oldState != new && newState == .finWait {
            var p = t.peer(dir); p.flags |= TCPPeer.Flag.closeInit; t.setPeer(dir, p)
        }
        conns[Int(i)].tcp = t

        let to = timeouts
        var timeout: Int64
        let stateTimeout = to.tcp(newState)
        if t.retrans >= to.tcpMaxRetrans && stateTimeout > to.tcpRetrans {
            timeout = to.tcpRetrans
        } else if index == TCPFlagIndex.rst {
            timeout = to.tcpClose
        } else if (t.original.flags | t.reply.flags) & TCPPeer.Flag.dataUnacknowledged != 0
                    && stateTimeout > to.tcpUnacknowledged {
            timeout = to.tcpUnacknowledged
        } else if t.lastWin == 0 && stateTimeout > to.tcpRetrans {
            timeout = to.tcpRetrans
        } else {
            timeout = stateTimeout
        }

        var r = TrackResult(state: ctstate, reply: reply)
        if !seenReply {
            if seg.rst {
                // The only answer is a RST: no connection; delete at once.
                retire(i)
                r.removed = true
                return r
            }
            // Picked up mid-stream, no reply yet: no 5-day timeout.
            if newState == .established && timeout > to.tcpUnacknowledged { timeout = to.tcpUnacknowledged }
        } else if !assured && (oldState == TCPConnState.synRecv.rawValue || oldState == TCPConnState.established.rawValue)
                    && newState == .established {
            conns[Int(i)].status.insert(.assured)
        }
        setDeadline(i, now &+ timeout)
        return r
    }

    /// tcp_options applied to one side: options present reset its scale and SACK flags.
    @inlinable
    static func applyOptions(_ seg: TCPSegment, to p: inout TCPPeer) {
        guard seg.hasOptions else { return }
        p.scale = 0; p.flags = 0
        if seg.sackPermitted { p.flags |= TCPPeer.Flag.sackPermitted }
        if let ws = seg.windowScale { p.scale = ws; p.flags |= TCPPeer.Flag.windowScale }
    }

    /// tcp_in_window: sequence/ack bounds of Rooij's "Real Stateful TCP Packet Filtering"
    /// as the kernel applies them; updates the tracking data. No NAT sequence adjustment.
    @usableFromInline
    func inWindow(_ t: inout TCPTrack, dir: Int, index: UInt8, _ seg: TCPSegment) -> Bool {
        var sender = t.peer(dir)
        var receiver = t.peer(1 - dir)
        defer { t.setPeer(dir, sender); t.setPeer(1 - dir, receiver) }
        var seq = seg.seq
        var ack = seg.ack
        var sack = ack
        var win = UInt32(seg.window)
        var end = seg.end
        if receiver.flags & TCPPeer.Flag.sackPermitted != 0, let e = seg.sackEdge, seqAfter(e, sack) { sack = e }

        if sender.maxWin == 0 {
            if seg.syn {
                // SYN/ACK answering a SYN, or a reply-side SYN in simultaneous open.
                sender.end = end; sender.maxEnd = end
                sender.maxWin = win == 0 ? 1 : win
                Self.applyOptions(seg, to: &sender)
                // RFC 1323: scaling only if both sides offered it.
                if !(sender.flags & TCPPeer.Flag.windowScale != 0 && receiver.flags & TCPPeer.Flag.windowScale != 0) {
                    sender.scale = 0; receiver.scale = 0
                }
                if !seg.hasAck { return true }   // simultaneous open
            } else {
                // Mid-connection: take what the packet says.
                sender.end = end
                let swin = win << UInt32(sender.scale)
                sender.maxWin = swin == 0 ? 1 : swin
                sender.maxEnd = end &+ sender.maxWin
                if receiver.maxWin == 0 {
                    receiver.end = sack; receiver.maxEnd = sack
                } else if sack == receiver.end &+ 1 {
                    receiver.end &+= 1            // answer to a keepalive
                }
            }
        } else if ((t.state == .synSent && dir == 0) || (t.state == .synRecv && dir == 1)) && seqAfter(end, sender.end) {
            // Reinitialised (RFC 793: new SYN with higher sequence numbers).
            sender.end = end; sender.maxEnd = end
            sender.maxWin = win == 0 ? 1 : win
            Self.applyOptions(seg, to: &sender)
        }

        if !seg.hasAck {
            ack = receiver.end; sack = ack
        } else if seg.rst && ack == 0 {
            ack = receiver.end; sack = ack    // broken stacks: RST|ACK with ack 0
        }
        if seg.rst && seq == 0 && t.state == .synSent {
            seq = sender.end; end = sender.end   // RST answering a SYN
        }

        let inRecvWin = receiver.maxWin == 0 || seqAfter(end, sender.end &- receiver.maxWin &- 1)
        let maxAckWindow = max(sender.maxWin, 66000)
        if seqBefore(seq, sender.maxEnd &+ 1) && inRecvWin && seqBefore(sack, receiver.end &+ 1)
            && seqAfter(sack, receiver.end &- maxAckWindow &- 1) {
            if !seg.syn { win <<= UInt32(sender.scale) }
            let swin = win &+ (sack &- ack)
            if sender.maxWin < swin { sender.maxWin = swin }
            if seqAfter(end, sender.end) {
                sender.end = end
                sender.flags |= TCPPeer.Flag.dataUnacknowledged
            }
            if seg.hasAck {
                if sender.flags & TCPPeer.Flag.maxAckSet == 0 {
                    sender.maxAck = ack; sender.flags |= TCPPeer.Flag.maxAckSet
                } else if seqAfter(ack, sender.maxAck) {
                    sender.maxAck = ack
                }
            }
            if receiver.maxWin != 0 && seqAfter(end, sender.maxEnd) {
                receiver.maxWin &+= end &- sender.maxEnd
            }
            if seqAfter(sack &+ win, receiver.maxEnd &- 1) {
                receiver.maxEnd = sack &+ win
                if win == 0 { receiver.maxEnd &+= 1 }
            }
            if ack == receiver.end { receiver.flags &= ~TCPPeer.Flag.dataUnacknowledged }
            if index == TCPFlagIndex.ack {
                if Int(t.lastDir) == dir && t.lastSeq == seq && t.lastAck == ack && t.lastEnd == end
                    && t.lastWin == seg.window {
                    t.retrans &+= t.retrans == 255 ? 0 : 1
                } else {
                    t.lastDir = UInt8(dir); t.lastSeq = seq; t.lastAck = ack; t.lastEnd = end
                    t.lastWin = seg.window; t.retrans = 0
                }
            }
            return true
        }
        return sender.flags & TCPPeer.Flag.beLiberal != 0 || tcpBeLiberal
    }
}
