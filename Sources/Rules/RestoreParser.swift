import Diagnostics
import Wire

/// Parses iptables-restore / iptables-save files. What this version supports is listed in
/// README's feature table; anything else is refused with `file:line:column` naming the token,
/// and a file with any error yields no rule set at all (nothing is half-loaded).
public enum RestoreParser {
    public static func parse(_ text: String, file: String) throws(Diagnostic) -> RuleSet {
        var state = ParseState(file: file)
        var lineNumber = 0
        // "\r\n" is one Character in Swift: split on both forms.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = rawLine
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let col = line.count - trimmed.count + 1
            try state.line(trimmed, column: col, lineNumber: lineNumber)
        }
        if let t = state.current {
            throw Diagnostic(file: file, line: t.openedAt, column: 1, message: "table '\(t.table.name.rawValue)' has no COMMIT")
        }
        return RuleSet(tables: state.done)
    }

    public static func load(path: String) throws(Diagnostic) -> RuleSet {
        let text: String
        do { text = try readTextFile(path) } catch { throw Diagnostic(file: path, line: 0, column: 0, message: "cannot read rule file: \(error)") }
        return try parse(text, file: path)
    }
}

/// Reads a whole text file (rule files are small); errors carry errno's text.
public func readTextFile(_ path: String) throws -> String {
    guard let f = fopen(path, "rb") else { throw FileError(message: String(cString: strerror(errno))) }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n > 0 { bytes.append(contentsOf: buf[0 ..< n]) }
        if n < buf.count { break }
    }
    return String(decoding: bytes, as: UTF8.self)
}

public struct FileError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A jump or goto whose chain is resolved at COMMIT (chains may be declared after use).
struct PendingJump {
    var chain: Int
    var rule: Int
    var name: String
    var isGoto: Bool
    var line: Int
    var column: Int
}

struct OpenTable {
    var table: Table
    var openedAt: Int
    var pending: [PendingJump] = []
}

struct ParseState {
    let file: String
    var current: OpenTable?
    var done: [Table] = []

    init(file: String) { self.file = file }

    func error(_ line: Int, _ col: Int, _ msg: String) -> Diagnostic {
        Diagnostic(file: file, line: line, column: col, message: msg)
    }

    mutating func line(_ text: Substring, column: Int, lineNumber ln: Int) throws(Diagnostic) {
        if text.hasPrefix("*") {
            guard current == nil else { throw error(ln, column, "table '\(text.dropFirst())' starts before COMMIT of '\(current!.table.name.rawValue)'") }
            let name = String(text.dropFirst()).trimmingTrailingBlanks()
            guard let t = TableName(rawValue: name) else { throw error(ln, column + 1, "unknown table '\(name)'") }
            guard t == .filter else { throw error(ln, column + 1, "unsupported table '\(name)' (this version implements the filter table)") }
            guard !done.contains(where: { $0.name == t }) else { throw error(ln, column + 1, "table '\(name)' appears twice") }
            current = OpenTable(table: Table(name: t), openedAt: ln)
            return
        }
        if text.trimmingTrailingBlanks() == "COMMIT" {
            guard var open = current else { throw error(ln, column, "COMMIT outside a table") }
            try resolve(&open)
            try checkLoops(open.table, line: ln)
            done.append(open.table)
            current = nil
            return
        }
        guard current != nil else { throw error(ln, column, "expected '*table' before this line") }
        if text.hasPrefix(":") {
            try declareChain(text, column: column, ln: ln)
            return
        }
        var tokens = try Tokenizer.split(text, file: file, lineNumber: ln)
        for i in tokens.indices { tokens[i].column += column - 1 }
        var counters = Counters()
        if let first = tokens.first, first.text.hasPrefix("[") {
            guard let c = parseCounters(first.text) else { throw error(ln, first.column, "bad counters '\(first.text)'") }
            counters = c
            tokens.removeFirst()
        }
        try command(tokens, counters: counters, ln: ln, lineColumn: column)
    }

