import Classifier
import Conntrack
import NetModel
import Rules
import Wire

/// The connection a packet belongs to, as conntrack decided at PREROUTING/OUTPUT.
struct CTInfo {
    /// Connection index, -1 when none (INVALID, UNTRACKED).
    var index: Int32 = -1
    /// xt_conntrack state bit of this packet (INVALID, NEW, ESTABLISHED, RELATED, UNTRACKED).
    var state: CtState = []
    /// The packet travels in the reply direction.
    var reply = false
    /// This packet created the connection (unconfirmed until accepted).
    var created = false
    /// An ICMP error about the connection (RELATED).
    var related = false
    var looked = false
}

extension Engine {
    /// nf_conntrack_in: find or create the packet's connection, run the protocol tracker, and
    /// decide its state. ICMP errors are RELATED to the connection their quote belongs to.
    mutating func conntrackIn(_ f: PacketFields, _ p: ParsedPacket, _ ctx: inout PacketContext, verifyChecksum: Bool, trace: inout HitTrace) {
        guard tracking, !ctx.ct.looked else { return }
        ctx.ct.looked = true
        if ctx.untracked { ctx.ct.state = .untracked; return }
        let now = ctx.now
        _ = ct.expire(now: now, budget: 8)
        // Later fragments: the kernel reassembles before conntrack; Sluice tracks fragments by
        // the first one's verdict (same datagram id), see `fragmentMemory`.
        if p.isLaterFragment || p.l4Truncated {
            if let m = fragments.find(p), ct.isLive(m.index) {
                ctx.ct.index = m.index; ctx.ct.reply = m.reply; ctx.ct.state = m.state
            } else {
                ctx.ct.state = .invalid
            }
            return
        }
        if p.proto == IPProtocol.icmp && p.hasQuote {
            // icmp_error_message: the quote, inverted, names the connection.
            let inner = p.quote
            guard let key = inner.proto == IPProtocol.icmp ? ConnTable.replyTuple(for: inner) : inner.reversed,
                  let hit = ct.find(key, now: now) else {
                ctx.ct.state = .invalid
                if trace.detailed { trace.lines.append("  conntrack: ICMP error about no known connection: INVALID") }
                return
            }
            ctx.ct.index = hit.index; ctx.ct.reply = hit.reply; ctx.ct.state = .related; ctx.ct.related = true
            if trace.detailed { trace.lines.append("  conntrack: RELATED to \(describeConn(hit.index))") }
            return
        }
        var seg: TCPSegment? = nil
        if p.proto == IPProtocol.tcp {
            guard p.hasL4, ctx.l4 + 20 <= ctx.capturedEnd else { ctx.ct.state = .invalid; return }
            let tcpBytes = UnsafeRawBufferPointer(rebasing: ctx.frame[ctx.l4 ..< ctx.capturedEnd])
            guard let v = TCPView(tcpBytes) else { ctx.ct.state = .invalid; return }
            seg = TCPSegment(v, payloadLength: Int(p.ipTotalLength) - Int(p.ipHeaderLength) - v.headerLength)
        }
        let valid = !verifyChecksum || l4ChecksumValid(p, ctx)
        let r = ct.track(f.flowKey(p), tcp: seg, now: now, checksumValid: valid)
        ctx.ct.index = r.index
        ctx.ct.reply = r.result.reply
        ctx.ct.created = r.created
        switch r.result.state {
        case .new: ctx.ct.state = .new
        case .established: ctx.ct.state = .established
        case .related: ctx.ct.state = .related
        case .invalid: ctx.ct.state = .invalid
        case .untracked: ctx.ct.state = .untracked
        }
        if p.moreFragments && r.index >= 0 { fragments.remember(p, index: r.index, reply: ctx.ct.reply, state: ctx.ct.state) }
        if trace.detailed {
            trace.lines.append(r.index >= 0 ? "  conntrack: \(ctx.ct.state.text) \(ctx.ct.reply ? "reply" : "original") \(describeConn(r.index))"
                                             : "  conntrack: INVALID (\(r.result.reason))")
        }
    }

    /// nf_conntrack_confirm: the packet was accepted; a connection it created becomes real.
    mutating func conntrackConfirm(_ ctx: PacketContext) {
        guard ctx.ct.created, ctx.ct.index >= 0 else { return }
        ct.confirm(ctx.ct.index)
    }

    /// The packet was dropped: a connection it created leaves no trace.
    mutating func conntrackAbort(_ ctx: PacketContext) {
        guard ctx.ct.created, ctx.ct.index >= 0, tracking else { return }
        ct.remove(ctx.ct.index)
    }

