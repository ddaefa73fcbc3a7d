import Diagnostics
import Wire

/// Where a rule is being parsed: for messages and for the per-table checks iptables does.
public struct RuleContext: Sendable {
    public var file: String
    public var line: Int
    public var table: TableName
    public var chain: String
    /// VNS3 targets (COPY, LOOKUP) exist only in that dialect.
    public var vns3: Bool
    public init(file: String, line: Int, table: TableName, chain: String, vns3: Bool = false) {
        self.file = file; self.line = line; self.table = table; self.chain = chain; self.vns3 = vns3
    }
}

/// The target of a parsed rule before chain names are resolved.
public enum TargetRef: Equatable, Sendable {
    case target(RuleTarget)
    case chain(name: String, goto: Bool)
}

public struct ParsedRule: Sendable {
    public var match: RuleMatch
    public var target: TargetRef
    /// Column of the target name (for "chain does not exist" and hook errors).
    public var targetColumn: Int
}

/// Parses the options of one rule (everything after `-A CHAIN`), iptables style: core options,
/// `-m` modules with their options, `-j`/`-g` and the target's options; `!` before an option
/// (or, old style, before its value) inverts it where iptables allows.
public struct RuleParser {
    let t: [Token]
    let ctx: RuleContext
    var i = 0
    var invert = false
    var invertColumn = 0
    var m = RuleMatch()
    /// Column where each extension was loaded (parallel to `m.extensions`).
    var extColumns: [Int] = []
    var targetName: String?
    var targetColumn = 0
    var targetIsGoto = false
    var target: RuleTarget?
    // Target options collected until the end (some targets need several).
    var topts: [String: (Token, Bool)] = [:]
    var toptOrder: [String] = []

    public static func parse(_ tokens: [Token], context: RuleContext) throws(Diagnostic) -> ParsedRule {
        var p = RuleParser(t: tokens, ctx: context)
        return try p.run()
    }

    init(t: [Token], ctx: RuleContext) { self.t = t; self.ctx = ctx }