    mutating func declareChain(_ text: Substring, column: Int, ln: Int) throws(Diagnostic) {
        let tokens = try Tokenizer.split(text.dropFirst(), file: file, lineNumber: ln).map { Token(text: $0.text, column: $0.column + column, quoted: $0.quoted) }
        guard let nameTok = tokens.first else { throw error(ln, column, "chain declaration without a name") }
        guard tokens.count <= 3 else { throw error(ln, tokens[3].column, "unexpected '\(tokens[3].text)' in chain declaration") }
        let name = nameTok.text
        try validateChainName(name, ln: ln, col: nameTok.column)
        var policy: Policy? = nil
        if tokens.count > 1 {
            let p = tokens[1].text
            if p == "-" { policy = nil } else if let pp = Policy(rawValue: p) { policy = pp } else {
                throw error(ln, tokens[1].column, "bad policy '\(p)' (ACCEPT, DROP or - for a user chain)")
            }
        }
        var counters = Counters()
        if tokens.count > 2 {
            guard let c = parseCounters(tokens[2].text) else { throw error(ln, tokens[2].column, "bad counters '\(tokens[2].text)'") }
            counters = c
        }
        let isBuiltin = current!.table.name.builtinChains.contains(name)
        if isBuiltin {
            guard let policy else { throw error(ln, tokens.count > 1 ? tokens[1].column : nameTok.column, "built-in chain '\(name)' needs a policy") }
            let i = current!.table.chainIndex(name)!
            current!.table.chains[i].policy = policy
            current!.table.chains[i].counters = counters
        } else {
            if policy != nil { throw error(ln, tokens[1].column, "user chain '\(name)' cannot have a policy") }
            if current!.table.chainIndex(name) != nil { throw error(ln, nameTok.column, "chain '\(name)' already exists") }
            current!.table.chains.append(Chain(name: name, policy: nil, counters: counters))
        }
    }

    func validateChainName(_ name: String, ln: Int, col: Int) throws(Diagnostic) {
        guard !name.isEmpty, name.utf8.count <= 28 else { throw error(ln, col, "invalid chain name '\(name)' (1 to 28 characters)") }
        guard !name.hasPrefix("-"), !name.hasPrefix("!") else { throw error(ln, col, "invalid chain name '\(name)'") }
        if ["ACCEPT", "DROP", "RETURN", "QUEUE"].contains(name) { throw error(ln, col, "chain name '\(name)' is reserved") }
    }