    func l4ChecksumValid(_ p: ParsedPacket, _ ctx: PacketContext) -> Bool {
        guard p.hasL4, !p.captureTruncated, !p.isFragment else { return true }
        let seg = UnsafeRawBufferPointer(rebasing: ctx.frame[ctx.l4 ..< ctx.capturedEnd])
        switch p.proto {
        case IPProtocol.tcp: return TCPView(seg)?.checksumValid(source: p.source, destination: p.destination) ?? false
        case IPProtocol.udp: return UDPView(seg)?.checksumValid(source: p.source, destination: p.destination) ?? false
        case IPProtocol.icmp: return ICMPView(seg)?.checksumValid ?? false
        default: return true
        }
    }

    func describeConn(_ i: Int32) -> String {
        guard tracking, i >= 0 else { return "-" }
        let c = ct[i]
        return "\(c.original) / \(c.reply)"
    }

    // MARK: - NAT

    /// The nat table's place at a hook: for a NEW connection the nat chain decides the binding
    /// (DNAT at PREROUTING/OUTPUT, SNAT at POSTROUTING/INPUT; no NAT target = identity); then
    /// the connection's binding is applied to the packet, in either direction.
    mutating func natStep(table ti: Int, chain c: Int32, hook: Hook, _ f: inout PacketFields, _ ctx: inout PacketContext,
                          trace: inout HitTrace, d: inout Decision, emitted: inout Emitted) -> Bool {
        guard tracking, ctx.ct.index >= 0 else { return true }
        let manip: NATManip = hook == .prerouting || hook == .output ? .destination : .source
        let conn = ct[ctx.ct.index]
        let decided = conn.status.contains(manip == .destination ? .dstNATDone : .srcNATDone)
        if !decided && !ctx.ct.reply && !conn.status.contains(.confirmed) && !ctx.ct.related {
            if trace.detailed { trace.lines.append("  \(hook.chainName) nat (new connection)") }
            ctx.natHook = hook
            if !runChain(table: ti, builtin: c, hook: hook, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return false }
            var s = ct[ctx.ct.index]
            s.status.insert(manip == .destination ? .dstNATDone : .srcNATDone)
            ct[ctx.ct.index] = s
        }
        applyBinding(manip, &f, &ctx, trace: &trace)
        return true
    }

    /// nf_nat_packet: rewrites the packet as its connection's tuples say. The packet should look
    /// like the other direction's tuple inverted: a source manip takes that tuple's source, a
    /// destination manip its destination (the ICMP query id rides along as the "port").
    mutating func applyBinding(_ manip: NATManip, _ f: inout PacketFields, _ ctx: inout PacketContext, trace: inout HitTrace) {
        let conn = ct[ctx.ct.index]
        let reply = ctx.ct.reply
        let applies: Bool
        switch (manip, reply) {
        case (.source, false), (.destination, true): applies = conn.status.contains(.srcNAT)
        case (.destination, false), (.source, true): applies = conn.status.contains(.dstNAT)
        }
        guard applies else { return }
        let other = reply ? conn.original : conn.reply
        let isICMP = f.proto == IPProtocol.icmp
        // The other direction's tuple, inverted.
        let addr = manip == .source ? other.destination : other.source
        let port = isICMP ? other.sourcePort : (manip == .source ? other.destinationPort : other.sourcePort)
        if ctx.ct.related {
            // An ICMP error: the outer header's address, and the quoted datagram put back into the
            // form it had on this side of the box (nf_nat_icmp_reply_translation).
            NATRewrite.apply(ctx.frame, l3: ctx.l3, l4: ctx.l4, capturedEnd: ctx.capturedEnd, proto: IPProtocol.icmp, l4Present: true,
                             manip: manip, address: addr, port: 0)
            if !ctx.innerRewritten {
                let inner = reply ? conn.original : conn.reply
                NATRewrite.applyToQuote(ctx.frame, l4: ctx.l4, capturedEnd: ctx.capturedEnd, manip: .source, address: inner.source,
                                        port: inner.sourcePort)
                NATRewrite.applyToQuote(ctx.frame, l4: ctx.l4, capturedEnd: ctx.capturedEnd, manip: .destination, address: inner.destination,
                                        port: inner.proto == IPProtocol.icmp ? inner.sourcePort : inner.destinationPort)
                ctx.innerRewritten = true
            }
        } else {
            NATRewrite.apply(ctx.frame, l3: ctx.l3, l4: ctx.l4, capturedEnd: ctx.capturedEnd, proto: f.proto,
                             l4Present: f.hasL4 && !f.laterFragment, manip: manip, address: addr, port: port)
        }
        let showPort = f.hasL4 && !ctx.ct.related
        if manip == .source {
            if trace.detailed { trace.lines.append("  nat: source -> \(IPv4Address(addr)):\(port)") }
            if ctx.recordNAT { trace.natText += "src \(IPv4Address(f.source))\(showPort ? ":\(f.sourcePort)" : "") -> \(IPv4Address(addr))\(showPort ? ":\(port)" : ""); " }
            f.source = addr
            if showPort { f.sourcePort = port }
        } else {
            if trace.detailed { trace.lines.append("  nat: destination -> \(IPv4Address(addr)):\(port)") }
            // ICMP queries: the "port" is the identifier (the parse keeps the sequence number in
            // destinationPort), so print the id on both sides.
            let oldPort = isICMP ? f.sourcePort : f.destinationPort
            if ctx.recordNAT { trace.natText += "dst \(IPv4Address(f.destination))\(showPort ? ":\(oldPort)" : "") -> \(IPv4Address(addr))\(showPort ? ":\(port)" : ""); " }
            f.destination = addr
            if showPort && !isICMP { f.destinationPort = port }
            if showPort && isICMP { f.sourcePort = port }  // the echo reply's id back to the original
        }
        ctx.natApplied = true
    }

