import Diagnostics
import Wire

#if canImport(Glibc)
import Glibc
#endif

extension NetworkModel {
    /// Parses one command per line: `ip addr add`, `ip link add|set`, `ip route add|append|replace`,
    /// `ip rule add`, `sysctl`. Blank lines and `#` comments are skipped, CRLF is fine and a
    /// trailing `\` continues a command on the next line. Commands apply in order against the
    /// state built so far, with the kernel's checks (`via` must be directly reachable, duplicate
    /// routes are refused, ...). The first error throws; nothing is half-loaded.
    ///
    /// Deliberate differences from a real box: naming an unknown interface (in `ip addr`,
    /// `dev`, `iif`, `oif`, `ip link set`) declares it, up; and `via GW dev IFACE` is taken as
    /// given (as if `onlink`), because models name point-to-point devices without addresses.
    public static func parse(_ text: String, file: String) throws(Diagnostic) -> NetworkModel {
        var builder = Builder(file: file)
        var command: [Arg] = []
        var lineNumber = 0
        // "\r\n" is one Character in Swift, and a newline: this splits CRLF and LF files alike.
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            lineNumber += 1
            var tokens = try Tokenizer.split(raw, file: file, lineNumber: lineNumber)
            // A trailing backslash reaches us as the last character of the last token.
            var continues = false
            if let last = tokens.last, !last.quoted, last.text.hasSuffix("\\"),
               raw.trimmingTrailingBlanks.hasSuffix("\\") {
                continues = true
                tokens[tokens.count - 1].text.removeLast()
                if tokens[tokens.count - 1].text.isEmpty { tokens.removeLast() }
            }
            command += tokens.map { Arg(text: $0.text, line: lineNumber, column: $0.column) }
            if continues { continue }
            if !command.isEmpty { try builder.run(command) }
            command = []
        }
        if !command.isEmpty { try builder.run(command) }
        return builder.model()
    }

    /// Reads and parses a file; a missing or unreadable file is a Diagnostic at 0:0.
    public static func load(path: String) throws(Diagnostic) -> NetworkModel {
        guard let text = readFile(path) else {
            throw Diagnostic(file: path, line: 0, column: 0, message: "cannot read network model file '\(path)'")
        }
        return try parse(text, file: path)
    }

    private static func readFile(_ path: String) -> String? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n > 0 { bytes += buffer[0..<n] }
            if n < buffer.count { break }
        }
        guard ferror(f) == 0 else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Substring {
    fileprivate var trimmingTrailingBlanks: Substring {
        var s = self
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return s
    }
}

/// A token with its own line, so continued commands still report the right place.
struct Arg {
    var text: String
    var line: Int
    var column: Int
}

/// Consumes a command's arguments; errors point at the token concerned.
struct Args {
    let all: [Arg]
    var position = 0
    let file: String

    var atEnd: Bool { position >= all.count }
    mutating func next() -> Arg? {
        guard position < all.count else { return nil }
        defer { position += 1 }
        return all[position]
    }
    /// The value after a keyword; its absence is reported at the keyword.
    mutating func value(after keyword: Arg) throws(Diagnostic) -> Arg {
        guard let v = next() else { throw error(keyword, "missing value after '\(keyword.text)'") }
        return v
    }
    func error(_ at: Arg, _ message: String) -> Diagnostic {
        Diagnostic(file: file, line: at.line, column: at.column, message: message)
    }
}

/// iproute2 accepts any prefix of a command word ("a", "addr", "ro"); candidates are tried in
/// its own order, so "a" is address and "r" is route.
private func matchWord(_ text: String, _ candidates: [String]) -> String? {
    guard !text.isEmpty else { return nil }
    return candidates.first { $0.hasPrefix(text) }
}