    func error(_ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: ctx.file, line: ctx.line, column: col, message: msg) }

    mutating func takeInvert() -> Bool { let v = invert; invert = false; return v }

    func noInvert(_ opt: Token) throws(Diagnostic) {
        if invert { throw error(invertColumn, "'!' is not allowed before '\(opt.text)'") }
    }

    /// The value after option `opt` (moving the cursor), accepting old-style `opt ! value`.
    mutating func value(_ opt: Token) throws(Diagnostic) -> Token {
        if i + 1 < t.count, t[i + 1].text == "!", !t[i + 1].quoted {
            guard !invert else { throw error(t[i + 1].column, "'!' given twice for '\(opt.text)'") }
            invert = true; invertColumn = t[i + 1].column
            i += 1
        }
        guard i + 1 < t.count else { throw error(opt.column, "option '\(opt.text)' needs a value") }
        i += 1
        return t[i]
    }

    mutating func run() throws(Diagnostic) -> ParsedRule {
        while i < t.count {
            let tok = t[i]
            if tok.text == "!" && !tok.quoted {
                guard !invert else { throw error(tok.column, "'!' given twice") }
                invert = true; invertColumn = tok.column
                i += 1
                continue
            }
            if targetName != nil, !isCoreOption(tok.text), try targetOption(tok) { i += 1; continue }
            try option(tok)
            i += 1
        }
        if invert { throw error(invertColumn, "'!' at the end of the rule negates nothing") }
        try finishTarget()
        try validateModules()
        let ref: TargetRef
        if let target { ref = .target(target) } else if let n = targetName { ref = .chain(name: n, goto: targetIsGoto) } else { ref = .target(.none) }
        return ParsedRule(match: m, target: ref, targetColumn: targetColumn)
    }

    func isCoreOption(_ s: String) -> Bool {
        ["-s", "--source", "--src", "-d", "--destination", "--dst", "-p", "--protocol", "-i", "--in-interface",
         "-o", "--out-interface", "-m", "--match", "-j", "--jump", "-g", "--goto", "-f", "--fragment"].contains(s)
    }

    mutating func option(_ tok: Token) throws(Diagnostic) {
        switch tok.text {
        case "-s", "--source", "--src", "-d", "--destination", "--dst":
            let v = try value(tok)
            guard let p = IPv4Prefix(v.text) else {
                if v.text.contains(":") { throw error(v.column, "IPv6 address '\(v.text)': this is an ip6tables rule set, and Sluice handles IPv4") }
                throw error(v.column, "bad address '\(v.text)' (expected a.b.c.d[/len])")
            }
            let isSource = tok.text == "-s" || tok.text == "--source" || tok.text == "--src"
            if isSource ? m.source != nil : m.destination != nil { throw error(tok.column, "'\(tok.text)' given twice") }
            if isSource { m.source = Inverted(p, invert: takeInvert()) } else { m.destination = Inverted(p, invert: takeInvert()) }
        case "-p", "--protocol":
            let v = try value(tok)
            guard m.proto == nil else { throw error(tok.column, "'-p' given twice") }
            guard let p = ProtocolNames.parse(v.text) else { throw error(v.column, "unknown protocol '\(v.text)'") }
            if p == 58 { throw error(v.column, "protocol '\(v.text)' is ICMPv6: this is an ip6tables rule set, and Sluice handles IPv4") }
            if p == 0 {
                if invert { throw error(invertColumn, "'! -p all' matches nothing; refused") }
            } else {
                m.proto = Inverted(p, invert: takeInvert())
            }
        case "-i", "--in-interface", "-o", "--out-interface":
            let v = try value(tok)
            let isIn = tok.text == "-i" || tok.text == "--in-interface"
            guard !v.text.isEmpty, v.text.utf8.count <= 15 else { throw error(v.column, "bad interface name '\(v.text)'") }
            if isIn {
                if ["OUTPUT", "POSTROUTING"].contains(ctx.chain) { throw error(tok.column, "can't use -i with \(ctx.chain)") }
                m.inInterface = Inverted(InterfaceSpec(v.text), invert: takeInvert())
            } else {
                if ["INPUT", "PREROUTING"].contains(ctx.chain) { throw error(tok.column, "can't use -o with \(ctx.chain)") }
                m.outInterface = Inverted(InterfaceSpec(v.text), invert: takeInvert())
            }
        case "-f", "--fragment":
            m.fragment = !takeInvert()
        case "-m", "--match":
            try noInvert(tok)
            guard i + 1 < t.count else { throw error(tok.column, "'-m' needs a module name") }
            i += 1
            try load(t[i])
        case "-j", "--jump", "-g", "--goto":
            try noInvert(tok)
            guard targetName == nil else { throw error(tok.column, "more than one target") }
            guard i + 1 < t.count else { throw error(tok.column, "'\(tok.text)' needs a target") }
            i += 1
            targetName = t[i].text
            targetColumn = t[i].column
            targetIsGoto = tok.text == "-g" || tok.text == "--goto"
            if extensionTargets.contains(t[i].text) && targetOptions[t[i].text] == nil {
                throw error(t[i].column, "unsupported target '\(t[i].text)'")
            }
            if targetIsGoto && (builtinTargets.contains(t[i].text) || extensionTargets.contains(t[i].text)) {
                throw error(t[i].column, "cannot goto '\(t[i].text)': -g takes a user chain")
            }
        default:
            if tok.text.hasPrefix("-") && tok.text.count > 1 {
                if try moduleOption(tok) { return }
                if ["--sport", "--dport", "--source-port", "--destination-port", "--tcp-flags", "--syn", "--icmp-type"].contains(tok.text) {
                    throw error(tok.column, "unknown option '\(tok.text)' (needs '-p tcp', '-p udp' or '-p icmp' before it, or its -m module)")
                }
                throw error(tok.column, "unsupported option '\(tok.text)'")
            }
            throw error(tok.column, "unexpected '\(tok.text)'")
        }
    }

    // MARK: - Match modules

    mutating func load(_ mod: Token) throws(Diagnostic) {
        let e: MatchExtension
        switch mod.text {
        case "tcp": e = .tcp(TCPMatch())
        case "udp": e = .udp(UDPMatch())
        case "icmp": e = .icmp(nil)
        case "multiport": e = .multiport(MultiportMatch(direction: .either, ports: [], invert: false))
        case "iprange": e = .iprange(IPRangeMatch())
        case "addrtype": e = .addrtype(AddrTypeMatch())
        case "mark": e = .mark(Inverted(MarkMask(value: 0, mask: 0)))
        case "comment": e = .comment("")
        case "length": e = .length(Inverted(PortRange(0, 0xFFFF)))
        case "ttl": e = .ttl(TTLMatch(comparison: .eq, value: 0, invert: false))
        case "statistic": e = .statistic(StatisticMatch(mode: .nth(every: 0, packet: 0), invert: false))
        case "limit": e = .limit(LimitMatch())
        case "recent": e = .recent(RecentMatch(command: .set, invert: false))
        case "mac": e = .mac(Inverted(0))
        case "pkttype": e = .pkttype(Inverted(.unicast))
        case "set": e = .set(SetMatch(name: "", directions: [], invert: false))
        case "conntrack": e = .conntrack(ConntrackMatch())
        case "state": e = .state(Inverted(CtState()))
        case "connmark": e = .connmark(Inverted(MarkMask(value: 0, mask: 0)))
        case "physdev": e = .physdevIsBridged(invert: false)
        case "policy": e = .policy(directionIn: true, ipsec: false, invert: false)
        case "nfacct": e = .nfacct("")
        case "socket": e = .socket(transparent: false, nowildcard: false, restoreSkmark: false)
        case "owner": e = .owner(uid: nil, gid: nil, socketExists: nil)
        case "rt", "hl", "icmp6", "ipv6header", "frag", "hbh", "dst", "mh", "eui64":
            throw error(mod.column, "match '\(mod.text)' is IPv6-only: this is an ip6tables rule set, and Sluice handles IPv4")
        default: throw error(mod.column, "unsupported match '\(mod.text)'")
        }
        m.extensions.append(e)
        extColumns.append(mod.column)
        seen.append([])
    }

    /// Options given per loaded module (to require mandatory ones at the end).
    var seen: [Set<String>] = []

    /// Offers `opt` to the loaded modules, newest first, then to the protocol's implicit module
    /// (`-p tcp --dport 22` loads tcp, as iptables does).
    mutating func moduleOption(_ opt: Token) throws(Diagnostic) -> Bool {
        var k = m.extensions.count - 1
        while k >= 0 {
            if try apply(opt, to: k) { seen[k].insert(opt.text); return true }
            k -= 1
        }
        if let p = m.proto, !p.invert {
            let implicit: MatchExtension?
            switch p.value {
            case IPProtocol.tcp: implicit = .tcp(TCPMatch())
            case IPProtocol.udp: implicit = .udp(UDPMatch())
            case IPProtocol.icmp: implicit = .icmp(nil)
            default: implicit = nil
            }
            if let implicit, !m.extensions.contains(where: { $0.moduleName == implicit.moduleName }) {
                m.extensions.append(implicit); extColumns.append(opt.column); seen.append([])
                if try apply(opt, to: m.extensions.count - 1) { seen[m.extensions.count - 1].insert(opt.text); return true }
                m.extensions.removeLast(); extColumns.removeLast(); seen.removeLast()
            }
        }
        return false
    }

    mutating func apply(_ opt: Token, to k: Int) throws(Diagnostic) -> Bool {
        let o = opt.text
        switch m.extensions[k] {
        case .tcp(var x):
            switch o {
            case "--sport", "--source-port": let v = try value(opt); x.sourcePort = Inverted(try portRange(v), invert: takeInvert())
            case "--dport", "--destination-port": let v = try value(opt); x.destinationPort = Inverted(try portRange(v), invert: takeInvert())
            case "--syn":
                x.flags = Inverted(FlagsSpec(mask: 0x17, comparison: 0x02), invert: takeInvert())
            case "--tcp-flags":
                let inv = takeInvert()
                let a = try value(opt)
                guard i + 1 < t.count else { throw error(opt.column, "--tcp-flags needs a mask and a comparison") }
                i += 1
                x.flags = Inverted(FlagsSpec(mask: try tcpFlags(a), comparison: try tcpFlags(t[i])), invert: inv || takeInvert())
            case "--tcp-option":
                let v = try value(opt)
                guard let n = UInt8(v.text) else { throw error(v.column, "bad TCP option '\(v.text)'") }
                x.option = Inverted(n, invert: takeInvert())
            default: return false
            }
            m.extensions[k] = .tcp(x)
        case .udp(var x):
            switch o {
            case "--sport", "--source-port": let v = try value(opt); x.sourcePort = Inverted(try portRange(v), invert: takeInvert())
            case "--dport", "--destination-port": let v = try value(opt); x.destinationPort = Inverted(try portRange(v), invert: takeInvert())
            default: return false
            }
            m.extensions[k] = .udp(x)
        case .icmp:
            guard o == "--icmp-type" else { return false }
            let v = try value(opt)
            guard let spec = ICMPNames.parse(v.text) else { throw error(v.column, "unknown ICMP type '\(v.text)'") }
            m.extensions[k] = .icmp(Inverted(spec, invert: takeInvert()))
        case .multiport(var x):
            switch o {
            case "--sports", "--source-ports": x.direction = .source
            case "--dports", "--destination-ports": x.direction = .destination
            case "--ports": x.direction = .either
            default: return false
            }
            let v = try value(opt)
            x.invert = takeInvert()
            x.ports = []
            var count = 0
            for part in v.text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let r = parsePortRange(String(part)) else { throw error(v.column, "bad port '\(part)' in '\(v.text)'") }
                count += r.lo == r.hi ? 1 : 2
                x.ports.append(r)
            }
            guard count <= 15 else { throw error(v.column, "too many ports specified (15 at most, a range counts 2)") }
            m.extensions[k] = .multiport(x)
        case .iprange(var x):
            guard o == "--src-range" || o == "--dst-range" else { return false }
            let v = try value(opt)
            let parts = v.text.split(separator: "-")
            guard parts.count == 2, let a = IPv4Address(parts[0]), let b = IPv4Address(parts[1]) else {
                throw error(v.column, "bad address range '\(v.text)' (expected a.b.c.d-a.b.c.e)")
            }
            let r = Inverted(AddressRange(lo: a.value, hi: b.value), invert: takeInvert())
            if o == "--src-range" { x.source = r } else { x.destination = r }
            m.extensions[k] = .iprange(x)
        case .addrtype(var x):
            switch o {
            case "--src-type", "--dst-type":
                let v = try value(opt)
                var bits: UInt16 = 0
                for name in v.text.split(separator: ",") {
                    guard let ty = AddressType(rawValue: String(name).uppercased()) else { throw error(v.column, "unknown address type '\(name)'") }
                    bits |= ty.bit
                }
                if o == "--src-type" { x.sourceTypes = bits; x.sourceInvert = takeInvert() } else { x.destinationTypes = bits; x.destinationInvert = takeInvert() }
            case "--limit-iface-in": try noInvert(opt); x.limitIfaceIn = true
            case "--limit-iface-out": try noInvert(opt); x.limitIfaceOut = true
            default: return false
            }
            m.extensions[k] = .addrtype(x)
        case .mark:
            guard o == "--mark" else { return false }
            let v = try value(opt)
            m.extensions[k] = .mark(Inverted(try markMask(v), invert: takeInvert()))
        case .connmark:
            guard o == "--mark" else { return false }
            let v = try value(opt)
            m.extensions[k] = .connmark(Inverted(try markMask(v), invert: takeInvert()))
        case .comment:
            guard o == "--comment" else { return false }
            try noInvert(opt)
            let v = try value(opt)
            guard v.text.utf8.count <= 256 else { throw error(v.column, "comment longer than 256 bytes") }
            m.extensions[k] = .comment(v.text)
        case .length:
            guard o == "--length" else { return false }
            let v = try value(opt)
            guard let r = parseNumberRange(v.text) else { throw error(v.column, "bad length '\(v.text)'") }
            m.extensions[k] = .length(Inverted(r, invert: takeInvert()))
        case .ttl:
            guard let c = TTLComparison(rawValue: o) else { return false }
            let inv = takeInvert()
            let v = try value(opt)
            guard let n = UInt8(v.text) else { throw error(v.column, "bad TTL '\(v.text)'") }
            if inv && c != .eq { throw error(invertColumn, "'!' is only allowed with --ttl-eq") }
            m.extensions[k] = .ttl(TTLMatch(comparison: c, value: n, invert: inv))
        case .statistic(var x):
            switch o {
            case "--mode":
                try noInvert(opt)
                let v = try value(opt)
                switch v.text {
                case "random": if case .random = x.mode {} else { x.mode = .random(probability: 1, threshold: 0x8000_0000) }
                case "nth": if case .nth = x.mode {} else { x.mode = .nth(every: 0, packet: 0) }
                default: throw error(v.column, "bad statistic mode '\(v.text)' (random or nth)")
                }
            case "--probability":
                x.invert = takeInvert() || x.invert
                let v = try value(opt)
                guard let p = Double(v.text), p >= 0, p <= 1 else { throw error(v.column, "bad probability '\(v.text)' (0 to 1)") }
                // libxt_statistic: lround(0x80000000 * probability).
                x.mode = .random(probability: p, threshold: UInt32((0x8000_0000 as Double * p).rounded()))
            case "--every", "--packet":
                x.invert = takeInvert() || x.invert
                let v = try value(opt)
                guard let n = UInt32(v.text) else { throw error(v.column, "bad number '\(v.text)'") }
                var (every, packet): (UInt32, UInt32) = (0, 0)
                if case .nth(let e, let pk) = x.mode { every = e; packet = pk }
                if o == "--every" {
                    guard n >= 1 else { throw error(v.column, "--every must be at least 1") }
                    every = n
                } else { packet = n }
                x.mode = .nth(every: every, packet: packet)
            default: return false
            }
            m.extensions[k] = .statistic(x)
        case .limit(var x):
            switch o {
            case "--limit":
                try noInvert(opt)
                let v = try value(opt)
                let parts = v.text.split(separator: "/")
                guard let n = UInt32(parts[0]), n > 0, parts.count <= 2 else { throw error(v.column, "bad rate '\(v.text)'") }
                var unit = "second"
                if parts.count == 2 { unit = String(parts[1]) }
                let secs: UInt32
                switch unit {
                case "s", "sec", "second": secs = 1; unit = "second"
                case "m", "min", "minute": secs = 60; unit = "minute"
                case "h", "hour": secs = 3600; unit = "hour"
                case "d", "day": secs = 86400; unit = "day"
                default: throw error(v.column, "bad rate unit '\(unit)' (second, minute, hour, day)")
                }
                x.count = n; x.perSeconds = secs; x.unitName = unit
            case "--limit-burst":
                try noInvert(opt)
                let v = try value(opt)
                guard let n = UInt32(v.text), n >= 1, n <= 10000 else { throw error(v.column, "bad burst '\(v.text)'") }
                x.burst = n
            default: return false
            }
            m.extensions[k] = .limit(x)
        case .recent(var x):
            switch o {
            case "--set", "--rcheck", "--update", "--remove":
                if seen[k].contains(where: { ["--set", "--rcheck", "--update", "--remove"].contains($0) }) {
                    throw error(opt.column, "recent: only one of --set, --rcheck, --update, --remove")
                }
                x.command = RecentCommand(rawValue: o)!
                x.invert = takeInvert()
            case "--name":
                try noInvert(opt)
                x.name = try value(opt).text
            case "--seconds":
                try noInvert(opt)
                let v = try value(opt)
                guard let n = UInt32(v.text) else { throw error(v.column, "bad seconds '\(v.text)'") }
                x.seconds = n
            case "--hitcount":
                try noInvert(opt)
                let v = try value(opt)
                guard let n = UInt32(v.text) else { throw error(v.column, "bad hitcount '\(v.text)'") }
                x.hitcount = n
            case "--reap": try noInvert(opt); x.reap = true
            case "--rttl": try noInvert(opt); x.rttl = true
            case "--rsource": try noInvert(opt); x.useDestination = false
            case "--rdest": try noInvert(opt); x.useDestination = true
            case "--mask":
                try noInvert(opt)
                let v = try value(opt)
                guard let a = IPv4Address(v.text) else { throw error(v.column, "bad mask '\(v.text)'") }
                x.mask = a.value
            default: return false
            }
            m.extensions[k] = .recent(x)
        case .mac:
            guard o == "--mac-source" else { return false }
            let v = try value(opt)
            let parts = v.text.split(separator: ":")
            var mac: UInt64 = 0
            guard parts.count == 6 else { throw error(v.column, "bad MAC address '\(v.text)'") }
            for p in parts {
                guard p.count <= 2, let b = UInt8(p, radix: 16) else { throw error(v.column, "bad MAC address '\(v.text)'") }
                mac = mac << 8 | UInt64(b)
            }
            m.extensions[k] = .mac(Inverted(mac, invert: takeInvert()))
        case .pkttype:
            guard o == "--pkt-type" else { return false }
            let v = try value(opt)
            guard let ty = PacketType(rawValue: v.text.lowercased()) else { throw error(v.column, "bad packet type '\(v.text)' (unicast, broadcast, multicast)") }
            m.extensions[k] = .pkttype(Inverted(ty, invert: takeInvert()))
        case .set:
            guard o == "--match-set" else { return false }
            let inv = takeInvert()
            let v = try value(opt)
            guard i + 1 < t.count else { throw error(opt.column, "--match-set needs a set name and src/dst flags") }
            i += 1
            var dirs: [SetDirection] = []
            for d in t[i].text.split(separator: ",") {
                guard let dd = SetDirection(rawValue: String(d)) else { throw error(t[i].column, "bad set flag '\(d)' (src or dst)") }
                dirs.append(dd)
            }
            m.extensions[k] = .set(SetMatch(name: v.text, directions: dirs, invert: inv || takeInvert()))
        case .state:
            guard o == "--state" else { return false }
            let v = try value(opt)
            m.extensions[k] = .state(Inverted(try ctStates(v), invert: takeInvert()))
        case .conntrack(var x):
            switch o {
            case "--ctstate": let v = try value(opt); x.state = Inverted(try ctStates(v), invert: takeInvert())
            case "--ctstatus":
                let v = try value(opt)
                var st = CtStatus()
                for n in v.text.split(separator: ",") {
                    guard let e = CtStatus.names.first(where: { $0.0 == n.uppercased() }) else { throw error(v.column, "bad ctstatus '\(n)'") }
                    st.formUnion(e.1)
                }
                x.status = Inverted(st, invert: takeInvert())
            case "--ctproto":
                let v = try value(opt)
                guard let p = ProtocolNames.parse(v.text) else { throw error(v.column, "unknown protocol '\(v.text)'") }
                x.proto = Inverted(p, invert: takeInvert())
            case "--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst":
                let v = try value(opt)
                guard let p = IPv4Prefix(v.text) else { throw error(v.column, "bad address '\(v.text)'") }
                let val = Inverted(p, invert: takeInvert())
                switch o {
                case "--ctorigsrc": x.origSource = val
                case "--ctorigdst": x.origDestination = val
                case "--ctreplsrc": x.replySource = val
                default: x.replyDestination = val
                }
            case "--ctorigsrcport", "--ctorigdstport", "--ctreplsrcport", "--ctrepldstport":
                let v = try value(opt)
                let val = Inverted(try portRange(v), invert: takeInvert())
                switch o {
                case "--ctorigsrcport": x.origSourcePort = val
                case "--ctorigdstport": x.origDestinationPort = val
                case "--ctreplsrcport": x.replySourcePort = val
                default: x.replyDestinationPort = val
                }
            case "--ctdir":
                try noInvert(opt)
                let v = try value(opt)
                switch v.text.uppercased() {
                case "ORIGINAL": x.directionReply = false
                case "REPLY": x.directionReply = true
                default: throw error(v.column, "bad --ctdir '\(v.text)' (ORIGINAL or REPLY)")
                }
            default: return false
            }
            m.extensions[k] = .conntrack(x)
        case .physdevIsBridged:
            guard o == "--physdev-is-bridged" else {
                if o.hasPrefix("--physdev") { throw error(opt.column, "unsupported option '\(o)' (only --physdev-is-bridged: Sluice models no bridges)") }
                return false
            }
            m.extensions[k] = .physdevIsBridged(invert: takeInvert())
        case .policy(var dirIn, var ipsec, var inv):
            switch o {
            case "--dir":
                try noInvert(opt)
                let v = try value(opt)
                guard v.text == "in" || v.text == "out" else { throw error(v.column, "bad --dir '\(v.text)' (in or out)") }
                dirIn = v.text == "in"
            case "--pol":
                inv = takeInvert() || inv
                let v = try value(opt)
                guard v.text == "none" || v.text == "ipsec" else { throw error(v.column, "bad --pol '\(v.text)' (none or ipsec)") }
                ipsec = v.text == "ipsec"
            default:
                if o.hasPrefix("--") && ["--strict", "--reqid", "--spi", "--proto", "--mode", "--tunnel-src", "--tunnel-dst", "--next"].contains(o) {
                    throw error(opt.column, "unsupported option '\(o)' (policy: only --dir and --pol; no IPsec in the model)")
                }
                return false
            }
            m.extensions[k] = .policy(directionIn: dirIn, ipsec: ipsec, invert: inv)
        case .nfacct:
            guard o == "--nfacct-name" else { return false }
            try noInvert(opt)
            let v = try value(opt)
            guard !v.text.isEmpty, v.text.utf8.count <= 31 else { throw error(v.column, "bad accounting object name '\(v.text)'") }
            m.extensions[k] = .nfacct(v.text)
        case .socket(var tr, var nw, var rs):
            switch o {
            case "--transparent": tr = true
            case "--nowildcard": nw = true
            case "--restore-skmark": rs = true
            default: return false
            }
            try noInvert(opt)
            m.extensions[k] = .socket(transparent: tr, nowildcard: nw, restoreSkmark: rs)
        case .owner(var uid, var gid, var exists):
            switch o {
            case "--uid-owner", "--gid-owner":
                let v = try value(opt)
                let parts = v.text.split(separator: "-")
                guard parts.count >= 1, parts.count <= 2, let a = UInt32(parts[0]), let b = parts.count == 2 ? UInt32(parts[1]) : a, a <= b else {
                    throw error(v.column, "bad id '\(v.text)' (numeric ids only)")
                }
                let r = Inverted(ClosedRangeU32(a, b), invert: takeInvert())
                if o == "--uid-owner" { uid = r } else { gid = r }
            case "--socket-exists": exists = !takeInvert()
            default: return false
            }
            m.extensions[k] = .owner(uid: uid, gid: gid, socketExists: exists)
        }
        return true
    }

    mutating func validateModules() throws(Diagnostic) {
        for (k, e) in m.extensions.enumerated() {
            let col = extColumns[k]
            switch e {
            case .tcp, .udp, .icmp:
                let want: UInt8 = e.moduleName == "tcp" ? IPProtocol.tcp : e.moduleName == "udp" ? IPProtocol.udp : IPProtocol.icmp
                guard let p = m.proto, !p.invert, p.value == want else {
                    throw error(col, "\(e.moduleName) match requires '-p \(e.moduleName)'")
                }
            case .multiport(let x):
                guard let p = m.proto, !p.invert, [IPProtocol.tcp, IPProtocol.udp, IPProtocol.sctp, 136, 33].contains(p.value) else {
                    throw error(col, "multiport needs '-p tcp', '-p udp', '-p udplite', '-p sctp' or '-p dccp'")
                }
                if x.ports.isEmpty { throw error(col, "multiport needs --sports, --dports or --ports") }
            case .statistic(let x):
                if case .nth(let every, _) = x.mode, every == 0 { throw error(col, "statistic needs --mode random --probability P or --mode nth --every N") }
                if case .random = x.mode, !seen[k].contains("--probability") { throw error(col, "statistic --mode random needs --probability") }
            case .recent:
                if !seen[k].contains(where: { ["--set", "--rcheck", "--update", "--remove"].contains($0) }) {
                    throw error(col, "recent needs one of --set, --rcheck, --update, --remove")
                }
            case .mark, .connmark:
                if !seen[k].contains("--mark") { throw error(col, "\(e.moduleName) needs --mark") }
            case .set(let x):
                if x.name.isEmpty { throw error(col, "set needs --match-set NAME src|dst") }
            case .state:
                if !seen[k].contains("--state") { throw error(col, "state needs --state") }
            case .ttl:
                if seen[k].isEmpty { throw error(col, "ttl needs --ttl-eq, --ttl-gt or --ttl-lt") }
            case .mac:
                if seen[k].isEmpty { throw error(col, "mac needs --mac-source") }
            case .pkttype:
                if seen[k].isEmpty { throw error(col, "pkttype needs --pkt-type") }
            case .iprange(let x):
                if x.source == nil && x.destination == nil { throw error(col, "iprange needs --src-range or --dst-range") }
            case .addrtype(let x):
                if x.limitIfaceIn && x.limitIfaceOut { throw error(col, "addrtype: --limit-iface-in and --limit-iface-out are exclusive") }
                if x.limitIfaceIn && ["OUTPUT", "POSTROUTING"].contains(ctx.chain) { throw error(col, "addrtype --limit-iface-in is not valid in \(ctx.chain)") }
                if x.limitIfaceOut && ["INPUT", "PREROUTING"].contains(ctx.chain) { throw error(col, "addrtype --limit-iface-out is not valid in \(ctx.chain)") }
            case .physdevIsBridged:
                if seen[k].isEmpty { throw error(col, "physdev needs --physdev-is-bridged") }
            case .policy:
                if !seen[k].contains("--dir") || !seen[k].contains("--pol") { throw error(col, "policy needs --dir and --pol") }
            case .nfacct(let n):
                if n.isEmpty { throw error(col, "nfacct needs --nfacct-name") }
            case .owner:
                if seen[k].isEmpty { throw error(col, "owner needs --uid-owner, --gid-owner or --socket-exists") }
                if !["OUTPUT", "POSTROUTING"].contains(ctx.chain) && ctx.chain.uppercased() == ctx.chain && ctx.table.builtinChains.contains(ctx.chain) {
                    throw error(col, "owner is only valid in OUTPUT and POSTROUTING")
                }
            default: break
            }
        }
    }

    // MARK: - Targets

    /// Options of the target named by `-j`, collected and interpreted in `finishTarget`.
    mutating func targetOption(_ opt: Token) throws(Diagnostic) -> Bool {
        guard let name = targetName, let known = targetOptions[name] else { return false }
        guard opt.text.hasPrefix("--") else { return false }
        guard let arity = known[opt.text] else {
            // A module option after -j (iptables allows that): let the modules try first.
            if try moduleOption(opt) { return true }
            throw error(opt.column, "unknown option '\(opt.text)' for target '\(name)'")
        }
        try noInvert(opt)
        var v = opt
        if arity == 1 {
            guard i + 1 < t.count else { throw error(opt.column, "option '\(opt.text)' needs a value") }
            i += 1
            v = t[i]
        }
        if topts[opt.text] != nil { throw error(opt.column, "'\(opt.text)' given twice") }
        topts[opt.text] = (v, arity == 1)
        toptOrder.append(opt.text)
        return true
    }

    func tval(_ o: String) -> Token? { topts[o].map { $0.0 } }

    mutating func finishTarget() throws(Diagnostic) {
        guard let name = targetName else { return }
        let col = targetColumn
        func only(_ tables: [TableName]) throws(Diagnostic) {
            guard tables.contains(ctx.table) else {
                throw error(col, "target '\(name)' is only valid in the \(tables.map(\.rawValue).joined(separator: "/")) table")
            }
        }
        switch name {
        case "ACCEPT": target = .accept
        case "DROP": target = .drop
        case "RETURN": target = .return
        case "REJECT":
            try only([.filter])
            var with = RejectWith.portUnreachable
            if let v = tval("--reject-with") {
                let aliases: [String: RejectWith] = ["icmp-net-unreachable": .netUnreachable, "net-unreach": .netUnreachable,
                                                     "icmp-host-unreachable": .hostUnreachable, "host-unreach": .hostUnreachable,
                                                     "icmp-port-unreachable": .portUnreachable, "port-unreach": .portUnreachable,
                                                     "icmp-proto-unreachable": .protoUnreachable, "proto-unreach": .protoUnreachable,
                                                     "icmp-net-prohibited": .netProhibited, "net-prohib": .netProhibited,
                                                     "icmp-host-prohibited": .hostProhibited, "host-prohib": .hostProhibited,
                                                     "icmp-admin-prohibited": .adminProhibited, "admin-prohib": .adminProhibited,
                                                     "tcp-reset": .tcpReset, "tcp-rst": .tcpReset]
                guard let w = aliases[v.text] else { throw error(v.column, "unknown reject type '\(v.text)'") }
                with = w
                if w == .tcpReset, m.proto?.value != IPProtocol.tcp || m.proto?.invert == true {
                    throw error(v.column, "--reject-with tcp-reset needs '-p tcp'")
                }
            }
            target = .reject(with)
        case "LOG", "NFLOG":
            var o = LogOptions()
            if name == "LOG" {
                if let v = tval("--log-prefix") {
                    guard v.text.utf8.count <= 29 else { throw error(v.column, "--log-prefix longer than 29 characters") }
                    o.prefix = v.text
                }
                if let v = tval("--log-level") {
                    let levels = ["emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"]
                    if let n = UInt8(v.text), n <= 7 { o.level = n } else if let n = levels.firstIndex(of: v.text) { o.level = UInt8(n) } else if v.text == "err" { o.level = 3 } else if v.text == "warn" { o.level = 4 } else {
                        throw error(v.column, "bad log level '\(v.text)'")
                    }
                }
                o.tcpSequence = topts["--log-tcp-sequence"] != nil
                o.tcpOptions = topts["--log-tcp-options"] != nil
                o.ipOptions = topts["--log-ip-options"] != nil
                o.uid = topts["--log-uid"] != nil
            } else {
                o.nflogGroup = 0
                if let v = tval("--nflog-group") {
                    guard let n = UInt16(v.text) else { throw error(v.column, "bad group '\(v.text)'") }
                    o.nflogGroup = n
                }
                if let v = tval("--nflog-prefix") { o.prefix = v.text }
                if let v = tval("--nflog-range") ?? tval("--nflog-size") {
                    guard let n = UInt32(v.text) else { throw error(v.column, "bad size '\(v.text)'") }
                    o.nflogRange = n
                }
                if let v = tval("--nflog-threshold") {
                    guard let n = UInt16(v.text) else { throw error(v.column, "bad threshold '\(v.text)'") }
                    o.nflogThreshold = n
                }
            }
            target = .log(o)
        case "MARK":
            let ops = ["--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark"].filter { topts[$0] != nil }
            guard ops.count == 1 else { throw error(col, "MARK needs exactly one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark") }
            let v = tval(ops[0])!
            let mm = try markMask(v)
            let hasMask = v.text.contains("/")
            switch ops[0] {
            case "--set-xmark": target = .mark(value: mm.value, mask: mm.mask)
            case "--set-mark": target = .mark(value: mm.value, mask: hasMask ? mm.mask | mm.value : 0xFFFF_FFFF)
            case "--and-mark": target = .mark(value: 0, mask: ~mm.value)
            case "--or-mark": target = .mark(value: mm.value, mask: mm.value)
            default: target = .mark(value: mm.value, mask: 0)
            }
        case "CONNMARK":
            var nf: UInt32 = 0xFFFF_FFFF, ct: UInt32 = 0xFFFF_FFFF
            if let v = tval("--mask") { nf = try markValue(v); ct = nf }
            if let v = tval("--nfmask") { nf = try markValue(v) }
            if let v = tval("--ctmask") { ct = try markValue(v) }
            if topts["--save-mark"] != nil {
                target = .connmark(.save(nfmask: nf, ctmask: ct))
            } else if topts["--restore-mark"] != nil {
                target = .connmark(.restore(nfmask: nf, ctmask: ct))
            } else if let v = tval("--set-xmark") {
                let mm = try markMask(v); target = .connmark(.setXMark(value: mm.value, mask: mm.mask))
            } else if let v = tval("--set-mark") {
                let mm = try markMask(v); target = .connmark(.setXMark(value: mm.value, mask: v.text.contains("/") ? mm.mask | mm.value : 0xFFFF_FFFF))
            } else if let v = tval("--or-mark") {
                let mm = try markValue(v); target = .connmark(.setXMark(value: mm, mask: mm))
            } else if let v = tval("--and-mark") {
                let mm = try markValue(v); target = .connmark(.setXMark(value: 0, mask: ~mm))
            } else if let v = tval("--xor-mark") {
                let mm = try markValue(v); target = .connmark(.setXMark(value: mm, mask: 0))
            } else {
                throw error(col, "CONNMARK needs --set-xmark, --set-mark, --save-mark or --restore-mark")
            }
        case "DNAT", "SNAT":
            try only([.nat])
            let opt = name == "DNAT" ? "--to-destination" : "--to-source"
            guard let v = tval(opt) ?? tval("--to") else { throw error(col, "\(name) needs \(opt)") }
            var flags = NATFlags()
            flags.random = topts["--random"] != nil
            flags.randomFully = topts["--random-fully"] != nil
            flags.persistent = topts["--persistent"] != nil
            let r = try natRange(v, needAddress: true)
            target = name == "DNAT" ? .dnat([r], flags) : .snat([r], flags)
        case "MASQUERADE", "REDIRECT":
            try only([.nat])
            var flags = NATFlags()
            flags.random = topts["--random"] != nil
            flags.randomFully = topts["--random-fully"] != nil
            var ports: NATRange? = nil
            if let v = tval("--to-ports") { ports = try natPorts(v) }
            target = name == "MASQUERADE" ? .masquerade(ports: ports, flags) : .redirect(ports: ports, flags)
        case "NETMAP":
            try only([.nat])
            guard let v = tval("--to") else { throw error(col, "NETMAP needs --to a.b.c.d/len") }
            guard let p = IPv4Prefix(v.text) else { throw error(v.column, "bad prefix '\(v.text)'") }
            target = .netmap(p)
        case "TTL":
            try only([.mangle])
            let ops = ["--ttl-set", "--ttl-dec", "--ttl-inc"].filter { topts[$0] != nil }
            guard ops.count == 1, let v = tval(ops[0]), let n = UInt8(v.text) else { throw error(col, "TTL needs one of --ttl-set, --ttl-dec, --ttl-inc with a value 0-255") }
            target = .ttl(ops[0] == "--ttl-set" ? .set(n) : ops[0] == "--ttl-dec" ? .dec(n) : .inc(n))
        case "DSCP":
            try only([.mangle])
            if let v = tval("--set-dscp") {
                guard let n = v.text.hasPrefix("0x") ? UInt8(v.text.dropFirst(2), radix: 16) : UInt8(v.text), n <= 63 else { throw error(v.column, "bad DSCP '\(v.text)'") }
                target = .dscp(n)
            } else if let v = tval("--set-dscp-class") {
                let classes: [String: UInt8] = ["CS0": 0, "CS1": 8, "CS2": 16, "CS3": 24, "CS4": 32, "CS5": 40, "CS6": 48, "CS7": 56, "BE": 0,
                                                "AF11": 10, "AF12": 12, "AF13": 14, "AF21": 18, "AF22": 20, "AF23": 22, "AF31": 26, "AF32": 28,
                                                "AF33": 30, "AF41": 34, "AF42": 36, "AF43": 38, "EF": 46]
                guard let n = classes[v.text.uppercased()] else { throw error(v.column, "bad DSCP class '\(v.text)'") }
                target = .dscp(n)
            } else { throw error(col, "DSCP needs --set-dscp or --set-dscp-class") }
        case "TCPMSS":
            if let v = tval("--set-mss") {
                guard let n = UInt16(v.text) else { throw error(v.column, "bad MSS '\(v.text)'") }
                target = .tcpmss(.set(n))
            } else if topts["--clamp-mss-to-pmtu"] != nil {
                target = .tcpmss(.clampToPMTU)
            } else { throw error(col, "TCPMSS needs --set-mss or --clamp-mss-to-pmtu") }
            guard m.proto?.value == IPProtocol.tcp, m.proto?.invert == false else { throw error(col, "TCPMSS needs '-p tcp'") }
        case "CHECKSUM":
            try only([.mangle])
            guard topts["--checksum-fill"] != nil else { throw error(col, "CHECKSUM needs --checksum-fill") }
            target = .checksumFill
        case "NOTRACK":
            try only([.raw])
            target = .notrack
        case "CT":
            try only([.raw])
            guard topts["--notrack"] != nil else { throw error(col, "unsupported target 'CT' (only CT --notrack is implemented)") }
            target = .notrack
        case "TPROXY":
            try only([.mangle])
            guard let v = tval("--on-port"), let port = UInt16(v.text) else { throw error(col, "TPROXY needs --on-port PORT") }
            var ip: UInt32? = nil
            if let a = tval("--on-ip") {
                guard let addr = IPv4Address(a.text) else { throw error(a.column, "bad address '\(a.text)'") }
                ip = addr.value
            }
            var tmark: MarkMask? = nil
            if let mv = tval("--tproxy-mark") { tmark = try markMask(mv) }
            target = .tproxy(TProxyOptions(onPort: port, onIP: ip, mark: tmark))
        case "TEE":
            // xt_TEE: mangle only; the clone goes to --gateway as the next hop.
            try only([.mangle])
            guard let v = tval("--gateway"), let a = IPv4Address(v.text) else { throw error(col, "TEE needs --gateway IP") }
            if let o = tval("--oif") { throw error(o.column, "TEE --oif is not supported (the clone leaves by the route to --gateway)") }
            target = .tee(gateway: a.value)
        case "COPY", "LOOKUP":
            guard ctx.vns3 else { throw error(col, "unsupported target '\(name)' (a VNS3 dialect target)") }
            if name == "COPY" {
                guard let v = tval("--to"), let a = IPv4Address(v.text) else { throw error(col, "COPY needs --to IP") }
                let dirs = [CopyDirection.inbound, .outbound, .bidirectional].filter { topts[$0.rawValue] != nil }
                guard dirs.count <= 1 else { throw error(col, "COPY takes one of --inbound, --outbound, --bidirectional") }
                target = .copy(to: a.value, from: tval("--from")?.text, direction: dirs.first ?? .bidirectional)
            } else {
                guard let v = tval("--table") else { throw error(col, "LOOKUP needs --table NAME") }
                target = .lookup(table: v.text, through: topts["--through"] != nil)
            }
        default:
            if extensionTargets.contains(name) { throw error(col, "unsupported target '\(name)'") }
            // A user chain; resolved by the builder.
            if !topts.isEmpty { throw error(col, "a jump to chain '\(name)' takes no options") }
        }
    }

    // MARK: - Values

    func portRange(_ v: Token) throws(Diagnostic) -> PortRange {
        guard let r = parsePortRange(v.text) else { throw error(v.column, "bad port or range '\(v.text)'") }
        return r
    }

    func tcpFlags(_ v: Token) throws(Diagnostic) -> UInt8 {
        var bits: UInt8 = 0
        for f in v.text.split(separator: ",") {
            switch f.uppercased() {
            case "FIN": bits |= 0x01
            case "SYN": bits |= 0x02
            case "RST": bits |= 0x04
            case "PSH": bits |= 0x08
            case "ACK": bits |= 0x10
            case "URG": bits |= 0x20
            case "ECE": bits |= 0x40
            case "CWR": bits |= 0x80
            case "ALL": bits |= 0x3F
            case "NONE": break
            default: throw error(v.column, "unknown TCP flag '\(f)'")
            }
        }
        return bits
    }

    func markValue(_ v: Token) throws(Diagnostic) -> UInt32 {
        guard let n = parseNumber(Substring(v.text)) else { throw error(v.column, "bad mark '\(v.text)'") }
        return n
    }

    func markMask(_ v: Token) throws(Diagnostic) -> MarkMask {
        let parts = v.text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let value = parseNumber(parts[0]) else { throw error(v.column, "bad mark '\(v.text)'") }
        var mask: UInt32 = 0xFFFF_FFFF
        if parts.count == 2 {
            guard let mm = parseNumber(parts[1]) else { throw error(v.column, "bad mask in '\(v.text)'") }
            mask = mm
        }
        return MarkMask(value: value, mask: mask)
    }

    func ctStates(_ v: Token) throws(Diagnostic) -> CtState {
        var s = CtState()
        for n in v.text.split(separator: ",") {
            guard let e = CtState.names.first(where: { $0.0 == n.uppercased() }) else { throw error(v.column, "bad state '\(n)'") }
            s.formUnion(e.1)
        }
        return s
    }

    func natRange(_ v: Token, needAddress: Bool) throws(Diagnostic) -> NATRange {
        var r = NATRange()
        var text = Substring(v.text)
        if let colon = text.firstIndex(of: ":") {
            let ports = text[text.index(after: colon)...]
            let pr = ports.split(separator: "-")
            guard pr.count >= 1, pr.count <= 2, let a = UInt16(pr[0]), let b = pr.count == 2 ? UInt16(pr[1]) : a, a <= b else {
                throw error(v.column, "bad port range in '\(v.text)'")
            }
            r.minPort = a; r.maxPort = b
            text = text[..<colon]
        }
        if !text.isEmpty {
            let ar = text.split(separator: "-")
            guard ar.count >= 1, ar.count <= 2, let a = IPv4Address(ar[0]), let b = ar.count == 2 ? IPv4Address(ar[1]) : a, a.value <= b.value else {
                throw error(v.column, "bad address range in '\(v.text)'")
            }
            r.minAddress = a.value; r.maxAddress = b.value
        } else if needAddress && r.minPort == nil {
            throw error(v.column, "bad NAT range '\(v.text)'")
        }
        return r
    }

    func natPorts(_ v: Token) throws(Diagnostic) -> NATRange {
        let pr = v.text.split(separator: "-")
        guard pr.count >= 1, pr.count <= 2, let a = UInt16(pr[0]), let b = pr.count == 2 ? UInt16(pr[1]) : a, a <= b else {
            throw error(v.column, "bad port range '\(v.text)'")
        }
        return NATRange(minPort: a, maxPort: b)
    }
}