    /// A NAT target in the nat chain of a NEW connection: sets the reply tuple (the binding).
    mutating func bind(_ a: NATAction, _ f: PacketFields, _ ctx: inout PacketContext, trace: inout HitTrace) {
        guard tracking, ctx.ct.index >= 0 else { return }
        let i = ctx.ct.index
        let conn = ct[i]
        let o = conn.original
        var r = conn.reply
        let now = ctx.now
        let isICMP = o.proto == IPProtocol.icmp
        let hasPorts = o.proto == IPProtocol.tcp || o.proto == IPProtocol.udp
        switch a {
        case .dnat(let ranges, let flags), .redirect(let ranges, let flags):
            var addr = o.destination
            var range: NATRange = ranges.first ?? NATRange()
            if case .redirect = a {
                // REDIRECT: the address of the incoming interface (127.0.0.1 for local packets).
                if f.inInterface >= 0, let m = modelID(f.inInterface), let a0 = network.primaryAddress(of: m) { addr = a0 } else { addr = 0x7F00_0001 }
            } else if ranges.count > 1 {
                // Several ranges: spread connections by source (deterministic).
                range = ranges[Int(spread(o.source, flags, salt: 1) % UInt32(ranges.count))]
            }
            if case .dnat = a, let lo = range.minAddress, let hi = range.maxAddress {
                addr = lo &+ spread(o.source ^ (flags.persistent ? 0 : o.destination), flags, salt: 2) % (hi &- lo &+ 1)
            }
            var port = o.destinationPort
            if hasPorts, let lo = range.minPort, let hi = range.maxPort {
                port = lo &+ UInt16(spread(o.source ^ UInt32(o.sourcePort), flags, salt: 3) % UInt32(hi &- lo &+ 1))
            }
            r.source = addr
            if hasPorts { r.sourcePort = port }
        case .snat(let ranges, let flags), .masquerade(let ranges, let flags):
            var addr = o.source
            var range: NATRange = ranges.first ?? NATRange()
            if case .masquerade = a {
                guard let m = modelID(f.outInterface), let src = network.sourceAddress(for: m, gateway: ctx.nextHop) else {
                    if trace.detailed { trace.lines.append("  nat: MASQUERADE: no address on the egress interface") }
                    return
                }
                addr = src
            } else {
                if ranges.count > 1 { range = ranges[Int(spread(o.source, flags, salt: 4) % UInt32(ranges.count))] }
                if let lo = range.minAddress, let hi = range.maxAddress {
                    addr = lo &+ spread(flags.persistent ? o.source : o.source ^ o.destination, flags, salt: 5) % (hi &- lo &+ 1)
                }
            }
            r.destination = addr
            if hasPorts || isICMP {
                let original = isICMP ? o.sourcePort : o.sourcePort
                let portRange: ClosedRange<UInt16>
                if let lo = range.minPort, let hi = range.maxPort { portRange = lo ... hi } else if isICMP { portRange = 0 ... 65535 } else { portRange = PortChooser.defaultRange(for: original) }
                let random = flags.random || flags.randomFully
                let startPort = random ? UInt16(truncatingIfNeeded: state.random.next()) : original
                var candidate = r
                let table = ct
                let chosen = PortChooser.choose(original: startPort, range: portRange) { port in
                    if isICMP { candidate.sourcePort = port } else { candidate.destinationPort = port }
                    return !table.isTaken(candidate, now: now) || (port == original && !random && candidate == conn.reply)
                }
                guard let chosen else {
                    if trace.detailed { trace.lines.append("  nat: no free port in \(portRange)") }
                    return
                }
                if isICMP { r.sourcePort = chosen } else { r.destinationPort = chosen }
            }
        case .netmap(let prefix):
            let mask = prefix.mask
            if ctx.natHook == .prerouting || ctx.natHook == .output {
                r.source = (o.destination & ~mask) | (prefix.network & mask)
            } else {
                r.destination = (o.source & ~mask) | (prefix.network & mask)
            }
        }
        if !ct.setReplyTuple(i, r, now: now) {
            if trace.detailed { trace.lines.append("  nat: reply tuple \(r) already in use: binding not set") }
            return
        }
        if trace.detailed { trace.lines.append("  nat: binding \(o) / reply \(r)") }
    }