/// get_u32 with base 0: 0x hex, leading-0 octal, else decimal.
func parseNumber(_ text: String, hex: Bool = false) -> UInt32? {
    var s = Substring(text)
    var radix = 10
    if s.hasPrefix("0x") || s.hasPrefix("0X") { s = s.dropFirst(2); radix = 16 }
    else if hex { radix = 16 }
    else if s.count > 1, s.hasPrefix("0") { s = s.dropFirst(); radix = 8 }
    guard !s.isEmpty, s.allSatisfy({ $0.isHexDigit }) else { return nil }
    return UInt32(s, radix: radix)
}

func ip(_ v: UInt32) -> String { IPv4Address(v).description }

struct Builder {
    let file: String
    var interfaces: [Interface] = [
        Interface(name: "lo", up: true, kind: "loopback", addresses: []),
    ]
    var routes: [Route] = []
    var rules: [PolicyRule] = [
        PolicyRule(priority: 0, action: .lookup(RouteTableID.local), isDefault: true),
        PolicyRule(priority: 32766, action: .lookup(RouteTableID.main), isDefault: true),
        PolicyRule(priority: 32767, action: .lookup(RouteTableID.default), isDefault: true),
    ]
    var ipForward = false
    var sequence = 0
    /// Rebuilt only when something a gateway check can see changes (scope >= link routes,
    /// rules, links), so a long list of `via` routes costs one build, not one per line.
    var cachedIndex: RoutingIndex?

    init(file: String) {
        self.file = file
        // Every Linux box: lo up with 127.0.0.1/8 (scope host).
        addAddress(interface: 0, InterfaceAddress(address: 0x7F00_0001, length: 8, broadcast: nil,
                                                  scope: RouteScope.host, label: nil, secondary: false))
    }

    func model() -> NetworkModel {
        NetworkModel(interfaces: interfaces, routes: routes, rules: rules, ipForward: ipForward)
    }

    mutating func run(_ command: [Arg]) throws(Diagnostic) {
        var args = Args(all: command, file: file)
        guard let head = args.next() else { return }
        switch head.text {
        case "ip": try ipCommand(&args, head)
        case "sysctl": try sysctl(&args, head)
        default: throw args.error(head, "unknown command '\(head.text)' (expected 'ip' or 'sysctl')")
        }
    }

    // MARK: ip

    mutating func ipCommand(_ args: inout Args, _ head: Arg) throws(Diagnostic) {
        var object: Arg?
        while let t = args.next() {
            if t.text == "-4" { continue }
            if t.text == "-6" { throw args.error(t, "IPv6 is not modeled ('-6')") }
            if t.text.hasPrefix("-") { throw args.error(t, "unsupported ip option '\(t.text)'") }
            object = t
            break
        }
        guard let object else { throw args.error(head, "missing object after 'ip'") }
        guard let which = matchWord(object.text, ["address", "route", "rule", "link"]) else {
            throw args.error(object, "unsupported ip object '\(object.text)' (address, route, rule or link)")
        }
        guard let verb = args.next() else { throw args.error(object, "missing command after '\(object.text)'") }
        switch (which, matchWord(verb.text, ["add", "append", "replace", "set"])) {
        case ("address", "add"): try addressAdd(&args, verb)
        case ("route", "add"), ("route", "append"), ("route", "replace"): try routeAdd(&args, verb)
        case ("rule", "add"): try ruleAdd(&args, verb)
        case ("link", "add"): try linkAdd(&args, verb)
        case ("link", "set"): try linkSet(&args, verb)
        default: throw args.error(verb, "unsupported ip \(which) command '\(verb.text)'")
        }
    }

    mutating func interface(_ arg: Arg) throws(Diagnostic) -> InterfaceID {
        if let i = interfaces.firstIndex(where: { $0.name == arg.text }) { return i }
        try checkInterfaceName(arg)
        interfaces.append(Interface(name: arg.text, up: true, kind: nil, addresses: []))
        cachedIndex = nil
        return interfaces.count - 1
    }

