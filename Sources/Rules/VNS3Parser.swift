import Diagnostics

/// Reads the VNS3 edge firewall dialect: one rule per line, the first word naming where it goes,
/// then iptables rule options without `-A`:
///
/// ```
/// PREROUTING -i eth0 -p tcp --dport 45 -j DNAT --to ${plugin_instance_1_ip}:22
/// MACRO_CUST -o eth0 -s 198.51.100.0/28 -j MASQUERADE
/// MACRO_CUST -j COPY --from tun0 --to 198.51.100.2 --bidirectional
/// ROUTING_CUST -i eth0 -d 10.0.0.0/8 -j LOOKUP --table plugin1 --through
/// ```
///
/// What the VNS3 documentation says (docs.cohesive.net, Firewall; Routing to and from plugins;
/// Variables; the Cohesive plugin how-tos):
/// - the user writes no `-A`; the first word is one of PREROUTING, POSTROUTING, FORWARD, INPUT,
///   OUTPUT (VNS3 5.3 and later), or the legacy `_CUST` names (before 5.3);
/// - INPUT_CUST, OUTPUT_CUST and FORWARD_CUST go into the filter table, PREROUTING_CUST and
///   POSTROUTING_CUST into the nat table;
/// - MACRO_CUST carries MASQUERADE (`MACRO_CUST -o eth0 -s 198.51.100.0/28 -j MASQUERADE`) and
///   COPY (`MACRO_CUST -j COPY --from tun0 --to IP --bidirectional`);
/// - `${name}` variables are expanded before the rule is enabled.
///
/// Where the documentation is silent, this parser chooses (and the tests pin it down):
/// - PREROUTING/POSTROUTING (and their `_CUST` forms) are placed by target: NAT targets, and
///   ACCEPT/RETURN/LOG/no target (so a NAT exemption stays in order with the NAT rules), in nat;
///   DROP/REJECT and packet-altering targets (MARK, CONNMARK, TTL, DSCP, TCPMSS, CHECKSUM,
///   TPROXY, COPY, LOOKUP) in mangle, because iptables refuses filtering in nat; NOTRACK/CT in
///   raw. A rule split off into mangle runs before every nat rule of the same hook.
/// - FORWARD/INPUT/OUTPUT go to filter whatever the target.
/// - ROUTING_CUST goes to mangle PREROUTING (policy routing happens before the routing decision).
/// - MACRO_CUST: MASQUERADE/SNAT to nat POSTROUTING, DNAT/REDIRECT to nat PREROUTING, COPY and
///   LOOKUP expanded as below; anything else (NETMAP included: its direction is ambiguous) is
///   refused.
/// - COPY in MACRO_CUST: `--inbound` is mangle PREROUTING `-i IFACE -j COPY ... --inbound`,
///   `--outbound` mangle POSTROUTING `-o IFACE ... --outbound`, `--bidirectional` (the default)
///   both, in that order; without `--from` there is no interface match. COPY written under
///   PREROUTING/POSTROUTING is placed as written in mangle.
/// - LOOKUP (in PREROUTING, ROUTING_CUST or MACRO_CUST): mangle PREROUTING with a
///   `-m mark --mark 0` guard added before `-j` (a packet that a MARK or an earlier LOOKUP
///   already policy-routed is left alone; no guard is added when the rule has its own
///   `-m mark`). `--through` (traffic passes through the plugin, both ways) adds the return
///   path right after it: the replies of connections whose original direction matched,
///   `-p P -m conntrack --ctdir REPLY --ctorigsrc S --ctorigdst D --ctorigsrcport SP
///   --ctorigdstport DP -m mark --mark 0 -j LOOKUP --table NAME --through`. `-i` is dropped
///   there (replies arrive elsewhere); a match it cannot carry over is an error.
public enum VNS3Parser {
    /// First words and where they lead.
    enum Place { case pre, post, forward, input, output, routing, macro }
    static let places: [String: Place] = [
        "PREROUTING": .pre, "POSTROUTING": .post, "FORWARD": .forward, "INPUT": .input, "OUTPUT": .output,
        "PREROUTING_CUST": .pre, "POSTROUTING_CUST": .post, "FORWARD_CUST": .forward, "INPUT_CUST": .input,
        "OUTPUT_CUST": .output, "ROUTING_CUST": .routing, "MACRO_CUST": .macro,
    ]
    public static var firstWords: [String] { places.keys.sorted() }

    static let natTargets: Set<String> = ["DNAT", "SNAT", "MASQUERADE", "NETMAP", "REDIRECT"]
    static let natNeutral: Set<String> = ["ACCEPT", "RETURN", "LOG", "NFLOG"]
    static let rawTargets: Set<String> = ["NOTRACK", "CT"]

