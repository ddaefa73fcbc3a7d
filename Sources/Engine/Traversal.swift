import Classifier
import Conntrack
import NetModel
import Rules
import Wire

extension Engine {
    /// Runs every table's built-in chain at `hook`, in priority order. Returns true when the
    /// packet goes on; false with `d` filled (dropped, rejected, hotdrop).
    @inline(__always)
    /// `p`: the packet's parse, for conntrack (passed beside `ctx`, not kept in it: a copy in the
    /// context was 288 bytes copied per packet, and once more for each conntrack lookup).
    mutating func runHook(_ hook: Hook, _ p: borrowing ParsedPacket, _ f: inout PacketFields, _ ctx: inout PacketContext,
                          trace: inout HitTrace, d: inout Decision, emitted: inout Emitted) -> Bool {
        let h = Int(hook.rawValue)
        // Conntrack runs after the raw table at PREROUTING and OUTPUT (priority -200).
        let tracks = tracking && (hook == .prerouting || hook == .output) && !ctx.ct.looked
        for k in hookStart[h] ..< hookStart[h &+ 1] {
            let (t, c) = hookChains[k]
            let name = tables[Int(t)].name
            if tracks && name != .raw && !ctx.ct.looked {
                conntrackIn(f, p, &ctx, verifyChecksum: conntrackChecksum && hook == .prerouting && !ctx.checksumVerified, trace: &trace)
            }
            if name == .nat {
                if !natStep(table: Int(t), chain: c, hook: hook, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return false }
                continue
            }
            if trace.detailed { trace.lines.append("  \(hook.chainName) \(name.rawValue)") }
            if !runChain(table: Int(t), builtin: c, hook: hook, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return false }
        }
        if tracks && !ctx.ct.looked {
            conntrackIn(f, p, &ctx, verifyChecksum: conntrackChecksum && hook == .prerouting && !ctx.checksumVerified, trace: &trace)
        }
        return true
    }

    mutating func runChain(table ti: Int, builtin: Int32, hook: Hook, _ f: inout PacketFields, _ ctx: inout PacketContext,
                           trace: inout HitTrace, d: inout Decision, emitted: inout Emitted) -> Bool {
        var chain = builtin
        var next: Int32 = 0
        // (A call into Array.replaceSubrange even when empty, which it nearly always is.)
        if !stack.isEmpty { stack.removeAll(keepingCapacity: true) }
        while true {
            let box = chainRefs[Int(tables[ti].firstChainID) &+ Int(chain)]
            var hit: (Int, MatchResult)? = nil
            var from = Int(next)
            while let (i, result) = box._withUnsafeGuaranteedRef({ b in
                // (Inlined: a call would get a copy of the 353-byte chain; see `inlinedFirstMatch`.)
                b.compiled ? b.chain.inlinedFirstMatch(from: from, f) : LinearClassifier.firstMatch(b.rules, from: from, f)
            }) {
                if result == .hotdrop { hit = (i, .hotdrop); break }
                let id = Int(box._withUnsafeGuaranteedRef { $0.firstID }) &+ i
                // The rule itself is loaded only for its residual matches (or a trace).
                let res = !ruleSlots[id].hasResiduals ? MatchResult.match
                    : residualsMatch(box._withUnsafeGuaranteedRef { $0.rules[i] }, f, &ctx)
                if trace.detailed { traceSkipped(box.takeUnretainedValue().rules, from: from, to: i, trace: &trace) }
                if res != .noMatch { hit = (i, res); break }
                if trace.detailed { trace.lines.append("    \(describe(traceEntry: Int32(id))) [\(ruleText(Int32(id)))]: no match") }
                from = i + 1
            }
            if trace.detailed && hit == nil {
                let rules = box.takeUnretainedValue().rules
                traceSkipped(rules, from: from, to: rules.count, trace: &trace)
            }
            guard let (i, result) = hit else {
                // End of chain: built-in -> policy; user chain -> back to the caller.
                if chain == builtin { return policy(ti, builtin, bytes: ctx.bytes, trace: &trace, d: &d) }
                if let top = stack.popLast() { chain = top.chain; next = top.next; continue }
                return policy(ti, builtin, bytes: ctx.bytes, trace: &trace, d: &d)
            }
            let slot = Int(box._withUnsafeGuaranteedRef { $0.firstID }) &+ i, id = Int32(truncatingIfNeeded: slot)
            if result == .hotdrop {
                if trace.detailed { trace.lines.append("    \(describe(traceEntry: id)) [\(ruleText(id))]: hotdrop (L4 header missing)") }
                d.kind = .dropped; d.reason = .hotdrop; d.decidedBy = id
                return false
            }
            ruleSlots[slot].packets &+= 1
            ruleSlots[slot].bytes &+= ctx.bytes
            trace.rule(id)
            if trace.detailed {
                trace.lines.append("    \(describe(traceEntry: id)) [\(ruleText(id))]: match -> \(targetText(box.takeUnretainedValue().rules[i], table: ti))")
            }
            switch ruleSlots[slot].target {
            case .none:
                next = Int32(i) + 1
            case .accept:
                return true
            case .drop:
                d.kind = .dropped; d.reason = .rule; d.decidedBy = id
                return false
            case .return:
                if let top = stack.popLast() { chain = top.chain; next = top.next } else {
                    return policy(ti, builtin, bytes: ctx.bytes, trace: &trace, d: &d)
                }
            case .jump(let c):
                stack.append((chain, Int32(i) + 1))
                chain = c; next = 0
            case .goto(let c):
                chain = c; next = 0
            case .action(let a):
                switch apply(actions[Int(a)], hook: hook, &f, &ctx, trace: &trace, emitted: &emitted) {
                case .next: next = Int32(i) + 1
                case .accept: return true
                case .reject:
                    d.kind = .rejected; d.reason = .rule; d.decidedBy = id
                    return false
                }
            }
        }
    }