let builtinTargets: Set<String> = ["ACCEPT", "DROP", "RETURN", "QUEUE"]

/// Targets provided by iptables extensions; a name in this list that is not a declared chain is
/// refused as an unsupported target rather than reported as a missing chain.
let extensionTargets: Set<String> = [
    "REJECT", "LOG", "NFLOG", "ULOG", "DNAT", "SNAT", "MASQUERADE", "NETMAP", "REDIRECT", "MARK", "CONNMARK",
    "NFQUEUE", "QUEUE", "TPROXY", "CHECKSUM", "CT", "NOTRACK", "TCPMSS", "COPY", "LOOKUP", "TEE", "CLASSIFY",
    "DSCP", "TOS", "TTL", "SET", "AUDIT", "HMARK", "IDLETIMER", "LED", "SECMARK", "CONNSECMARK", "SYNPROXY",
    "TRACE", "TCPOPTSTRIP", "RATEEST", "ECN",
]

/// Per target: its options and whether each takes a value (1) or is a flag (0).
let targetOptions: [String: [String: Int]] = [
    "REJECT": ["--reject-with": 1],
    "LOG": ["--log-prefix": 1, "--log-level": 1, "--log-tcp-sequence": 0, "--log-tcp-options": 0, "--log-ip-options": 0, "--log-uid": 0, "--log-macdecode": 0],
    "NFLOG": ["--nflog-group": 1, "--nflog-prefix": 1, "--nflog-range": 1, "--nflog-size": 1, "--nflog-threshold": 1],
    "MARK": ["--set-xmark": 1, "--set-mark": 1, "--and-mark": 1, "--or-mark": 1, "--xor-mark": 1],
    "CONNMARK": ["--set-xmark": 1, "--set-mark": 1, "--and-mark": 1, "--or-mark": 1, "--xor-mark": 1, "--save-mark": 0, "--restore-mark": 0,
                 "--nfmask": 1, "--ctmask": 1, "--mask": 1],
    "DNAT": ["--to-destination": 1, "--to": 1, "--random": 0, "--random-fully": 0, "--persistent": 0],
    "SNAT": ["--to-source": 1, "--to": 1, "--random": 0, "--random-fully": 0, "--persistent": 0],
    "MASQUERADE": ["--to-ports": 1, "--random": 0, "--random-fully": 0],
    "REDIRECT": ["--to-ports": 1, "--random": 0],
    "NETMAP": ["--to": 1],
    "TTL": ["--ttl-set": 1, "--ttl-dec": 1, "--ttl-inc": 1],
    "DSCP": ["--set-dscp": 1, "--set-dscp-class": 1],
    "TCPMSS": ["--set-mss": 1, "--clamp-mss-to-pmtu": 0],
    "CHECKSUM": ["--checksum-fill": 0],
    "NOTRACK": [:],
    "CT": ["--notrack": 0],
    "COPY": ["--to": 1, "--from": 1, "--inbound": 0, "--outbound": 0, "--bidirectional": 0],
    "LOOKUP": ["--table": 1, "--through": 0],
    "TEE": ["--gateway": 1, "--oif": 1],
    "TPROXY": ["--on-port": 1, "--on-ip": 1, "--tproxy-mark": 1],
    "ACCEPT": [:], "DROP": [:], "RETURN": [:],
]