    mutating func command(_ tokens: [Token], counters: Counters, ln: Int, lineColumn: Int) throws(Diagnostic) {
        guard let cmd = tokens.first else { throw error(ln, lineColumn, "empty command") }
        func chainArg(_ i: Int) throws(Diagnostic) -> (Int, Token) {
            guard i < tokens.count else { throw error(ln, cmd.column, "'\(cmd.text)' needs a chain name") }
            guard let c = current!.table.chainIndex(tokens[i].text) else {
                throw error(ln, tokens[i].column, "chain '\(tokens[i].text)' does not exist in table '\(current!.table.name.rawValue)'")
            }
            return (c, tokens[i])
        }
        switch cmd.text {
        case "-A", "--append":
            let (c, _) = try chainArg(1)
            let rule = try parseRule(Array(tokens[2...]), chain: c, counters: counters, ln: ln, ruleIndex: current!.table.chains[c].rules.count)
            current!.table.chains[c].rules.append(rule)
        case "-I", "--insert":
            let (c, _) = try chainArg(1)
            var rest = 2
            var position = 1
            if rest < tokens.count, let n = Int(tokens[rest].text) {
                guard n >= 1, n <= current!.table.chains[c].rules.count + 1 else {
                    throw error(ln, tokens[rest].column, "index of insertion \(n) too big (chain has \(current!.table.chains[c].rules.count) rules)")
                }
                position = n; rest += 1
            }
            // Pending jumps recorded for rules at or after the insertion point shift by one.
            for i in current!.pending.indices where current!.pending[i].chain == c && current!.pending[i].rule >= position - 1 {
                current!.pending[i].rule += 1
            }
            let rule = try parseRule(Array(tokens[rest...]), chain: c, counters: counters, ln: ln, ruleIndex: position - 1)
            current!.table.chains[c].rules.insert(rule, at: position - 1)
        case "-N", "--new-chain":
            guard tokens.count == 2 else { throw error(ln, cmd.column, "'-N' takes one chain name") }
            try validateChainName(tokens[1].text, ln: ln, col: tokens[1].column)
            if current!.table.chainIndex(tokens[1].text) != nil { throw error(ln, tokens[1].column, "chain '\(tokens[1].text)' already exists") }
            current!.table.chains.append(Chain(name: tokens[1].text, policy: nil))
        case "-P", "--policy":
            guard tokens.count == 3 else { throw error(ln, cmd.column, "'-P' takes a chain and a policy") }
            let (c, t) = try chainArg(1)
            guard current!.table.chains[c].isBuiltin else { throw error(ln, t.column, "cannot set a policy on user chain '\(t.text)'") }
            guard let p = Policy(rawValue: tokens[2].text) else { throw error(ln, tokens[2].column, "bad policy '\(tokens[2].text)'") }
            current!.table.chains[c].policy = p
        default:
            throw error(ln, cmd.column, "unsupported command '\(cmd.text)'")
        }
    }

