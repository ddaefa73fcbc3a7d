import Diagnostics

/// The rule-file dialects Sluice reads.
public enum RuleDialect: String, CaseIterable, Sendable {
    /// iptables-restore / iptables-save files.
    case restore
    /// Shell scripts of iptables command lines.
    case cmds
    /// The VNS3 edge firewall dialect.
    case vns3
}

/// A loaded rule set and what the loader has to say about it.
public struct LoadedRules: Sendable {
    public var ruleSet: RuleSet
    public var dialect: RuleDialect
    /// Things skipped or not used (ip6tables lines, unused variables), one per line.
    public var notes: [String]
}

/// One entry point for the command line: picks the dialect (given, or from the file's first
/// line) and parses.
public enum RuleLoader {
    /// The dialect a text is written in, from its first line that is not blank or a comment:
    /// `*table` is restore; `iptables`, `/sbin/iptables`, `ip6tables` (any path, -legacy/-nft)
    /// or `set` is cmds; a VNS3 first word (PREROUTING, MACRO_CUST, ...) is vns3. An empty file
    /// is restore (an empty rule set). nil when the line fits none; `line` is its number.
    public static func detect(_ text: String) -> (dialect: RuleDialect?, line: Int, word: String) {
        var n = 0
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            n += 1
            let t = raw.drop { $0 == " " || $0 == "\t" }
            if t.isEmpty || t.hasPrefix("#") || t.allSatisfy({ $0 == "\r" || $0 == " " || $0 == "\t" }) { continue }
            if t.hasPrefix("*") { return (.restore, n, String(t.prefix { $0 != " " && $0 != "\r" })) }
            let word = String(t.prefix { $0 != " " && $0 != "\t" && $0 != "\r" })
            let base = word.split(separator: "/").last.map(String.init) ?? word
            if word == "set" || CommandScriptParser.iptablesNames.contains(base) || CommandScriptParser.ip6tablesNames.contains(base) {
                return (.cmds, n, word)
            }
            if VNS3Parser.places[word] != nil { return (.vns3, n, word) }
            return (nil, n, word)
        }
        return (.restore, 0, "")
    }

    /// Loads one or more files (several only for cmds, applied in order to one rule set).
    public static func loadWithNotes(paths: [String], dialect: RuleDialect? = nil, variables: [String: String] = [:]) throws(Diagnostic) -> LoadedRules {
        guard let firstPath = paths.first else { throw Diagnostic(file: "<none>", line: 0, column: 0, message: "no rule file given") }
        var texts: [(text: String, file: String)] = []
        for p in paths {
            do { texts.append((try readTextFile(p), p)) } catch { throw Diagnostic(file: p, line: 0, column: 0, message: "cannot read rule file: \(error)") }
        }
        var chosen = dialect
        if chosen == nil {
            let d = detect(texts[0].text)
            guard let found = d.dialect else {
                throw Diagnostic(file: firstPath, line: d.line, column: 1,
                                 message: "cannot tell the rule dialect from '\(d.word)' (expected '*table', an iptables command or a VNS3 chain name such as PREROUTING); give --dialect restore|cmds|vns3")
            }
            chosen = found
        }
        let dl = chosen!
        var notes: [String] = []
        if dl != .vns3 && !variables.isEmpty {
            notes.append("note: variables (--var/--vars) are used by the vns3 dialect only; \(firstPath) is read as \(dl.rawValue)")
        }
        if dl != .cmds && paths.count > 1 {
            throw Diagnostic(file: paths[1], line: 0, column: 0, message: "several rule files are read in order only in the cmds dialect (this is \(dl.rawValue))")
        }
        switch dl {
        case .restore:
            return LoadedRules(ruleSet: try RestoreParser.parse(texts[0].text, file: firstPath), dialect: dl, notes: notes)
        case .cmds:
            let r = try CommandScriptParser.parse(files: texts)
            return LoadedRules(ruleSet: r.ruleSet, dialect: dl, notes: notes + r.notes)
        case .vns3:
            return LoadedRules(ruleSet: try VNS3Parser.parse(texts[0].text, file: firstPath, variables: variables), dialect: dl, notes: notes)
        }
    }

    public static func load(path: String, dialect: RuleDialect? = nil, variables: [String: String] = [:]) throws(Diagnostic) -> RuleSet {
        try loadWithNotes(paths: [path], dialect: dialect, variables: variables).ruleSet
    }

    /// Variables from `--vars FILE` (if any) overridden by `--var NAME=VALUE` bindings, in order.
    public static func variables(file: String?, bindings: [String]) throws(Diagnostic) -> [String: String] {
        var vars: [String: String] = [:]
        if let file {
            let text: String
            do { text = try readTextFile(file) } catch { throw Diagnostic(file: file, line: 0, column: 0, message: "cannot read vars file: \(error)") }
            vars = try VNS3Parser.parseVariables(text, file: file)
        }
        for b in bindings {
            guard let (name, value) = VNS3Parser.binding(b) else {
                throw Diagnostic(file: "--var", line: 0, column: 0, message: "expected NAME=VALUE, got '\(b)'")
            }
            vars[name] = value
        }
        return vars
    }
}