    func traceSkipped(_ rules: [CompiledRule], from: Int, to: Int, trace: inout HitTrace) {
        guard from < to else { return }
        for k in from ..< to { trace.lines.append("    \(describe(traceEntry: rules[k].id)) [\(ruleText(rules[k].id))]: no match") }
    }

    func targetText(_ r: CompiledRule, table ti: Int) -> String {
        switch r.target {
        case .none: "continue (no target)"
        case .accept: "ACCEPT"
        case .drop: "DROP"
        case .return: "RETURN"
        case .jump(let c): "jump \(tables[ti].chainNames[Int(c)])"
        case .goto(let c): "goto \(tables[ti].chainNames[Int(c)])"
        case .action(let a):
            switch actions[Int(a)] {
            case .reject(let w): "REJECT \(w.rawValue)"
            case .log: "LOG (continue)"
            case .mark(let v, let m): "MARK --set-xmark \(hex(v))/\(hex(m)) (continue)"
            case .ttl: "TTL (continue)"
            case .dscp: "DSCP (continue)"
            case .tcpmss: "TCPMSS (continue)"
            case .checksumFill: "CHECKSUM (continue)"
            case .notrack: "NOTRACK (continue)"
            case .copy(let to): "COPY to \(IPv4Address(to)) (continue)"
            case .connmark: "CONNMARK (continue)"
            case .nat(let n): "\(n)"
            case .lookup(let t): "LOOKUP table \(t) (continue)"
            }
        }
    }

    @inline(__always)
    mutating func policy(_ ti: Int, _ chain: Int32, bytes: UInt64, trace: inout HitTrace, d: inout Decision) -> Bool {
        let g = Int(tables[ti].firstChainID + chain)
        policyPackets[g] &+= 1
        policyBytes[g] &+= bytes
        trace.policy(Int32(g))
        let drop = tables[ti].policies[Int(chain)] == .drop
        if trace.detailed { trace.lines.append("    \(tables[ti].name.rawValue):\(tables[ti].chainNames[Int(chain)]) policy \(drop ? "DROP" : "ACCEPT")") }
        if drop {
            d.kind = .dropped; d.reason = .policy; d.decidedBy = -(Int32(g) + 1)
            return false
        }
        return true
    }

    enum ActionResult { case next, accept, reject }