    public static func parse(_ text: String, file: String, variables: [String: String] = [:]) throws(Diagnostic) -> RuleSet {
        var b = RuleSetBuilder(file: file, vns3: true)
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = rawLine
            if line.hasSuffix("\r") { line = line.dropLast() }
            let (expanded, columns) = try substitute(line, file: file, line: lineNumber, variables: variables)
            var tokens: [Token]
            do {
                tokens = try Tokenizer.split(Substring(expanded), file: file, lineNumber: lineNumber)
            } catch {
                var d = error
                if d.column >= 1, d.column <= columns.count { d.column = columns[d.column - 1] }
                throw d
            }
            for k in tokens.indices { tokens[k].column = columns[tokens[k].column - 1] }
            guard let first = tokens.first else { continue }
            try rule(first, Array(tokens.dropFirst()), line: lineNumber, into: &b)
        }
        return try b.build()
    }

    public static func load(path: String, variables: [String: String]) throws(Diagnostic) -> RuleSet {
        let text: String
        do { text = try readTextFile(path) } catch { throw Diagnostic(file: path, line: 0, column: 0, message: "cannot read rule file: \(error)") }
        return try parse(text, file: path, variables: variables)
    }

    // MARK: - Variables

    /// A vars file: `NAME=VALUE` per line, `#` comments, blank lines; a value may be quoted.
    public static func parseVariables(_ text: String, file: String) throws(Diagnostic) -> [String: String] {
        var out: [String: String] = [:]
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let trimmed = rawLine.drop { $0 == " " || $0 == "\t" }.trimmingTrailingBlanks()
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let col = rawLine.count - rawLine.drop { $0 == " " || $0 == "\t" }.count + 1
            guard let (name, value) = binding(trimmed) else {
                throw Diagnostic(file: file, line: lineNumber, column: col, message: "expected NAME=VALUE, got '\(trimmed)'")
            }
            out[name] = value
        }
        return out
    }

    /// `NAME=VALUE` (from a vars file or `--var`); nil unless NAME is a valid variable name.
    public static func binding(_ s: String) -> (String, String)? {
        guard let eq = s.firstIndex(of: "=") else { return nil }
        let name = String(s[..<eq])
        guard isName(name) else { return nil }
        var value = Substring(s[s.index(after: eq)...])
        if value.count >= 2, let f = value.first, f == "\"" || f == "'", value.last == f { value = value.dropFirst().dropLast() }
        return (name, String(value))
    }

    static func isName<S: StringProtocol>(_ s: S) -> Bool {
        guard let f = s.unicodeScalars.first, f == "_" || ("A" ... "Z").contains(f) || ("a" ... "z").contains(f) else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || ("0" ... "9").contains($0) || ("A" ... "Z").contains($0) || ("a" ... "z").contains($0) }
    }

    /// Expands `${name}` outside comments. Returns the text and, for each of its unicode scalars,
    /// the 1-based column in the original line it came from (an expansion maps to its `$`).
    static func substitute(_ line: Substring, file: String, line lineNumber: Int, variables: [String: String]) throws(Diagnostic) -> (String, [Int]) {
        let chars = Array(line.unicodeScalars)
        var out = String.UnicodeScalarView()
        var columns: [Int] = []
        var quote: Unicode.Scalar? = nil
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if quote == nil, c == "#", i == 0 || chars[i - 1] == " " || chars[i - 1] == "\t" {
                break  // a comment: not expanded, and the tokenizer drops it anyway
            }
            if c == "\"" || c == "'" { quote = quote == nil ? c : (quote == c ? nil : quote) }
            if c == "$", i + 1 < chars.count, chars[i + 1] == "{", quote != "'" {
                guard let close = chars[(i + 2)...].firstIndex(of: "}") else {
                    throw Diagnostic(file: file, line: lineNumber, column: i + 1, message: "unterminated '${'")
                }
                let name = String(String.UnicodeScalarView(chars[(i + 2) ..< close]))
                guard isName(name) else {
                    throw Diagnostic(file: file, line: lineNumber, column: i + 1, message: "bad variable name '${\(name)}'")
                }
                guard let value = variables[name] else {
                    throw Diagnostic(file: file, line: lineNumber, column: i + 1, message: "unbound variable '${\(name)}' (bind it with --var \(name)=VALUE or in a --vars file)")
                }
                out.append(contentsOf: value.unicodeScalars)
                columns.append(contentsOf: repeatElement(i + 1, count: value.unicodeScalars.count))
                i = close + 1
                continue
            }
            out.append(c)
            columns.append(i + 1)
            i += 1
        }
        return (String(out), columns)
    }

    // MARK: - Rules

    static func isTargetFlag(_ t: Token) -> Bool { !t.quoted && (t.text == "-j" || t.text == "--jump" || t.text == "-g" || t.text == "--goto") }

    static func rule(_ first: Token, _ tokens: [Token], line: Int, into b: inout RuleSetBuilder) throws(Diagnostic) {
        let file = b.file
        func error(_ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: file, line: line, column: col, message: msg) }
        guard let place = places[first.text] else {
            throw error(first.column, "expected where the rule goes (\(firstWords.joined(separator: ", "))), got '\(first.text)'")
        }
        let jIndex = tokens.firstIndex(where: isTargetFlag)
        let target: Token? = jIndex.flatMap { $0 + 1 < tokens.count ? tokens[$0 + 1] : nil }
        let name = target?.text
        func chain(_ n: String) -> Token { Token(text: n, column: first.column) }
        func add(_ t: TableName, _ c: String, _ rule: [Token]) throws(Diagnostic) {
            try b.append(t, chain: chain(c), rule: rule, line: line)
        }
        func hookTable() -> TableName {
            guard let name else { return .nat }
            if natTargets.contains(name) || natNeutral.contains(name) { return .nat }
            if rawTargets.contains(name) { return .raw }
            if builtinTargets.contains(name) || extensionTargets.contains(name) { return .mangle }
            return .nat  // a chain name: VNS3 rules have no user chains, the builder says so
        }

        switch (place, name) {
        case (.pre, "LOOKUP"), (.routing, "LOOKUP"), (.macro, "LOOKUP"):
            try lookup(tokens, jIndex: jIndex!, line: line, into: &b, chain: chain("PREROUTING"))
        case (_, "LOOKUP"):
            throw error(target!.column, "LOOKUP routes before the routing decision: write it in PREROUTING, ROUTING_CUST or MACRO_CUST")
        case (.macro, "COPY"):
            try copy(tokens, line: line, into: &b, first: first)
        case (.pre, "COPY"), (.post, "COPY"):
            let bad = place == .pre ? "--outbound" : "--inbound"
            if let t = tokens.first(where: { $0.text == bad && !$0.quoted }) {
                throw error(t.column, "'\(bad)' contradicts \(first.text) (write the COPY in MACRO_CUST to copy both ways)")
            }
            try add(.mangle, place == .pre ? "PREROUTING" : "POSTROUTING", tokens)
        case (_, "COPY"):
            throw error(target!.column, "COPY belongs in MACRO_CUST (or PREROUTING/POSTROUTING)")
        case (.pre, _):
            try add(hookTable(), "PREROUTING", tokens)
        case (.post, _):
            try add(hookTable(), "POSTROUTING", tokens)
        case (.forward, _):
            try add(.filter, "FORWARD", tokens)
        case (.input, _):
            try add(.filter, "INPUT", tokens)
        case (.output, _):
            try add(.filter, "OUTPUT", tokens)
        case (.routing, _):
            try add(.mangle, "PREROUTING", tokens)
        case (.macro, "MASQUERADE"), (.macro, "SNAT"):
            try add(.nat, "POSTROUTING", tokens)
        case (.macro, "DNAT"), (.macro, "REDIRECT"):
            try add(.nat, "PREROUTING", tokens)
        case (.macro, _):
            throw error(target?.column ?? first.column,
                        "MACRO_CUST takes COPY, LOOKUP, MASQUERADE, SNAT, DNAT or REDIRECT\(name.map { ", not '\($0)'" } ?? "")" +
                        (name == "NETMAP" ? " (NETMAP: write it in PREROUTING to map destinations or POSTROUTING to map sources)" : ""))
        }
    }

    /// `MACRO_CUST ... -j COPY --to IP [--from IFACE] [--inbound|--outbound|--bidirectional]`.
    static func copy(_ tokens: [Token], line: Int, into b: inout RuleSetBuilder, first: Token) throws(Diagnostic) {
        let file = b.file
        func error(_ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: file, line: line, column: col, message: msg) }
        let dirFlags = ["--inbound", "--outbound", "--bidirectional"]
        let given = tokens.filter { !$0.quoted && dirFlags.contains($0.text) }
        if given.count > 1 { throw error(given[1].column, "COPY takes one of --inbound, --outbound, --bidirectional") }
        let direction = given.first?.text ?? "--bidirectional"
        let base = tokens.filter { $0.quoted || !dirFlags.contains($0.text) }
        var from: Token? = nil
        if let k = base.firstIndex(where: { !$0.quoted && $0.text == "--from" }), k + 1 < base.count { from = base[k + 1] }
        var parts: [(chain: String, iface: String, flag: String)] = []
        if direction != "--outbound" { parts.append(("PREROUTING", "-i", "--inbound")) }
        if direction != "--inbound" { parts.append(("POSTROUTING", "-o", "--outbound")) }
        let anchor = given.first?.column ?? from?.column ?? first.column
        for p in parts {
            var rule = base
            if let from {
                let own = ["-i": ["-i", "--in-interface"], "-o": ["-o", "--out-interface"]][p.iface]!
                if let t = base.first(where: { !$0.quoted && own.contains($0.text) }) {
                    throw error(t.column, "COPY --from \(from.text) already names the interface; drop '\(t.text)'")
                }
                rule += [Token(text: p.iface, column: from.column), Token(text: from.text, column: from.column)]
            }
            rule.append(Token(text: p.flag, column: anchor))
            try b.append(.mangle, chain: Token(text: p.chain, column: first.column), rule: rule, line: line)
        }
    }

    /// `... -j LOOKUP --table NAME [--through]` into mangle PREROUTING, guarded; `--through`
    /// adds the return path.
    static func lookup(_ tokens: [Token], jIndex: Int, line: Int, into b: inout RuleSetBuilder, chain: Token) throws(Diagnostic) {
        let file = b.file
        func error(_ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: file, line: line, column: col, message: msg) }
        let jCol = tokens[jIndex].column
        let matches = Array(tokens[..<jIndex])
        let targetPart = Array(tokens[jIndex...])
        let hasMark = matches.enumerated().contains { k, t in
            !t.quoted && (t.text == "-m" || t.text == "--match") && k + 1 < matches.count && matches[k + 1].text == "mark"
        }
        let guardTokens = hasMark ? [] : ["-m", "mark", "--mark", "0"].map { Token(text: $0, column: jCol) }
        try b.append(.mangle, chain: chain, rule: matches + guardTokens + targetPart, line: line)

        guard targetPart.contains(where: { !$0.quoted && $0.text == "--through" }) else { return }
        // The return path: replies of connections whose original direction matched.
        var proto: [Token] = []
        var ct: [Token] = [Token(text: "-m", column: jCol), Token(text: "conntrack", column: jCol),
                           Token(text: "--ctdir", column: jCol), Token(text: "REPLY", column: jCol)]
        var other: [Token] = []
        let ctName = ["-s": "--ctorigsrc", "--source": "--ctorigsrc", "--src": "--ctorigsrc",
                      "-d": "--ctorigdst", "--destination": "--ctorigdst", "--dst": "--ctorigdst",
                      "--sport": "--ctorigsrcport", "--source-port": "--ctorigsrcport",
                      "--dport": "--ctorigdstport", "--destination-port": "--ctorigdstport"]
        var k = 0
        var bang: Token? = nil
        func value(_ opt: Token) throws(Diagnostic) -> Token {
            guard k + 1 < matches.count else { throw error(opt.column, "option '\(opt.text)' needs a value") }
            k += 1
            return matches[k]
        }
        while k < matches.count {
            let t = matches[k]
            if t.text == "!" && !t.quoted { bang = t; k += 1; continue }
            let neg = bang.map { [$0] } ?? []
            bang = nil
            switch t.text {
            case "-p", "--protocol":
                let v = try value(t)
                proto = neg + [t, v]
            case "-i", "--in-interface":
                _ = try value(t)  // replies arrive on another interface
            case _ where ctName[t.text] != nil:
                let v = try value(t)
                ct += neg + [Token(text: ctName[t.text]!, column: t.column), v]
            case "-m", "--match":
                let v = try value(t)
                switch v.text {
                case "tcp", "udp": break  // their ports move into conntrack
                case "comment":
                    guard k + 2 < matches.count, matches[k + 1].text == "--comment" else { throw error(v.column, "'-m comment' needs --comment") }
                    other += [t, v, matches[k + 1], matches[k + 2]]
                    k += 2
                case "mark":
                    throw error(v.column, "LOOKUP --through cannot derive the return path from '-m mark' (the replies carry their own mark); write the return rule yourself")
                default:
                    throw error(v.column, "LOOKUP --through cannot derive the return path from '-m \(v.text)'; write the return rule yourself")
                }
            default:
                throw error(t.column, "LOOKUP --through cannot derive the return path from '\(t.text)'; write the return rule yourself")
            }
            k += 1
        }
        try b.append(.mangle, chain: chain, rule: proto + ct + other + guardTokens + targetPart, line: line)
    }
}
