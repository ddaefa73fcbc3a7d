import Wire

/// Writes a rule set back in iptables-save format (`iptables-save -c` when `counters`), in the
/// option order iptables-save uses: -s -d -i -o -p -f, then matches as written, then the target.
public enum RuleSetRenderer {
    public static func render(_ set: RuleSet, counters: Bool = true, header: String? = nil) -> String {
        var out = ""
        if let header { out += "# \(header)\n" }
        for table in set.tables {
            out += "*\(table.name.rawValue)\n"
            for c in table.chains {
                out += ":\(c.name) \(c.policy?.rawValue ?? "-") \(counters ? c.counters.text : "[0:0]")\n"
            }
            for c in table.chains {
                for r in c.rules {
                    if counters { out += r.counters.text + " " }
                    out += "-A \(c.name)" + render(rule: r, table: table) + "\n"
                }
            }
            out += "COMMIT\n"
        }
        return out
    }

    /// The options of one rule, with a leading space (empty for a rule that matches everything
    /// and only counts).
    public static func render(rule r: Rule, table: Table) -> String {
        var s = ""
        let m = r.match
        func neg(_ inv: Bool) -> String { inv ? " !" : "" }
        if let v = m.source { s += "\(neg(v.invert)) -s \(v.value)" }
        if let v = m.destination { s += "\(neg(v.invert)) -d \(v.value)" }
        if let v = m.inInterface { s += "\(neg(v.invert)) -i \(v.value)" }
        if let v = m.outInterface { s += "\(neg(v.invert)) -o \(v.value)" }
        if let v = m.proto { s += "\(neg(v.invert)) -p \(ProtocolNames.name(v.value))" }
        if let f = m.fragment { s += f ? " -f" : " ! -f" }
        for e in m.extensions { s += " -m \(e.moduleName)" + render(e) }
        s += render(target: r.target, table: table)
        return s
    }

    static func neg(_ inv: Bool) -> String { inv ? " !" : "" }