    /// Parses the options of one rule (everything after `-A CHAIN`).
    mutating func parseRule(_ t: [Token], chain: Int, counters: Counters, ln: Int, ruleIndex: Int) throws(Diagnostic) -> Rule {
        var m = RuleMatch()
        var target = RuleTarget.none
        var targetSeen = false
        var invert = false
        var invertColumn = 0
        var i = 0
        let chainName = current!.table.chains[chain].name
        var protoModuleColumn = 0

        func value(_ opt: Token) throws(Diagnostic) -> Token {
            // Old-style negation: `-s ! 10.0.0.1`.
            if i + 1 < t.count, t[i + 1].text == "!", !t[i + 1].quoted {
                guard !invert else { throw error(ln, t[i + 1].column, "'!' given twice for '\(opt.text)'") }
                invert = true; invertColumn = t[i + 1].column
                i += 1
            }
            guard i + 1 < t.count else { throw error(ln, opt.column, "option '\(opt.text)' needs a value") }
            i += 1
            return t[i]
        }
        func takeInvert() -> Bool { let v = invert; invert = false; return v }
        func noInvert(_ opt: Token) throws(Diagnostic) {
            if invert { throw error(ln, invertColumn, "'!' is not allowed before '\(opt.text)'") }
        }

        while i < t.count {
            let tok = t[i]
            switch tok.text {
            case "!":
                guard !invert else { throw error(ln, tok.column, "'!' given twice") }
                invert = true; invertColumn = tok.column
            case "-s", "--source", "--src", "-d", "--destination", "--dst":
                let v = try value(tok)
                guard let p = IPv4Prefix(v.text) else { throw error(ln, v.column, "bad address '\(v.text)' (expected a.b.c.d[/len])") }
                let isSource = tok.text == "-s" || tok.text == "--source" || tok.text == "--src"
                if isSource ? m.source != nil : m.destination != nil { throw error(ln, tok.column, "'\(tok.text)' given twice") }
                if isSource { m.source = Inverted(p, invert: takeInvert()) } else { m.destination = Inverted(p, invert: takeInvert()) }
            case "-p", "--protocol":
                let v = try value(tok)
                guard m.proto == nil else { throw error(ln, tok.column, "'-p' given twice") }
                guard let p = ProtocolNames.parse(v.text) else { throw error(ln, v.column, "unknown protocol '\(v.text)'") }
                if p == 0 {
                    if invert { throw error(ln, invertColumn, "'! -p all' matches nothing; refused") }
                } else {
                    m.proto = Inverted(p, invert: takeInvert())
                }
            case "-i", "--in-interface", "-o", "--out-interface":
                let v = try value(tok)
                let isIn = tok.text == "-i" || tok.text == "--in-interface"
                guard !v.text.isEmpty, v.text.utf8.count <= 15 else { throw error(ln, v.column, "bad interface name '\(v.text)'") }
                if isIn {
                    if ["OUTPUT", "POSTROUTING"].contains(chainName) { throw error(ln, tok.column, "can't use -i with \(chainName)") }
                    m.inInterface = Inverted(InterfaceSpec(v.text), invert: takeInvert())
                } else {
                    if ["INPUT", "PREROUTING"].contains(chainName) { throw error(ln, tok.column, "can't use -o with \(chainName)") }
                    m.outInterface = Inverted(InterfaceSpec(v.text), invert: takeInvert())
                }
            case "-m", "--match":
                try noInvert(tok)
                guard i + 1 < t.count else { throw error(ln, tok.column, "'-m' needs a module name") }
                i += 1
                let mod = t[i]
                switch mod.text {
                case "tcp", "udp":
                    // The protocol may come later (`-m tcp -p tcp`); checked at the end.
                    if !m.modules.contains(mod.text) { m.modules.append(mod.text); protoModuleColumn = mod.column }
                case "comment":
                    if !m.modules.contains("comment") { m.modules.append("comment") }
                default:
                    throw error(ln, mod.column, "unsupported match '\(mod.text)'")
                }
            case "--sport", "--source-port", "--dport", "--destination-port":
                // Like iptables, `-p tcp --dport` loads the tcp match implicitly.
                if !m.modules.contains("tcp") && !m.modules.contains("udp") {
                    guard let p = m.proto, !p.invert, p.value == IPProtocol.tcp || p.value == IPProtocol.udp else {
                        throw error(ln, tok.column, "unknown option '\(tok.text)' (port matches need '-p tcp' or '-p udp')")
                    }
                    m.modules.append(p.value == IPProtocol.tcp ? "tcp" : "udp")
                    protoModuleColumn = tok.column
                }
                let v = try value(tok)
                guard let r = parsePortRange(v.text) else { throw error(ln, v.column, "bad port or range '\(v.text)'") }
                let isSource = tok.text == "--sport" || tok.text == "--source-port"
                if isSource { m.sourcePort = Inverted(r, invert: takeInvert()) } else { m.destinationPort = Inverted(r, invert: takeInvert()) }
            case "--comment":
                try noInvert(tok)
                guard m.modules.contains("comment") else { throw error(ln, tok.column, "unknown option '--comment' (needs '-m comment')") }
                let v = try value(tok)
                guard v.text.utf8.count <= 256 else { throw error(ln, v.column, "comment longer than 256 bytes") }
                m.comment = v.text
            case "-j", "--jump", "-g", "--goto":
                try noInvert(tok)
                guard !targetSeen else { throw error(ln, tok.column, "more than one target") }
                targetSeen = true
                guard i + 1 < t.count else { throw error(ln, tok.column, "'\(tok.text)' needs a target") }
                i += 1
                let v = t[i]
                let isGoto = tok.text == "-g" || tok.text == "--goto"
                switch v.text {
                case "ACCEPT" where !isGoto: target = .accept
                case "DROP" where !isGoto: target = .drop
                case "RETURN" where !isGoto: target = .return
                default:
                    if knownExtensionTargets.contains(v.text) || v.text == "ACCEPT" || v.text == "DROP" || v.text == "RETURN" {
                        if isGoto || knownExtensionTargets.contains(v.text) && current!.table.chainIndex(v.text) == nil {
                            throw error(ln, v.column, isGoto ? "cannot goto '\(v.text)'" : "unsupported target '\(v.text)'")
                        }
                    }
                    current!.pending.append(PendingJump(chain: chain, rule: ruleIndex, name: v.text, isGoto: isGoto, line: ln, column: v.column))
                    target = isGoto ? .goto(-1) : .jump(-1)
                }
            default:
                if tok.text.hasPrefix("-") {
                    throw error(ln, tok.column, "unsupported option '\(tok.text)'")
                }
                throw error(ln, tok.column, "unexpected '\(tok.text)'")
            }
            i += 1
        }
        if invert { throw error(ln, invertColumn, "'!' at the end of the rule negates nothing") }
        for mod in m.modules where mod == "tcp" || mod == "udp" {
            // xt_tcpudp's checkentry: the rule must be for that protocol, not inverted.
            let want = mod == "tcp" ? IPProtocol.tcp : IPProtocol.udp
            guard let p = m.proto, !p.invert, p.value == want else {
                throw error(ln, protoModuleColumn, "match '\(mod)' needs '-p \(mod)'")
            }
        }
        return Rule(match: m, target: target, counters: counters, origin: SourceLine(file: file, line: ln))
    }