    /// Applies a non-jump target: most go on to the next rule (XT_CONTINUE); REJECT ends the
    /// packet; NAT targets set the binding and end the nat chain (NF_ACCEPT).
    mutating func apply(_ a: TargetAction, hook: Hook, _ f: inout PacketFields, _ ctx: inout PacketContext, trace: inout HitTrace,
                        emitted: inout Emitted) -> ActionResult {
        switch a {
        case .reject(let w):
            ctx.rejectWith = w
            return .reject
        case .nat(let n):
            bind(n, f, &ctx, trace: &trace)
            return .accept
        case .connmark(let op):
            guard tracking, ctx.ct.index >= 0 else { break }
            var c = ct[ctx.ct.index]
            switch op {
            case .setXMark(let v, let m): c.mark = (c.mark & ~m) ^ v
            case .save(let nf, let ctm): c.mark = (c.mark & ~ctm) ^ (f.mark & nf)
            case .restore(let nf, let ctm): f.mark = (f.mark & ~nf) ^ (c.mark & ctm)
            }
            ct[ctx.ct.index] = c
        case .log(let o):
            if trace.logging { trace.logs.append(logLine(o, f, ctx)); trace.logLevels.append(o.level) }
        case .mark(let v, let m):
            f.mark = (f.mark & ~m) ^ v
        case .ttl(let op):
            var t = Int(f.ttl)
            switch op {
            case .set(let n): t = Int(n)
            case .dec(let n): t = max(0, t - Int(n))
            case .inc(let n): t = min(255, t + Int(n))
            }
            f.ttl = UInt8(t)
            Rewrite.setTTL(ctx.frame, l3: ctx.l3, f.ttl)
        case .dscp(let v):
            f.tos = (f.tos & 0x03) | (v << 2)
            Rewrite.setTOS(ctx.frame, l3: ctx.l3, f.tos)
        case .tcpmss(let op):
            // Only SYNs carry MSS; the option is rewritten when it is above the new value.
            if f.proto == IPProtocol.tcp, f.hasL4, f.tcpFlags & 0x02 != 0 {
                let mss: UInt16
                switch op {
                case .set(let n): mss = n
                case .clampToPMTU: mss = 1500 - 40  // the model's links have the Ethernet MTU
                }
                if !Rewrite.clampMSS(ctx.frame, l4: ctx.l4, capturedEnd: ctx.capturedEnd, mss: mss) {
                    addMSSOption(&ctx, &f, mss: min(mss, 536))
                }
            }
        case .checksumFill:
            break
        case .notrack:
            ctx.untracked = true
        case .copy(let to):
            // TEE: a clone of the packet as it is now goes to `to` as the next hop, out of the
            // interface that reaches it; the original goes on unchanged.
            if case .unicast(let oif, _) = network.route(destination: to, inputInterface: nil) {
                let start = emitted.copyBytes.count
                emitted.copyBytes.append(contentsOf: ctx.ip)
                // nf_dup_ipv4: a clone taken at PREROUTING or INPUT leaves with TTL - 1 (no loop
                // can keep it alive); the TTL is the packet's as the kernel has it at this hook
                // (inline, the forward path's decrement is not written into the frame).
                let ttl = f.ttl &- (hook == .prerouting || hook == .input ? 1 : 0)
                if emitted.copyBytes.count >= start + 20 && emitted.copyBytes[start + 8] != ttl {
                    let old = UInt16(emitted.copyBytes[start + 8]) << 8 | UInt16(emitted.copyBytes[start + 9])
                    emitted.copyBytes[start + 8] = ttl
                    let new = UInt16(ttl) << 8 | UInt16(emitted.copyBytes[start + 9])
                    let sum = UInt16(emitted.copyBytes[start + 10]) << 8 | UInt16(emitted.copyBytes[start + 11])
                    let updated = Checksum.update(sum, old: old, new: new)
                    emitted.copyBytes[start + 10] = UInt8(updated >> 8)
                    emitted.copyBytes[start + 11] = UInt8(updated & 0xFF)
                }
                emitted.copies.append((start, ctx.ip.count, engineIndex(oif), to))
                if trace.detailed { trace.lines.append("    copy to \(IPv4Address(to)) out \(network.interfaceName(oif))") }
            } else if trace.detailed {
                trace.lines.append("    copy to \(IPv4Address(to)): no route, not sent")
            }
        case .lookup(let table):
            ctx.lookupTable = table
            if inline, let m = routeMarks[table] { f.mark = m }
        }
        return .next
    }