/// Decimal or 0x-hex 32-bit number (marks, masks).
func parseNumber(_ s: Substring) -> UInt32? {
    if s.hasPrefix("0x") || s.hasPrefix("0X") { return UInt32(s.dropFirst(2), radix: 16) }
    return UInt32(s)
}

func parsePortRange(_ s: String) -> PortRange? {
    if let colon = s.firstIndex(of: ":") {
        let a = s[..<colon], b = s[s.index(after: colon)...]
        let lo = a.isEmpty ? 0 : ServiceNames.parse(String(a))
        let hi = b.isEmpty ? 65535 : ServiceNames.parse(String(b))
        guard let lo, let hi, lo <= hi else { return nil }
        return PortRange(lo, hi)
    }
    guard let p = ServiceNames.parse(s) else { return nil }
    return PortRange(p, p)
}

/// `n`, `a:b`, `a:` (to 65535) or `:b` (from 0), as iptables' length and port ranges.
func parseNumberRange(_ s: String) -> PortRange? {
    if let colon = s.firstIndex(of: ":") {
        let a = s[..<colon], b = s[s.index(after: colon)...]
        guard let lo = a.isEmpty ? 0 : UInt16(a), let hi = b.isEmpty ? 65535 : UInt16(b), lo <= hi else { return nil }
        return PortRange(lo, hi)
    }
    guard let n = UInt16(s) else { return nil }
    return PortRange(n, n)
}

