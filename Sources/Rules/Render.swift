import Wire

/// Writes a rule set back in iptables-save format (`iptables-save -c` when `counters`), in the
/// option order iptables-save uses: -s -d -i -o -p, then matches, then the target.
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
        for mod in m.modules {
            s += " -m \(mod)"
            switch mod {
            case "tcp", "udp":
                if let v = m.sourcePort { s += "\(neg(v.invert)) --sport \(v.value)" }
                if let v = m.destinationPort { s += "\(neg(v.invert)) --dport \(v.value)" }
            case "comment":
                if let c = m.comment { s += " --comment \(quote(c))" }
            default: break
            }
        }
        switch r.target {
        case .none: break
        case .accept: s += " -j ACCEPT"
        case .drop: s += " -j DROP"
        case .return: s += " -j RETURN"
        case .jump(let c): s += " -j \(table.chains[c].name)"
        case .goto(let c): s += " -g \(table.chains[c].name)"
        }
        return s
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