    /// TCPMSS on a SYN without an MSS option (tcpmss_mangle_packet): when the segment carries no
    /// data and the header has room, an MSS option is inserted at the start of the options with
    /// min(new MSS, 536) (RFC 879's default), and the lengths and checksums are fixed.
    mutating func addMSSOption(_ ctx: inout PacketContext, _ f: inout PacketFields, mss: UInt16) {
        let fr = ctx.frame, l3 = ctx.l3, l4 = ctx.l4
        guard l4 + 20 <= ctx.capturedEnd else { return }
        let doff = Int(fr[l4 + 12] >> 4) * 4
        guard l4 + doff == ctx.capturedEnd, doff < 60, !hasMSSOption(fr, l4: l4, doff: doff) else { return }
        guard ctx.grow(4) else { return }
        let f2 = ctx.frame
        // Move the existing options 4 bytes on, then write kind 2, length 4, MSS.
        let opts = l4 + 20
        if doff > 20 { (f2.baseAddress! + opts + 4).copyMemory(from: f2.baseAddress! + opts, byteCount: doff - 20) }
        f2[opts] = 2; f2[opts + 1] = 4; f2.setBE16(opts + 2, mss)
        f2[l4 + 12] = UInt8((doff + 4) / 4) << 4 | (f2[l4 + 12] & 0x0F)
        let total = Int(f2.be16(l3 + 2)) + 4
        f2.setBE16(l3 + 2, UInt16(total))
        let hl = Int(f2[l3] & 0x0F) * 4
        f2.setBE16(l3 + 10, 0)
        f2.setBE16(l3 + 10, Checksum.compute(UnsafeRawBufferPointer(rebasing: f2[l3 ..< l3 + hl])))
        f2.setBE16(l4 + 16, 0)
        let ph = Checksum.pseudoHeaderSum(src: f2.be32(l3 + 12), dst: f2.be32(l3 + 16), proto: IPProtocol.tcp, length: UInt16(total - hl))
        f2.setBE16(l4 + 16, Checksum.fold(Checksum.sum(UnsafeRawBufferPointer(rebasing: f2[l4 ..< l3 + total]), initial: ph)))
        f.length = UInt16(total)
        ctx.bytes = UInt64(total)
    }

    func hasMSSOption(_ fr: UnsafeMutableRawBufferPointer, l4: Int, doff: Int) -> Bool {
        var i = l4 + 20
        while i < l4 + doff {
            let k = fr[i]
            if k == 0 { return false }
            if k == 1 { i += 1; continue }
            guard i + 1 < l4 + doff, fr[i + 1] >= 2 else { return false }
            if k == 2 { return true }
            i += Int(fr[i + 1])
        }
        return false
    }

    /// The residual matches of `r`, in order; all must match.
    mutating func residualsMatch(_ r: CompiledRule, _ f: PacketFields, _ ctx: inout PacketContext) -> MatchResult {
        var k = Int(r.residualStart)
        let end = k + Int(r.residualCount)
        while k < end {
            let res = residual(residuals[k], f, &ctx)
            if res != .match { return res }
            k += 1
        }
        return .match
    }