    static func render(_ e: MatchExtension) -> String {
        switch e {
        case .tcp(let x):
            var s = ""
            if let v = x.sourcePort { s += "\(neg(v.invert)) --sport \(v.value)" }
            if let v = x.destinationPort { s += "\(neg(v.invert)) --dport \(v.value)" }
            if let v = x.flags { s += "\(neg(v.invert)) --tcp-flags \(flagNames(v.value.mask)) \(flagNames(v.value.comparison))" }
            if let v = x.option { s += "\(neg(v.invert)) --tcp-option \(v.value)" }
            return s
        case .udp(let x):
            var s = ""
            if let v = x.sourcePort { s += "\(neg(v.invert)) --sport \(v.value)" }
            if let v = x.destinationPort { s += "\(neg(v.invert)) --dport \(v.value)" }
            return s
        case .icmp(let x):
            guard let x else { return "" }
            return "\(neg(x.invert)) --icmp-type \(ICMPNames.render(x.value))"
        case .multiport(let x):
            return "\(neg(x.invert)) \(x.direction.rawValue) " + x.ports.map(\.description).joined(separator: ",")
        case .iprange(let x):
            var s = ""
            if let v = x.source { s += "\(neg(v.invert)) --src-range \(v.value)" }
            if let v = x.destination { s += "\(neg(v.invert)) --dst-range \(v.value)" }
            return s
        case .addrtype(let x):
            func types(_ bits: UInt16) -> String { AddressType.allCases.filter { bits & $0.bit != 0 }.map(\.rawValue).joined(separator: ",") }
            var s = ""
            if x.sourceTypes != 0 { s += "\(neg(x.sourceInvert)) --src-type \(types(x.sourceTypes))" }
            if x.destinationTypes != 0 { s += "\(neg(x.destinationInvert)) --dst-type \(types(x.destinationTypes))" }
            if x.limitIfaceIn { s += " --limit-iface-in" }
            if x.limitIfaceOut { s += " --limit-iface-out" }
            return s
        case .mark(let v), .connmark(let v):
            return "\(neg(v.invert)) --mark \(v.value)"
        case .comment(let c):
            return " --comment \(quote(c))"
        case .length(let v):
            return "\(neg(v.invert)) --length \(v.value.lo == v.value.hi ? "\(v.value.lo)" : "\(v.value.lo):\(v.value.hi)")"
        case .ttl(let x):
            return "\(neg(x.invert)) \(x.comparison.rawValue) \(x.value)"
        case .statistic(let x):
            switch x.mode {
            case .random(let p, _): return " --mode random\(neg(x.invert)) --probability \(probability(p))"
            case .nth(let every, let packet): return " --mode nth\(neg(x.invert)) --every \(every) --packet \(packet)"
            }
        case .limit(let x):
            return " --limit \(x.count)/\(x.unitName)" + (x.burst != 5 ? " --limit-burst \(x.burst)" : "")
        case .recent(let x):
            var s = "\(neg(x.invert)) \(x.command.rawValue)"
            if let sec = x.seconds { s += " --seconds \(sec)" }
            if x.reap { s += " --reap" }
            if let h = x.hitcount { s += " --hitcount \(h)" }
            if x.rttl { s += " --rttl" }
            s += " --name \(x.name) --mask \(IPv4Address(x.mask)) \(x.useDestination ? "--rdest" : "--rsource")"
            return s
        case .mac(let v):
            var parts: [String] = []
            for i in (0 ..< 6).reversed() {
                let b = UInt8((v.value >> (UInt64(i) * 8)) & 0xFF)
                let h = String(b, radix: 16, uppercase: true)
                parts.append(h.count == 1 ? "0" + h : h)
            }
            return "\(neg(v.invert)) --mac-source \(parts.joined(separator: ":"))"
        case .pkttype(let v):
            return "\(neg(v.invert)) --pkt-type \(v.value.rawValue)"
        case .set(let x):
            return "\(neg(x.invert)) --match-set \(x.name) \(x.directions.map(\.rawValue).joined(separator: ","))"
        case .state(let v):
            return "\(neg(v.invert)) --state \(v.value.text)"
        case .conntrack(let x):
            var s = ""
            if let v = x.state { s += "\(neg(v.invert)) --ctstate \(v.value.text)" }
            if let v = x.proto { s += "\(neg(v.invert)) --ctproto \(v.value)" }
            if let v = x.origSource { s += "\(neg(v.invert)) --ctorigsrc \(v.value)" }
            if let v = x.origDestination { s += "\(neg(v.invert)) --ctorigdst \(v.value)" }
            if let v = x.replySource { s += "\(neg(v.invert)) --ctreplsrc \(v.value)" }
            if let v = x.replyDestination { s += "\(neg(v.invert)) --ctrepldst \(v.value)" }
            if let v = x.status { s += "\(neg(v.invert)) --ctstatus \(v.value.text)" }
            if let v = x.origSourcePort { s += "\(neg(v.invert)) --ctorigsrcport \(v.value)" }
            if let v = x.origDestinationPort { s += "\(neg(v.invert)) --ctorigdstport \(v.value)" }
            if let v = x.replySourcePort { s += "\(neg(v.invert)) --ctreplsrcport \(v.value)" }
            if let v = x.replyDestinationPort { s += "\(neg(v.invert)) --ctrepldstport \(v.value)" }
            if let d = x.directionReply { s += " --ctdir \(d ? "REPLY" : "ORIGINAL")" }
            return s
        case .physdevIsBridged(let inv):
            return "\(neg(inv)) --physdev-is-bridged"
        case .policy(let dirIn, let ipsec, let inv):
            return " --dir \(dirIn ? "in" : "out")\(neg(inv)) --pol \(ipsec ? "ipsec" : "none")"
        case .nfacct(let n):
            return " --nfacct-name \(n)"
        case .socket(let tr, let nw, let rs):
            return (tr ? " --transparent" : "") + (nw ? " --nowildcard" : "") + (rs ? " --restore-skmark" : "")
        case .owner(let uid, let gid, let exists):
            var s = ""
            if let u = uid { s += "\(neg(u.invert)) --uid-owner \(u.value)" }
            if let g = gid { s += "\(neg(g.invert)) --gid-owner \(g.value)" }
            if let e = exists { s += "\(neg(!e)) --socket-exists" }
            return s
        }
    }