    /// The kernel's dev_valid_name: 1 to 15 bytes, not "." or "..", no '/', ':' or white space
    /// (here any Unicode white space or line break: a model file is split at line breaks).
    func checkInterfaceName(_ arg: Arg) throws(Diagnostic) {
        let n = arg.text
        guard n.utf8.count <= 15, !n.isEmpty, n != ".", n != "..",
              !n.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) else {
            throw Diagnostic(file: file, line: arg.line, column: arg.column,
                             message: "invalid interface name '\(n)' (1 to 15 bytes, no '/', ':' or white space)")
        }
    }

    /// A label or link kind: one word (no white space or line break), as `ip` prints it.
    func checkWord(_ arg: Arg, _ what: String) throws(Diagnostic) {
        guard !arg.text.isEmpty, !arg.text.contains(where: \.isWhitespace) else {
            throw Diagnostic(file: file, line: arg.line, column: arg.column, message: "invalid \(what) '\(arg.text)'")
        }
    }

    func prefix(_ args: Args, _ t: Arg) throws(Diagnostic) -> IPv4Prefix {
        guard let p = IPv4Prefix(Substring(t.text)) else { throw args.error(t, "invalid address '\(t.text)'") }
        return p
    }

    func address(_ args: Args, _ t: Arg) throws(Diagnostic) -> UInt32 {
        guard let a = IPv4Address(Substring(t.text)) else { throw args.error(t, "invalid address '\(t.text)'") }
        return a.value
    }

    func scope(_ args: Args, _ t: Arg) throws(Diagnostic) -> UInt8 {
        switch t.text {
        case "global", "universe": return RouteScope.universe
        case "site": return RouteScope.site
        case "link": return RouteScope.link
        case "host": return RouteScope.host
        case "nowhere": return RouteScope.nowhere
        default:
            guard let n = parseNumber(t.text), n <= 255 else { throw args.error(t, "invalid scope '\(t.text)'") }
            return UInt8(n)
        }
    }

    func table(_ args: Args, _ t: Arg) throws(Diagnostic) -> UInt32 {
        switch t.text {
        case "main": return RouteTableID.main
        case "local": return RouteTableID.local
        case "default": return RouteTableID.default
        default:
            guard let n = parseNumber(t.text) else {
                throw args.error(t, "unknown table '\(t.text)' (use a number, main, local or default)")
            }
            guard n != 0 else { throw args.error(t, "table 0 is not a valid table") }
            return n
        }
    }

    // MARK: ip address add

    mutating func addressAdd(_ args: inout Args, _ verb: Arg) throws(Diagnostic) {
        var pfx: IPv4Prefix?, dev: Arg?, brd: Arg?, scopeValue: UInt8?, label: Arg?
        while let t = args.next() {
            switch t.text {
            case "dev": dev = try args.value(after: t)
            case "local": pfx = try prefix(args, args.value(after: t))
            case "brd", "broadcast": brd = try args.value(after: t)
            case "scope": scopeValue = try scope(args, args.value(after: t))
            case "label": label = try args.value(after: t)
            default:
                guard pfx == nil, t.text.first?.isNumber == true else {
                    throw args.error(t, "unknown ip address option '\(t.text)'")
                }
                pfx = try prefix(args, t)
            }
        }
        guard let pfx else { throw args.error(verb, "ip address add needs an address") }
        guard let dev else { throw args.error(verb, "ip address add needs 'dev IFACE'") }
        let mask = pfx.mask
        var broadcast: UInt32?
        if let brd {
            switch brd.text {
            case "+": broadcast = pfx.address.value | ~mask
            case "-": broadcast = pfx.address.value & mask
            default: broadcast = try address(args, brd)
            }
        }
        if let label, !label.text.hasPrefix(dev.text) {
            throw args.error(label, "label '\(label.text)' must begin with the interface name '\(dev.text)'")
        }
        if let label { try checkWord(label, "label") }
        let i = try interface(dev)
        let a = pfx.address.value
        // inet_insert_ifa: same local address and mask is a duplicate; same subnet makes it secondary.
        if interfaces[i].addresses.contains(where: { $0.address == a && $0.length == pfx.length }) {
            throw args.error(dev, "address \(ip(a))/\(pfx.length) already exists on '\(dev.text)'")
        }
        let secondary = interfaces[i].addresses.contains {
            !$0.secondary && $0.length == pfx.length && ($0.address ^ a) & mask == 0
        }
        // iproute2's default_scope: host for 127/8.
        let s = scopeValue ?? (a >> 24 == 127 ? RouteScope.host : RouteScope.universe)
        addAddress(interface: i, InterfaceAddress(address: a, length: pfx.length, broadcast: broadcast, scope: s,
                                                  label: label?.text, secondary: secondary))
    }

    mutating func addAddress(interface i: InterfaceID, _ a: InterfaceAddress) {
        interfaces[i].addresses.append(a)
        addKernelRoutes(interface: i, a)
    }

    /// fib_add_ifaddr: the local route always; while the link is up also an explicit `brd`, and
    /// for a primary address outside 0/8 that is not a /32, the connected route (in table local
    /// as a `local` route on loopback) and, below /31, the subnet broadcast. Routes already
    /// present are not added twice (fib_magic finds them).
    mutating func addKernelRoutes(interface i: InterfaceID, _ a: InterfaceAddress) {
        let iface = interfaces[i]
        let primary = a.secondary
            ? iface.addresses.first { !$0.secondary && $0.length == a.length && ($0.address ^ a.address) & a.mask == 0 }
            : a
        let src = primary?.address ?? a.address
        func add(_ type: RouteType, _ network: UInt32, _ length: UInt8, _ scope: UInt8) {
            let table = type == .unicast ? RouteTableID.main : RouteTableID.local
            if routes.contains(where: { $0.table == table && $0.type == type && $0.network == network
                                        && $0.length == length && $0.interface == i && $0.metric == 0 }) { return }
            appendRoute(Route(table: table, type: type, network: network, length: length, gateway: nil,
                              interface: i, metric: 0, preferredSource: src, proto: RouteProto.kernel,
                              scope: scope, onlink: false, sequence: 0))
        }
        add(.local, a.address, 32, RouteScope.host)
        guard iface.up else { return }
        if let b = a.broadcast, b != 0xFFFF_FFFF { add(.broadcast, b, 32, RouteScope.link) }
        let network = a.address & a.mask
        guard network >> 24 != 0, !a.secondary, a.length < 32 else { return }
        if i == 0 { add(.local, network, a.length, RouteScope.host) }
        else { add(.unicast, network, a.length, RouteScope.link) }
        if a.length < 31 { add(.broadcast, network | ~a.mask, 32, RouteScope.link) }
    }

    mutating func appendRoute(_ route: Route) {
        var r = route
        sequence += 1
        r.sequence = sequence
        routes.append(r)
        if r.scope > RouteScope.universe { cachedIndex = nil }
    }

    // MARK: ip link

    mutating func linkAdd(_ args: inout Args, _ verb: Arg) throws(Diagnostic) {
        var name: Arg?, kind: Arg?
        while let t = args.next() {
            switch t.text {
            case "name", "dev": name = try args.value(after: t)
            case "type": kind = try args.value(after: t)
            default:
                guard name == nil else { throw args.error(t, "unknown ip link add option '\(t.text)'") }
                name = t
            }
        }
        guard let name else { throw args.error(verb, "ip link add needs a name") }
        if interfaces.contains(where: { $0.name == name.text }) {
            throw args.error(name, "interface '\(name.text)' already exists")
        }
        try checkInterfaceName(name)
        if let kind { try checkWord(kind, "link type") }
        // A new link starts down, as in the kernel.
        interfaces.append(Interface(name: name.text, up: false, kind: kind?.text ?? "dummy", addresses: []))
    }

    mutating func linkSet(_ args: inout Args, _ verb: Arg) throws(Diagnostic) {
        var name: Arg?, state: Bool?
        while let t = args.next() {
            switch t.text {
            case "dev": name = try args.value(after: t)
            case "up": state = true
            case "down": state = false
            default:
                guard name == nil else { throw args.error(t, "unsupported ip link set option '\(t.text)' (only up and down)") }
                name = t
            }
        }
        guard let name else { throw args.error(verb, "ip link set needs an interface") }
        guard let state else { throw args.error(verb, "ip link set needs 'up' or 'down'") }
        let i = try interface(name)
        guard interfaces[i].up != state else { return }
        interfaces[i].up = state
        cachedIndex = nil
        if state {
            for a in interfaces[i].addresses { addKernelRoutes(interface: i, a) }
        } else {
            // fib_sync_down_dev: every route through the device goes, for good, except scope host
            // ones (its local addresses stay local).
            routes.removeAll { $0.interface == i && $0.scope != RouteScope.host }
        }
    }

    // MARK: ip route

    enum RouteMode { case add, append, replace }

    mutating func routeAdd(_ args: inout Args, _ verb: Arg) throws(Diagnostic) {
        func routeType(_ text: String) -> RouteType? {
            RouteType.allCases.first { $0.keyword == text }
        }
        var type = RouteType.unicast
        var dst: (network: UInt32, length: UInt8)?, dstArg: Arg?
        var via: Arg?, gateway: UInt32?, dev: Arg?, tableID: UInt32?, metric: UInt32 = 0
        var src: Arg?, proto = RouteProto.boot, scopeValue: UInt8?, onlink = false
        while let t = args.next() {
            switch t.text {
            case "via":
                var v = try args.value(after: t)
                if v.text == "inet" { v = try args.value(after: v) }
                via = v
                gateway = try address(args, v)
            case "dev", "oif": dev = try args.value(after: t)
            case "table":
                tableID = try table(args, args.value(after: t))
            case "metric", "priority", "preference":
                let v = try args.value(after: t)
                guard let n = parseNumber(v.text) else { throw args.error(v, "invalid metric '\(v.text)'") }
                metric = n
            case "src": src = try args.value(after: t)
            case "proto", "protocol":
                let v = try args.value(after: t)
                guard let p = routeProtocol(v.text) else { throw args.error(v, "unknown route protocol '\(v.text)'") }
                proto = p
            case "scope": scopeValue = try scope(args, args.value(after: t))
            case "onlink": onlink = true
            default:
                guard dst == nil else { throw args.error(t, "unknown ip route option '\(t.text)'") }
                var d = t
                if d.text == "to" { d = try args.value(after: d) }
                if let rt = routeType(d.text) {
                    type = rt
                    d = try args.value(after: d)
                } else if ["multicast", "anycast", "nat"].contains(d.text) {
                    throw args.error(d, "unsupported route type '\(d.text)'")
                }
                dstArg = d
                if d.text == "default" || d.text == "all" || d.text == "any" {
                    dst = (0, 0)
                } else {
                    guard d.text.first?.isNumber == true else { throw args.error(d, "unknown ip route option '\(d.text)'") }
                    let p = try prefix(args, d)
                    guard p.address.value & ~p.mask == 0 else {
                        throw args.error(d, "invalid prefix '\(d.text)': host bits are set")
                    }
                    dst = (p.network, p.length)
                }
            }
        }
        guard let dst, let dstArg else { throw args.error(verb, "ip route \(verb.text) needs a destination") }
        // iproute2 puts `local` routes in table local unless told otherwise.
        let table = tableID ?? (type == .local ? RouteTableID.local : RouteTableID.main)
        var device: InterfaceID?
        if let dev {
            device = try interface(dev)
            guard interfaces[device!].up else { throw args.error(dev, "interface '\(dev.text)' is down") }
        }
        let needsDevice = type == .unicast || type == .local || type == .broadcast
        if needsDevice && device == nil {
            if type == .unicast, let via, let gateway {
                device = try resolveGateway(args, via, gateway, table: table)
            } else {
                throw args.error(dstArg, "\(type.keyword) route needs 'dev IFACE'\(type == .unicast ? " or 'via GATEWAY'" : "")")
            }
        }
        if !needsDevice, let via { throw args.error(via, "a \(type.keyword) route takes no gateway") }
        var preferred: UInt32?
        if let src {
            let s = try address(args, src)
            guard routes.contains(where: { $0.table == RouteTableID.local && $0.type == .local
                                            && $0.network == s & $0.mask }) || (table == RouteTableID.local && type == .local) else {
                throw args.error(src, "src \(ip(s)) is not an address of this box")
            }
            preferred = s
        }
        // iproute2's default scopes.
        let defaultScope: UInt8 = switch type {
        case .local: RouteScope.host
        case .broadcast: RouteScope.link
        case .unicast: gateway == nil ? RouteScope.link : RouteScope.universe
        default: RouteScope.universe
        }
        let route = Route(table: table, type: type, network: dst.network, length: dst.length, gateway: gateway,
                          interface: device, metric: metric, preferredSource: preferred, proto: proto,
                          scope: scopeValue ?? defaultScope, onlink: onlink, sequence: 0)
        // fib_table_insert: same table, prefix and metric (tos 0) is the same slot.
        let existing = routes.firstIndex {
            $0.table == table && $0.network == dst.network && $0.length == dst.length && $0.metric == metric
        }
        switch (mode(verb), existing) {
        case (.add, .some):
            let name = dst.length == 0 ? "default" : "\(ip(dst.network))/\(dst.length)"
            throw args.error(dstArg, "route \(name) metric \(metric) already exists in table \(tableName(table))")
        case (.replace, .some(let i)):
            var r = route
            r.sequence = routes[i].sequence
            routes[i] = r
            cachedIndex = nil
        default:
            appendRoute(route)
        }
    }

    func mode(_ verb: Arg) -> RouteMode {
        switch matchWord(verb.text, ["add", "append", "replace"]) {
        case "append": .append
        case "replace": .replace
        default: .add
        }
    }

    /// fib_check_nh_v4_gw without a device: the gateway must be reached through a route of scope
    /// link or host (a connected subnet or one of our addresses), looked up in the route's table
    /// and then through the rules, as the kernel does.
    mutating func resolveGateway(_ args: Args, _ via: Arg, _ gateway: UInt32, table: UInt32) throws(Diagnostic) -> InterfaceID {
        if cachedIndex == nil { cachedIndex = RoutingIndex(interfaces: interfaces, routes: routes, rules: rules) }
        let index = cachedIndex!
        var found: Int?
        if table != RouteTableID.main, let slot = index.tableIDs.firstIndex(of: table) {
            found = index.lookup(slot: slot, gateway, minScope: 1)
        }
        if found == nil, case .route(let i) = index.resolve(destination: gateway, source: 0, inputInterface: 0,
                                                            mark: 0, tos: 0, minScope: 1) {
            found = i
        }
        guard let found, let dev = index.entries[found].interface,
              index.entries[found].type == .unicast || index.entries[found].type == .local else {
            throw args.error(via, "gateway \(ip(gateway)) is not directly reachable (no connected route); add 'dev IFACE'")
        }
        return dev
    }

    // MARK: ip rule

    mutating func ruleAdd(_ args: inout Args, _ verb: Arg) throws(Diagnostic) {
        var rule = PolicyRule(priority: 0, action: .blackhole)
        var priority: UInt32?, action: PolicyRule.Action?
        func selector(_ t: Arg, _ args: inout Args) throws(Diagnostic) -> IPv4Prefix? {
            let v = try args.value(after: t)
            if v.text == "all" { return nil }
            return try prefix(args, v)
        }
        while let t = args.next() {
            switch t.text {
            case "pref", "priority", "order", "preference":
                let v = try args.value(after: t)
                guard let n = parseNumber(v.text) else { throw args.error(v, "invalid priority '\(v.text)'") }
                priority = n
            case "from": rule.from = try selector(t, &args)
            case "to": rule.to = try selector(t, &args)
            case "fwmark":
                let v = try args.value(after: t)
                let parts = v.text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
                guard let m = parseNumber(String(parts[0])),
                      let mask = parts.count == 2 ? parseNumber(String(parts[1])) : (m == 0 ? 0 : 0xFFFF_FFFF) else {
                    throw args.error(v, "invalid fwmark '\(v.text)'")
                }
                rule.mark = m
                rule.markMask = mask
            case "iif", "dev": rule.inputInterface = try interface(args.value(after: t))
            case "oif": rule.outputInterface = try interface(args.value(after: t))
            case "tos", "dsfield":
                // rtnl_dsfield_a2n reads hex even without 0x; the kernel wants TOS bits only, no ECN.
                let v = try args.value(after: t)
                guard let n = parseNumber(v.text, hex: true), n <= 0xFF else { throw args.error(v, "invalid tos '\(v.text)'") }
                guard n & 0x03 == 0 else { throw args.error(v, "invalid tos '\(v.text)': ECN bits must be 0") }
                guard n & ~0x1C == 0 else { throw args.error(v, "invalid tos '\(v.text)'") }
                rule.tos = UInt8(n)
            case "not": rule.invert = true
            case "lookup", "table": action = try .lookup(table(args, args.value(after: t)))
            case "blackhole": action = .blackhole
            case "unreachable": action = .unreachable
            case "prohibit": action = .prohibit
            default: throw args.error(t, "unknown ip rule option '\(t.text)'")
            }
        }
        guard let action else {
            throw args.error(verb, "ip rule add needs an action (lookup TABLE, blackhole, unreachable or prohibit)")
        }
        rule.action = action
        // fib_default_rule_pref: one below the second rule's priority (0 if that is 0).
        rule.priority = priority ?? (rules.count >= 2 && rules[1].priority > 0 ? rules[1].priority - 1 : 0)
        // Inserted after every rule of lower or equal priority.
        let at = rules.firstIndex { $0.priority > rule.priority } ?? rules.count
        rules.insert(rule, at: at)
        cachedIndex = nil
    }

    // MARK: sysctl

    mutating func sysctl(_ args: inout Args, _ head: Arg) throws(Diagnostic) {
        var any = false
        while let t = args.next() {
            if t.text == "-w" || t.text == "-q" { continue }
            if t.text.hasPrefix("-") { throw args.error(t, "unsupported sysctl option '\(t.text)'") }
            var key = t.text, valueArg = t, value: Substring
            if let eq = t.text.firstIndex(of: "=") {
                key = String(t.text[..<eq])
                value = t.text[t.text.index(after: eq)...]
                valueArg.column += key.utf8.count + 1
            } else if let eq = args.next(), eq.text == "=", let v = args.next() {
                // `sysctl -w key = value`
                valueArg = v
                value = Substring(v.text)
            } else {
                throw args.error(t, "expected KEY=VALUE, got '\(t.text)'")
            }
            key = key.replacingSlashes
            guard key == "net.ipv4.ip_forward" || key == "net.ipv4.conf.all.forwarding" else {
                throw args.error(t, "unsupported sysctl '\(key)'")
            }
            guard value == "0" || value == "1" else {
                throw args.error(valueArg, "invalid value '\(value)' for \(key) (0 or 1)")
            }
            // Writing either key sets the other (inet_forward_change).
            ipForward = value == "1"
            any = true
        }
        if !any { throw args.error(head, "sysctl needs KEY=VALUE") }
    }
}

extension String {
    fileprivate var replacingSlashes: String { String(map { $0 == "/" ? "." : $0 }) }
}

let routeProtocols: [(String, UInt8)] = [
    ("redirect", 1), ("kernel", 2), ("boot", 3), ("static", 4), ("ra", 9), ("zebra", 11), ("bird", 12),
    ("dhcp", 16), ("babel", 42), ("bgp", 186), ("isis", 187), ("ospf", 188), ("rip", 189), ("eigrp", 192),
]

func routeProtocol(_ text: String) -> UInt8? {
    if let p = routeProtocols.first(where: { $0.0 == text }) { return p.1 }
    guard let n = parseNumber(text), n <= 255 else { return nil }
    return UInt8(n)
}

func tableName(_ t: UInt32) -> String {
    switch t {
    case RouteTableID.main: "main"
    case RouteTableID.local: "local"
    case RouteTableID.default: "default"
    default: String(t)
    }
}