    mutating func residual(_ m: ResidualMatch, _ f: PacketFields, _ ctx: inout PacketContext) -> MatchResult {
        @inline(__always) func b(_ x: Bool) -> MatchResult { x ? .match : .noMatch }
        switch m {
        case .needsL4:
            if f.laterFragment { return .noMatch }
            if !f.hasL4 { return f.l4Truncated ? .hotdrop : .noMatch }
            return .match
        case .tcpFlags(let mask, let comp, let inv):
            if f.laterFragment || !f.hasL4 { return f.l4Truncated && !f.laterFragment ? .hotdrop : .noMatch }
            return b(((f.tcpFlags & mask) == comp) != inv)
        case .tcpOption(let kind, let inv):
            if f.laterFragment || !f.hasL4 { return f.l4Truncated && !f.laterFragment ? .hotdrop : .noMatch }
            return b(tcpHasOption(ctx, kind) != inv)
        case .icmpType(let spec, let inv):
            return b(spec.matches(type: f.icmpType, code: f.icmpCode) != inv)
        case .multiport(let start, let count, let dir, let inv):
            var hit = false
            for k in Int(start) ..< Int(start) + Int(count) {
                let r = multiportRanges[k]
                switch dir {
                case .source: hit = r.contains(f.sourcePort)
                case .destination: hit = r.contains(f.destinationPort)
                case .either: hit = r.contains(f.sourcePort) || r.contains(f.destinationPort)
                }
                if hit { break }
            }
            return b(hit != inv)
        case .sourceRange(let lo, let hi, let inv): return b((f.source >= lo && f.source <= hi) != inv)
        case .destinationRange(let lo, let hi, let inv): return b((f.destination >= lo && f.destination <= hi) != inv)
        case .addrtype(let x):
            if x.sourceTypes != 0 {
                let dev = x.limitIfaceIn ? modelID(f.inInterface) : x.limitIfaceOut ? modelID(f.outInterface) : nil
                let kind = network.addressKind(f.source, interface: dev)
                if ((x.sourceTypes >> UInt16(kind.rawValue)) & 1 == 1) == x.sourceInvert { return .noMatch }
            }
            if x.destinationTypes != 0 {
                let dev = x.limitIfaceIn ? modelID(f.inInterface) : x.limitIfaceOut ? modelID(f.outInterface) : nil
                let kind = network.addressKind(f.destination, interface: dev)
                if ((x.destinationTypes >> UInt16(kind.rawValue)) & 1 == 1) == x.destinationInvert { return .noMatch }
            }
            return .match
        case .mark(let mm, let inv): return b(mm.matches(f.mark) != inv)
        case .length(let lo, let hi, let inv): return b((f.length >= lo && f.length <= hi) != inv)
        case .ttl(let cmp, let v, let inv):
            switch cmp {
            case .eq: return b((f.ttl == v) != inv)
            case .gt: return b(f.ttl > v)
            case .lt: return b(f.ttl < v)
            }
        case .random(let threshold, let inv):
            // xt_statistic: (prandom_u32() & 0x7FFFFFFF) < probability.
            let r = UInt32(truncatingIfNeeded: state.random.next()) & 0x7FFF_FFFF
            return b((r < threshold) != inv)
        case .nth(let slot, let every, let inv):
            // xt_statistic nth: the counter runs 0...every-1 and matches when it wraps to 0.
            let s = Int(slot)
            let old = state.nthCounters[s]
            let new = old >= every - 1 ? 0 : old + 1
            state.nthCounters[s] = new
            return b((new == 0) != inv)
        case .limit(let slot, let perNanos, let burst):
            let s = Int(slot)
            if state.limitLast[s] != Int64.min {
                let elapsed = Double(max(0, ctx.now - state.limitLast[s]))
                state.limitCredit[s] = min(burst, state.limitCredit[s] + elapsed * perNanos)
            }
            state.limitLast[s] = ctx.now
            if state.limitCredit[s] >= 1 { state.limitCredit[s] -= 1; return .match }
            return .noMatch
        case .recent(let list, let x):
            return b(recent(Int(list), x, f, now: ctx.now))
        case .mac(let mac, let inv):
            guard f.hasMAC, f.inInterface >= 0 else { return .noMatch }
            return b((f.sourceMAC == mac) != inv)
        case .pkttype(let t, let inv): return b((f.packetType == t) != inv)
        case .set(let idx, let src, let inv):
            return b(sets[Int(idx)].contains(src ? f.source : f.destination) != inv)
        case .constant(let v): return b(v)
        case .ctState(let want, let inv): return b(!ctStateBits(ctx.ct).intersection(want).isEmpty != inv)
        case .connmark(let mm, let inv):
            // Read in place: `if let ct = conntrack` would copy the table (and retain its arrays).
            guard tracking, ctx.ct.index >= 0 else { return b(inv) }
            let mark = ct[ctx.ct.index].mark
            return b(mm.matches(mark) != inv)
        case .conntrack(let x):
            let c: Connection? = tracking && ctx.ct.index >= 0 ? ct[ctx.ct.index] : nil
            return b(Self.conntrackMatch(x, ctx.ct, stateBits: ctStateBits(ctx.ct), connection: c))
        }
    }