/// ICMP type names as iptables knows them (`iptables -p icmp -h`).
public enum ICMPNames {
    static let table: [(String, UInt8, UInt8?)] = [
        ("any", 255, nil), ("echo-reply", 0, nil), ("pong", 0, nil), ("destination-unreachable", 3, nil),
        ("network-unreachable", 3, 0), ("host-unreachable", 3, 1), ("protocol-unreachable", 3, 2), ("port-unreachable", 3, 3),
        ("fragmentation-needed", 3, 4), ("source-route-failed", 3, 5), ("network-unknown", 3, 6), ("host-unknown", 3, 7),
        ("network-prohibited", 3, 9), ("host-prohibited", 3, 10), ("TOS-network-unreachable", 3, 11), ("TOS-host-unreachable", 3, 12),
        ("communication-prohibited", 3, 13), ("host-precedence-violation", 3, 14), ("precedence-cutoff", 3, 15),
        ("source-quench", 4, nil), ("redirect", 5, nil), ("network-redirect", 5, 0), ("host-redirect", 5, 1),
        ("TOS-network-redirect", 5, 2), ("TOS-host-redirect", 5, 3), ("echo-request", 8, nil), ("ping", 8, nil),
        ("router-advertisement", 9, nil), ("router-solicitation", 10, nil), ("time-exceeded", 11, nil), ("ttl-exceeded", 11, nil),
        ("ttl-zero-during-transit", 11, 0), ("ttl-zero-during-reassembly", 11, 1), ("parameter-problem", 12, nil),
        ("ip-header-bad", 12, 0), ("required-option-missing", 12, 1), ("timestamp-request", 13, nil), ("timestamp-reply", 14, nil),
        ("address-mask-request", 17, nil), ("address-mask-reply", 18, nil),
    ]

    public static func parse(_ s: String) -> ICMPTypeSpec? {
        if let e = table.first(where: { $0.0.lowercased() == s.lowercased() }) {
            return e.2.map { ICMPTypeSpec(type: e.1, codeMin: $0, codeMax: $0) } ?? ICMPTypeSpec(type: e.1)
        }
        let parts = s.split(separator: "/")
        guard parts.count >= 1, parts.count <= 2, let ty = UInt8(parts[0]) else { return nil }
        if parts.count == 2 {
            guard let c = UInt8(parts[1]) else { return nil }
            return ICMPTypeSpec(type: ty, codeMin: c, codeMax: c)
        }
        return ICMPTypeSpec(type: ty)
    }

    /// iptables-save prints numbers: `--icmp-type 8` or `8/0`, `any`.
    public static func render(_ t: ICMPTypeSpec) -> String {
        if t.type == 255 { return "any" }
        if t.codeMin == 0 && t.codeMax == 255 { return "\(t.type)" }
        return "\(t.type)/\(t.codeMin)"
    }
}