    /// A deterministic spread of connections over a range (the kernel hashes the tuple with a
    /// random key; `--random` draws from the engine's seeded generator).
    func spread(_ x: UInt32, _ flags: NATFlags, salt: UInt32) -> UInt32 {
        var h = x &* 0x9E37_79B1 ^ salt &* 0x85EB_CA6B
        h ^= h >> 15; h = h &* 0x2C1B_3C6D; h ^= h >> 12
        return h
    }

    /// `conntrack -L` lines for the live connections, oldest first, with the remaining timeout
    /// at `now`.
    public func conntrackListing(now: Int64) -> String {
        guard tracking else { return "" }
        var out = ""
        for i in ct.liveIndices(now: now) {
            let c = ct[i]
            let proto = c.original.proto
            let name: String
            switch proto {
            case IPProtocol.tcp: name = "tcp"
            case IPProtocol.udp: name = "udp"
            case IPProtocol.icmp: name = "icmp"
            default: name = "unknown"
            }
            var s = name + String(repeating: " ", count: max(1, 9 - name.count)) + "\(proto) \(max(0, (c.deadline - now) / 1_000_000_000)) "
            if proto == IPProtocol.tcp { s += c.tcp.state.name.uppercased() + " " }
            func tuple(_ k: FlowKey) -> String {
                var t = "src=\(IPv4Address(k.source)) dst=\(IPv4Address(k.destination)) "
                if proto == IPProtocol.icmp {
                    t += "type=\(k.destinationPort >> 8) code=\(k.destinationPort & 0xFF) id=\(k.sourcePort) "
                } else if proto == IPProtocol.tcp || proto == IPProtocol.udp {
                    t += "sport=\(k.sourcePort) dport=\(k.destinationPort) "
                }
                return t
            }
            s += tuple(c.original)
            if !c.status.contains(.seenReply) { s += "[UNREPLIED] " }
            s += tuple(c.reply)
            if c.status.contains(.assured) { s += "[ASSURED] " }
            s += "mark=\(c.mark) use=1\n"
            out += s
        }
        return out
    }
}

/// NAT targets, compiled.
enum NATAction: Sendable {
    case dnat([NATRange], NATFlags)
    case snat([NATRange], NATFlags)
    case masquerade([NATRange], NATFlags)
    case redirect([NATRange], NATFlags)
    case netmap(IPv4Prefix)
}

/// What conntrack decided for the first fragment of a datagram, so that later fragments (no
/// ports) follow it; the kernel reassembles instead. A small ring, keyed by the datagram.
struct FragmentMemory: Sendable {
    struct Entry: Sendable { var source: UInt32; var destination: UInt32; var id: UInt16; var proto: UInt8; var index: Int32; var reply: Bool; var state: CtState }
    var entries: [Entry] = []
    var next = 0
    static let capacity = 64

    func find(_ p: ParsedPacket) -> Entry? {
        entries.first { $0.source == p.source && $0.destination == p.destination && $0.id == p.identification && $0.proto == p.proto }
    }

    mutating func remember(_ p: ParsedPacket, index: Int32, reply: Bool, state: CtState) {
        let e = Entry(source: p.source, destination: p.destination, id: p.identification, proto: p.proto, index: index, reply: reply, state: state)
        if entries.count < Self.capacity { entries.append(e) } else { entries[next] = e; next = (next + 1) % Self.capacity }
    }
}

extension PacketFields {
    /// The packet's tuple as conntrack keys it (current addresses and ports).
    func flowKey(_ p: ParsedPacket) -> FlowKey {
        if proto == IPProtocol.icmp {
            return FlowKey(source: source, destination: destination, sourcePort: hasL4 ? sourcePort : 0,
                           destinationPort: UInt16(icmpType) << 8 | UInt16(icmpCode), proto: proto)
        }
        return FlowKey(source: source, destination: destination, sourcePort: hasL4 ? sourcePort : 0,
                       destinationPort: hasL4 ? destinationPort : 0, proto: proto)
    }
}
