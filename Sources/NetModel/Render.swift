import Wire

extension NetworkModel {
    /// The model as commands that `parse` turns back into the same model: the links in interface
    /// order, then the addresses and the routes added by hand in the order they were added
    /// (routes in one slot are tried in that order, and a route added before an address whose
    /// connected route shares its slot came first), links set down, the rules other than the
    /// kernel's three, and ip_forward. Routes the kernel derives from addresses are not
    /// repeated (see `renderRoutes` for every table).
    public func render() -> String {
        var out: [String] = []
        var later: [(key: Int, line: String)] = []
        for (i, iface) in interfaces.enumerated() {
            let isLo = i == 0
            if let kind = iface.kind, !isLo {
                out.append("ip link add name \(word(iface.name)) type \(word(kind))")
                if iface.up { out.append("ip link set dev \(word(iface.name)) up") }
            } else if !isLo {
                out.append("ip link set dev \(word(iface.name)) up")  // declared here, in interface order
            }
            var key = 0
            for (n, a) in iface.addresses.enumerated() where !(isLo && n == 0) {
                var line = "ip addr add \(ip(a.address))/\(a.length)"
                if let b = a.broadcast { line += " brd \(ip(b))" }
                let defaultScope = a.address >> 24 == 127 ? RouteScope.host : RouteScope.universe
                if a.scope != defaultScope { line += " scope \(scopeName(a.scope))" }
                if let l = a.label { line += " label \(word(l))" }
                // When it was added: the local route it made (never removed; shared by a second
                // address with the same local address, which came later on the same link), or the
                // route that replaced it, which kept its place.
                let local = routes.first { $0.isKernel && $0.type == .local && $0.table == RouteTableID.local
                    && $0.network == a.address && $0.length == 32 && $0.interface == i }
                    ?? routes.filter { $0.table == RouteTableID.local && $0.network == a.address && $0.length == 32
                        && $0.metric == 0 }.min { $0.sequence < $1.sequence }
                key = max(key, local?.sequence ?? 0)
                later.append((key, line + " dev \(word(iface.name))"))
            }
        }
        // The first route of each slot (table, network, length, metric).
        var firstInSlot: [[UInt32]: Int] = [:]
        for r in routes {
            let slot = [r.table, r.network, UInt32(r.length), r.metric]
            firstInSlot[slot] = min(firstInSlot[slot] ?? .max, r.sequence)
        }
        for r in routes where !r.isKernel {
            // A route in a slot that an earlier route holds can only have come from `append`.
            let held = firstInSlot[[r.table, r.network, UInt32(r.length), r.metric]]! < r.sequence
            // One that took the slot of a route the kernel derives from an address (`ip route
            // replace`) is written as a replace: the address, replayed first, makes that route again.
            let kernelSlot = r.metric == 0 && interfaces.contains { $0.addresses.contains { a in
                let subnet = a.length == r.length && a.address & a.mask == r.network
                switch r.table {
                case RouteTableID.main: return subnet
                case RouteTableID.local:
                    return subnet || r.length == 32 && [a.address, a.broadcast, a.address | ~a.mask].contains(r.network)
                default: return false
                }
            } }
            let verb = held ? "append" : kernelSlot ? "replace" : "add"
            later.append((r.sequence, "ip route \(verb) " + routeText(r, command: true)))
        }
        // A stable sort: addresses of one link keep their order.
        out += later.enumerated().sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }.map(\.element.line)
        for (i, iface) in interfaces.enumerated() where (iface.kind == nil || i == 0) && !iface.up {
            out.append("ip link set dev \(word(iface.name)) down")
        }
        for rule in rules where !rule.isDefault { out.append("ip rule add " + ruleText(rule)) }
        out.append("sysctl net.ipv4.ip_forward=\(ipForward ? 1 : 0)")
        return out.joined(separator: "\n") + "\n"
    }

    /// Every route of every table in the order `ip route show table all` prints them (tables by
    /// number, routes by network), then the rules as `ip rule` prints them.
    public func renderRoutes() -> String {
        let sorted = routes.sorted {
            ($0.table, $0.network, $0.length, $0.metric, $0.sequence) < ($1.table, $1.network, $1.length, $1.metric, $1.sequence)
        }
        var out = sorted.map { routeText($0, command: false) }
        for rule in rules { out.append("\(rule.priority):\t" + ruleText(rule, showPriority: false)) }
        return out.joined(separator: "\n") + "\n"
    }

    func routeText(_ r: Route, command: Bool) -> String {
        var parts: [String] = []
        if r.type != .unicast { parts.append(r.type.keyword) }
        parts.append(r.length == 0 ? "default" : r.length == 32 ? ip(r.network) : "\(ip(r.network))/\(r.length)")
        if let g = r.gateway { parts.append("via \(ip(g))") }
        if let d = r.interface { parts.append("dev \(command ? word(interfaces[d].name) : interfaces[d].name)") }
        let defaultTable = r.type == .local ? RouteTableID.local : RouteTableID.main
        if r.table != defaultTable || (!command && r.table != RouteTableID.main) { parts.append("table \(tableName(r.table))") }
        if r.proto != RouteProto.boot || !command {
            if r.proto != RouteProto.boot { parts.append("proto \(routeProtocols.first { $0.1 == r.proto }?.0 ?? String(r.proto))") }
        }
        let defaultScope: UInt8 = switch r.type {
        case .local: RouteScope.host
        case .broadcast: RouteScope.link
        case .unicast: r.gateway == nil ? RouteScope.link : RouteScope.universe
        default: RouteScope.universe
        }
        if r.scope != defaultScope || (!command && r.scope != RouteScope.universe) { parts.append("scope \(scopeName(r.scope))") }
        if r.metric != 0 { parts.append("metric \(r.metric)") }
        if let s = r.preferredSource { parts.append("src \(ip(s))") }
        if r.onlink { parts.append("onlink") }
        return parts.joined(separator: " ")
    }

    func ruleText(_ rule: PolicyRule, showPriority: Bool = true) -> String {
        var parts: [String] = []
        if showPriority { parts.append("pref \(rule.priority)") }
        if rule.invert { parts.append("not") }
        parts.append("from \(rule.from.map { $0.length == 32 ? ip($0.network) : $0.description } ?? "all")")
        if let t = rule.to { parts.append("to \(t.length == 32 ? ip(t.network) : t.description)") }
        if rule.markMask != 0 {
            parts.append("fwmark " + hex(rule.mark) + (rule.markMask == 0xFFFF_FFFF ? "" : "/" + hex(rule.markMask)))
        }
        // showPriority: the `ip rule add` form that parse reads back (names quoted when needed).
        let name = { (i: InterfaceID) in showPriority ? word(self.interfaces[i].name) : self.interfaces[i].name }
        if let i = rule.inputInterface { parts.append("iif \(name(i))") }
        if let o = rule.outputInterface { parts.append("oif \(name(o))") }
        if rule.tos != 0 { parts.append("tos " + hex(UInt32(rule.tos))) }
        switch rule.action {
        case .lookup(let t): parts.append("lookup \(tableName(t))")
        case .blackhole: parts.append("blackhole")
        case .unreachable: parts.append("unreachable")
        case .prohibit: parts.append("prohibit")
        }
        return parts.joined(separator: " ")
    }
}

private func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

private func scopeName(_ s: UInt8) -> String {
    switch s {
    case RouteScope.universe: "global"
    case RouteScope.site: "site"
    case RouteScope.link: "link"
    case RouteScope.host: "host"
    case RouteScope.nowhere: "nowhere"
    default: String(s)
    }
}

/// A name as one token for `parse`: in double quotes when it holds a quote or a backslash or
/// starts a comment (names, labels and kinds hold no white space; the parser refuses it).
func word(_ s: String) -> String {
    guard s.isEmpty || s.hasPrefix("#") || s.contains(where: { $0 == "\"" || $0 == "'" || $0 == "\\" }) else { return s }
    var out = "\""
    for c in s {
        if c == "\"" || c == "\\" { out.append("\\") }
        out.append(c)
    }
    return out + "\""
}