    func parseCounters(_ s: String) -> Counters? {
        guard s.hasPrefix("["), s.hasSuffix("]") else { return nil }
        let inner = s.dropFirst().dropLast().split(separator: ":", omittingEmptySubsequences: false)
        guard inner.count == 2, let p = UInt64(inner[0]), let b = UInt64(inner[1]) else { return nil }
        return Counters(packets: p, bytes: b)
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

    mutating func resolve(_ open: inout OpenTable) throws(Diagnostic) {
        for p in open.pending {
            guard let target = open.table.chainIndex(p.name) else {
                throw error(p.line, p.column, "chain '\(p.name)' does not exist (jump target)")
            }
            guard !open.table.chains[target].isBuiltin else {
                throw error(p.line, p.column, "cannot jump to built-in chain '\(p.name)'")
            }
            open.table.chains[p.chain].rules[p.rule].target = p.isGoto ? .goto(target) : .jump(target)
        }
        open.pending = []
    }

    /// The kernel refuses a table whose jumps form a loop (ELOOP at commit).
    func checkLoops(_ table: Table, line: Int) throws(Diagnostic) {
        var color = [UInt8](repeating: 0, count: table.chains.count)  // 0 new, 1 on stack, 2 done
        func visit(_ c: Int) -> (Int, Rule)? {
            color[c] = 1
            for r in table.chains[c].rules {
                let next: Int
                switch r.target {
                case .jump(let n), .goto(let n): next = n
                default: continue
                }
                if color[next] == 1 { return (next, r) }
                if color[next] == 0, let loop = visit(next) { return loop }
            }
            color[c] = 2
            return nil
        }
        for c in table.chains.indices where color[c] == 0 {
            if let (chain, rule) = visit(c) {
                throw error(rule.origin.line, 1, "jump creates a loop through chain '\(table.chains[chain].name)'")
            }
        }
    }
}

/// Targets provided by iptables extensions; a name in this list that is not a declared chain is
/// refused as an unsupported target rather than reported as a missing chain.
let knownExtensionTargets: Set<String> = [
    "REJECT", "LOG", "NFLOG", "ULOG", "DNAT", "SNAT", "MASQUERADE", "NETMAP", "REDIRECT", "MARK", "CONNMARK",
    "NFQUEUE", "QUEUE", "TPROXY", "CHECKSUM", "CT", "NOTRACK", "TCPMSS", "COPY", "LOOKUP", "TEE", "CLASSIFY",
    "DSCP", "TOS", "TTL", "SET", "AUDIT", "HMARK", "IDLETIMER", "LED", "SECMARK", "CONNSECMARK", "SYNPROXY",
    "TRACE", "TCPOPTSTRIP", "RATEEST", "ECN",
]

extension StringProtocol {
    func trimmingTrailingBlanks() -> String {
        var s = Substring(self)
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