    /// xt_conntrack's state bits: the packet's state plus SNAT/DNAT when the connection has them.
    @inline(__always)
    func ctStateBits(_ info: CTInfo) -> CtState {
        var s = info.state
        if s.isEmpty { s = .invalid }
        if tracking, info.index >= 0 {
            let st = ct[info.index].status
            if st.contains(.srcNAT) { s.insert(.snat) }
            if st.contains(.dstNAT) { s.insert(.dnat) }
        }
        return s
    }

    /// xt_conntrack: every option given must hold (each with its own `!`). `connection`: the
    /// packet's entry, nil when it has none. Static, given what it reads: as a method called
    /// from the `mutating` `residual`, it got a copy of the whole `Engine` per call (680 bytes,
    /// and a retain of each of its arrays).
    static func conntrackMatch(_ x: ConntrackMatch, _ info: CTInfo, stateBits: CtState, connection: Connection?) -> Bool {
        if let st = x.state, stateBits.intersection(st.value).isEmpty != st.invert { return false }
        guard let c = connection else {
            // No connection: only a state match can hold.
            return x.status == nil && x.proto == nil && x.origSource == nil && x.origDestination == nil && x.replySource == nil
                && x.replyDestination == nil && x.origSourcePort == nil && x.origDestinationPort == nil && x.replySourcePort == nil
                && x.replyDestinationPort == nil && x.directionReply == nil
        }
        if let v = x.status {
            var s = CtStatus()
            if c.status.contains(.expected) { s.insert(.expected) }
            if c.status.contains(.seenReply) { s.insert(.seenReply) }
            if c.status.contains(.assured) { s.insert(.assured) }
            if c.status.contains(.confirmed) { s.insert(.confirmed) }
            if s.intersection(v.value).isEmpty == !v.invert && !(v.value.isEmpty && s.isEmpty) { return false }
        }
        if let v = x.proto, (c.original.proto == v.value) == v.invert { return false }
        func addr(_ m: Inverted<IPv4Prefix>?, _ a: UInt32) -> Bool { m.map { $0.value.contains(a) != $0.invert } ?? true }
        func port(_ m: Inverted<PortRange>?, _ p: UInt16) -> Bool { m.map { $0.value.contains(p) != $0.invert } ?? true }
        guard addr(x.origSource, c.original.source), addr(x.origDestination, c.original.destination),
              addr(x.replySource, c.reply.source), addr(x.replyDestination, c.reply.destination),
              port(x.origSourcePort, c.original.sourcePort), port(x.origDestinationPort, c.original.destinationPort),
              port(x.replySourcePort, c.reply.sourcePort), port(x.replyDestinationPort, c.reply.destinationPort) else { return false }
        if let dir = x.directionReply, dir != info.reply { return false }
        return true
    }

    /// xt_recent's recent_mt: --set creates or stamps the entry and matches; --remove drops it
    /// and matches; --rcheck/--update match when the entry has `hitcount` stamps within
    /// `seconds` (any stamp when neither is given), and --update stamps it again only when the
    /// result is true (`XT_RECENT_UPDATE && ret`). `!` flips the result before that test.
    mutating func recent(_ l: Int, _ x: RecentMatch, _ f: PacketFields, now: Int64) -> Bool {
        let key = (x.useDestination ? f.destination : f.source) & x.mask
        var ret = x.invert
        guard let e = state.recent[l].find(key, ttl: x.rttl ? f.ttl : nil) else {
            guard x.command == .set else { return ret }
            state.recent[l].add(key, ttl: f.ttl, now: now)
            return !ret
        }
        switch x.command {
        case .set:
            state.recent[l].touch(e, now: now)
            return !ret
        case .remove:
            state.recent[l].remove(e)
            return !ret
        case .rcheck, .update:
            let since = now - Int64(x.seconds ?? 0) * 1_000_000_000
            var hits: UInt32 = 0
            let n = Int(state.recent[l].counts[e])
            for k in 0 ..< n {
                let t = state.recent[l].times[e * RecentList.stamps + k]
                if x.seconds != nil && t < since { continue }
                hits += 1
                if x.hitcount == nil || x.hitcount == 0 || hits >= x.hitcount! { ret = !ret; break }
            }
            if x.command == .update && ret { state.recent[l].touch(e, now: now) }
            return ret
        }
    }