    static func render(target: RuleTarget, table: Table) -> String {
        switch target {
        case .none: return ""
        case .accept: return " -j ACCEPT"
        case .drop: return " -j DROP"
        case .return: return " -j RETURN"
        case .jump(let c): return " -j \(table.chains[c].name)"
        case .goto(let c): return " -g \(table.chains[c].name)"
        case .reject(let w): return " -j REJECT --reject-with \(w.rawValue)"
        case .log(let o):
            if let g = o.nflogGroup {
                var s = " -j NFLOG"
                if let p = o.prefix { s += " --nflog-prefix \(quote(p))" }
                if g != 0 { s += " --nflog-group \(g)" }
                if let r = o.nflogRange { s += " --nflog-range \(r)" }
                if let t = o.nflogThreshold { s += " --nflog-threshold \(t)" }
                return s
            }
            var s = " -j LOG"
            if let p = o.prefix { s += " --log-prefix \(quote(p))" }
            if o.level != 4 { s += " --log-level \(o.level)" }
            if o.tcpSequence { s += " --log-tcp-sequence" }
            if o.tcpOptions { s += " --log-tcp-options" }
            if o.ipOptions { s += " --log-ip-options" }
            if o.uid { s += " --log-uid" }
            return s
        case .mark(let v, let m): return " -j MARK --set-xmark \(hex(v))/\(hex(m))"
        case .connmark(let op):
            switch op {
            case .setXMark(let v, let m): return " -j CONNMARK --set-xmark \(hex(v))/\(hex(m))"
            case .save(let n, let c): return " -j CONNMARK --save-mark --nfmask \(hex(n)) --ctmask \(hex(c))"
            case .restore(let n, let c): return " -j CONNMARK --restore-mark --nfmask \(hex(n)) --ctmask \(hex(c))"
            }
        case .dnat(let rs, let f): return " -j DNAT" + rs.map { " --to-destination \($0)" }.joined() + flags(f)
        case .snat(let rs, let f): return " -j SNAT" + rs.map { " --to-source \($0)" }.joined() + flags(f)
        case .masquerade(let p, let f): return " -j MASQUERADE" + (p.map { " --to-ports \(portsText($0))" } ?? "") + flags(f)
        case .redirect(let p, let f): return " -j REDIRECT" + (p.map { " --to-ports \(portsText($0))" } ?? "") + flags(f)
        case .netmap(let p): return " -j NETMAP --to \(p)"
        case .ttl(let op):
            switch op {
            case .set(let n): return " -j TTL --ttl-set \(n)"
            case .dec(let n): return " -j TTL --ttl-dec \(n)"
            case .inc(let n): return " -j TTL --ttl-inc \(n)"
            }
        case .dscp(let d): return " -j DSCP --set-dscp 0x\(d < 16 ? "0" : "")\(String(d, radix: 16))"
        case .tcpmss(let op):
            switch op {
            case .set(let n): return " -j TCPMSS --set-mss \(n)"
            case .clampToPMTU: return " -j TCPMSS --clamp-mss-to-pmtu"
            }
        case .checksumFill: return " -j CHECKSUM --checksum-fill"
        case .notrack: return " -j CT --notrack"
        case .copy(let to, let from, let dir):
            return " -j COPY --to \(IPv4Address(to))" + (from.map { " --from \($0)" } ?? "") + " \(dir.rawValue)"
        case .tee(let g): return " -j TEE --gateway \(IPv4Address(g))"
        case .lookup(let t, let through): return " -j LOOKUP --table \(t)" + (through ? " --through" : "")
        case .tproxy(let o):
            return " -j TPROXY --on-port \(o.onPort)" + (o.onIP.map { " --on-ip \(IPv4Address($0))" } ?? "") + (o.mark.map { " --tproxy-mark \(hex($0.value))/\(hex($0.mask))" } ?? "")
        }
    }

    static func flags(_ f: NATFlags) -> String {
        (f.random ? " --random" : "") + (f.randomFully ? " --random-fully" : "") + (f.persistent ? " --persistent" : "")
    }

    static func portsText(_ r: NATRange) -> String {
        guard let a = r.minPort else { return "" }
        return r.maxPort.map { $0 != a ? "\(a)-\($0)" : "\(a)" } ?? "\(a)"
    }

    static func flagNames(_ bits: UInt8) -> String {
        if bits == 0 { return "NONE" }
        let names: [(UInt8, String)] = [(0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR")]
        return names.filter { bits & $0.0 != 0 }.map(\.1).joined(separator: ",")
    }

    /// iptables-save prints probabilities with 11 decimals.
    static func probability(_ p: Double) -> String {
        let scaled = (p * 100_000_000_000).rounded()
        let whole = Int(scaled / 100_000_000_000)
        var frac = String(Int(scaled) - whole * 100_000_000_000)
        while frac.count < 11 { frac = "0" + frac }
        return "\(whole).\(frac)"
    }

    static func quote(_ s: String) -> String {
        "\"" + s.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"") + "\""
    }
}

extension String {
    func replacingAll(_ a: Character, _ b: String) -> String {
        var out = ""
        for ch in self { if ch == a { out += b } else { out.append(ch) } }
        return out
    }
}