    func tcpHasOption(_ ctx: PacketContext, _ kind: UInt8) -> Bool {
        let f = ctx.frame, l4 = ctx.l4
        guard l4 + 20 <= ctx.capturedEnd else { return false }
        let end = min(ctx.capturedEnd, l4 + Int(f[l4 + 12] >> 4) * 4)
        var i = l4 + 20
        while i < end {
            let k = f[i]
            if k == kind { return true }
            if k == 0 { return false }
            if k == 1 { i += 1; continue }
            guard i + 1 < end, f[i + 1] >= 2 else { return false }
            i += Int(f[i + 1])
        }
        return false
    }

    /// A kernel-style LOG line (nf_log_ip_packet): prefix, IN=, OUT=, MAC=, SRC=, DST=, LEN=,
    /// TOS=, PREC=, TTL=, ID=, flags, PROTO= and the L4 fields.
    func logLine(_ o: LogOptions, _ f: PacketFields, _ ctx: PacketContext) -> String {
        let ip = ctx.ip
        var s = o.prefix ?? ""
        s += "IN=\(f.inInterface >= 0 ? interfaceName(f.inInterface) : "") OUT=\(f.outInterface >= 0 ? interfaceName(f.outInterface) : "") "
        if f.hasMAC && f.inInterface >= 0 && ctx.l3 >= 14 {
            s += "MAC=" + (0 ..< 14).map { k in let h = String(ctx.frame[k], radix: 16); return h.count == 1 ? "0" + h : h }.joined(separator: ":") + " "
        }
        s += "SRC=\(IPv4Address(f.source)) DST=\(IPv4Address(f.destination)) LEN=\(f.length) "
        s += "TOS=0x\(String(f.tos & 0x1E, radix: 16, uppercase: true).leftPad(2)) PREC=0x\(String(f.tos & 0xE0, radix: 16, uppercase: true).leftPad(2)) "
        s += "TTL=\(f.ttl) ID=\(ip.be16(4)) "
        let frag = ip.be16(6)
        if frag & 0x8000 != 0 { s += "CE " }
        if frag & 0x4000 != 0 { s += "DF " }
        if frag & 0x2000 != 0 { s += "MF " }
        if frag & 0x1FFF != 0 { s += "FRAG:\(frag & 0x1FFF) " }
        switch f.proto {
        case IPProtocol.tcp:
            s += "PROTO=TCP "
            if f.hasL4 {
                s += "SPT=\(f.sourcePort) DPT=\(f.destinationPort) "
                let l4 = ctx.l4 - ctx.l3
                if ip.count >= l4 + 20 {
                    if o.tcpSequence { s += "SEQ=\(ip.be32(l4 + 4)) ACK=\(ip.be32(l4 + 8)) " }
                    s += "WINDOW=\(ip.be16(l4 + 14)) RES=0x\(String((ip[l4 + 12] & 0x0F) << 2 | ip[l4 + 13] >> 6, radix: 16).leftPad(2)) "
                    let fl = ip[l4 + 13]
                    for (bit, name) in [(0x80, "CWR"), (0x40, "ECE"), (0x20, "URG"), (0x10, "ACK"), (0x08, "PSH"), (0x04, "RST"), (0x02, "SYN"), (0x01, "FIN")] where Int(fl) & bit != 0 {
                        s += name + " "
                    }
                    s += "URGP=\(ip.be16(l4 + 18)) "
                }
            }
        case IPProtocol.udp:
            s += "PROTO=UDP "
            if f.hasL4 { s += "SPT=\(f.sourcePort) DPT=\(f.destinationPort) LEN=\(Int(f.length) - (ctx.l4 - ctx.l3)) " }
        case IPProtocol.icmp:
            s += "PROTO=ICMP "
            if f.hasL4 {
                s += "TYPE=\(f.icmpType) CODE=\(f.icmpCode) "
                if f.icmpType == 0 || f.icmpType == 8 { s += "ID=\(f.sourcePort) SEQ=\(f.destinationPort) " }
            }
        default:
            s += "PROTO=\(f.proto) "
        }
        if f.mark != 0 { s += "MARK=0x\(String(f.mark, radix: 16)) " }
        return s
    }

    // MARK: - Descriptions

    /// `table:CHAIN:N` (1-based, as `iptables -L --line-numbers`) for a rule id, or
    /// `table:CHAIN:policy` for a policy entry.
    public func describe(traceEntry e: Int32) -> String {
        if e < 0 {
            let g = -(e + 1)
            for t in tables where g >= t.firstChainID && g < t.firstChainID + Int32(t.chainNames.count) {
                return "\(t.name.rawValue):\(t.chainNames[Int(g - t.firstChainID)]):policy"
            }
            return "?"
        }
        for t in tables {
            for c in t.chains.indices where e >= t.firstRuleID[c] && Int(e - t.firstRuleID[c]) < t.chains[c].count {
                return "\(t.name.rawValue):\(t.chainNames[c]):\(e - t.firstRuleID[c] + 1)"
            }
        }
        return "?"
    }

    /// The rule's options as iptables-save prints them (for traces).
    public func ruleText(_ id: Int32) -> String {
        for t in tables {
            for c in t.chains.indices where id >= t.firstRuleID[c] && Int(id - t.firstRuleID[c]) < t.chains[c].count {
                guard let table = ruleSet.table(t.name) else { return "?" }
                let text = RuleSetRenderer.render(rule: table.chains[c].rules[Int(id - t.firstRuleID[c])], table: table)
                return text.isEmpty ? "(matches all)" : String(text.dropFirst())
            }
        }
        return "?"
    }

    public func describe(_ p: ParsedPacket) -> String {
        var s: String
        switch p.proto {
        case IPProtocol.tcp: s = "tcp \(IPv4Address(p.source)):\(p.sourcePort) > \(IPv4Address(p.destination)):\(p.destinationPort) flags \(p.tcpFlags)"
        case IPProtocol.udp: s = "udp \(IPv4Address(p.source)):\(p.sourcePort) > \(IPv4Address(p.destination)):\(p.destinationPort)"
        case IPProtocol.icmp: s = "icmp \(IPv4Address(p.source)) > \(IPv4Address(p.destination)) type \(p.icmpType) code \(p.icmpCode)"
        default: s = "proto \(p.proto) \(IPv4Address(p.source)) > \(IPv4Address(p.destination))"
        }
        s += " len \(p.ipTotalLength) ttl \(p.ttl)"
        if p.isFragment { s += " frag \(p.fragmentOffset)\(p.moreFragments ? "+" : "")" }
        return s
    }

    func describe(_ r: RouteDecision) -> String {
        switch r {
        case .local(let i): "local" + (i.map { " (\(network.interfaceName($0)))" } ?? "")
        case .unicast(let i, let gw): "out \(network.interfaceName(i))" + (gw.map { " via \(IPv4Address($0))" } ?? " (directly connected)")
        case .blackhole: "blackhole"
        case .unreachable: "unreachable"
        case .prohibit: "prohibit"
        case .noRoute: "no route"
        }
    }

    /// The rule set with the counters of this run (built-in chain counters = policy hits).
    public var ruleSetWithCounters: RuleSet {
        var out = ruleSet
        for (ti, t) in tables.enumerated() {
            guard let si = out.tables.firstIndex(where: { $0.name == t.name }) else { continue }
            for c in out.tables[si].chains.indices {
                let g = Int(tables[ti].firstChainID) + c
                if out.tables[si].chains[c].isBuiltin {
                    out.tables[si].chains[c].counters = Counters(packets: policyPackets[g], bytes: policyBytes[g])
                }
                for r in out.tables[si].chains[c].rules.indices {
                    let id = Int(t.firstRuleID[c]) + r
                    out.tables[si].chains[c].rules[r].counters = Counters(packets: ruleSlots[id].packets, bytes: ruleSlots[id].bytes)
                }
            }
        }
        return out
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
