import Diagnostics

/// A rule set read from iptables command lines, with what was skipped on the way.
public struct CommandScriptResult: Sendable {
    public var ruleSet: RuleSet
    /// One line per skipped command that a reader should know about (`ip6tables ...`), as
    /// `file:line: note: ...`.
    public var notes: [String]
}

/// Reads shell scripts made of iptables command lines:
/// `iptables [-w [N]] [-W N] [-t TABLE] COMMAND ...` (also `/sbin/iptables`, `iptables-legacy`,
/// `iptables-nft`), with `\` continuation lines, comments and blank lines.
///
/// - Options are found anywhere on the line, as iptables' getopt finds them:
///   `iptables -A POSTROUTING -t nat -j MASQUERADE` is the nat table.
/// - Quotes are removed as the shell removes them, so `'!'` is iptables' `!`.
/// - The kernel applies each command when it runs: a jump to a chain that does not exist yet is
///   an error at that line, a `-D` of a missing rule too; read-only commands (`-L`, `-S`, `-C`)
///   change nothing.
/// - `set ...` lines and a `#!` line are skipped silently; `ip6tables ...` lines are skipped
///   with a note (Sluice handles IPv4); any other shell command is an error naming it (a script
///   that also configures something else is not a rule set; nothing is ignored silently).
/// - Shell variables (`$WAN`) are not expanded: an unquoted `$` is an error.
///
/// Several files can be read in order into one rule set (a script that builds on chains an
/// earlier one created); nothing is half-loaded.
public enum CommandScriptParser {
    public static let iptablesNames: Set<String> = ["iptables", "iptables-legacy", "iptables-nft"]
    public static let ip6tablesNames: Set<String> = ["ip6tables", "ip6tables-legacy", "ip6tables-nft"]

    public static func parse(_ text: String, file: String) throws(Diagnostic) -> CommandScriptResult {
        try parse(files: [(text: text, file: file)])
    }

    /// Reads the files in order into one builder; builds once at the end.
    public static func parse(files: [(text: String, file: String)]) throws(Diagnostic) -> CommandScriptResult {
        var b = RuleSetBuilder(file: files.first?.file ?? "<none>")
        var notes: [String] = []
        var maps: [String: [Int: [Segment]]] = [:]
        for f in files {
            b.file = f.file
            maps[f.file] = try apply(f.text, file: f.file, into: &b, notes: &notes)
        }
        do {
            return CommandScriptResult(ruleSet: try b.build(), notes: notes)
        } catch {
            // build() reports rules by their first line and logical column: map it back.
            if let segs = maps[error.file]?[error.line] { throw remap(error, segs) }
            throw error
        }
    }

    public static func load(paths: [String]) throws(Diagnostic) -> CommandScriptResult {
        var files: [(text: String, file: String)] = []
        for p in paths {
            do { files.append((try readTextFile(p), p)) } catch { throw Diagnostic(file: p, line: 0, column: 0, message: "cannot read rule file: \(error)") }
        }
        return try parse(files: files)
    }

    /// Where a piece of a logical (continued) line came from: its first character is at
    /// `offset` (0-based) in the logical line and at column 1 of physical line `line`.
    struct Segment { var offset: Int; var line: Int }

    static func remap(_ d: Diagnostic, _ segs: [Segment]) -> Diagnostic {
        guard segs.count > 1, d.column >= 1 else { return d }
        var s = segs[0]
        for x in segs where x.offset < d.column { s = x }
        var out = d
        out.line = s.line
        out.column = d.column - s.offset
        return out
    }

    /// Applies one file's commands to `b`; returns the segment maps of its continued lines.
    static func apply(_ text: String, file: String, into b: inout RuleSetBuilder, notes: inout [String]) throws(Diagnostic) -> [Int: [Segment]] {
        var maps: [Int: [Segment]] = [:]
        var logical = ""
        var segs: [Segment] = []
        var lineNumber = 0
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (k, raw) in lines.enumerated() {
            lineNumber = k + 1
            var line = raw
            if line.hasSuffix("\r") { line = line.dropLast() }
            // An odd number of trailing backslashes continues the line.
            let trailing = line.reversed().prefix { $0 == "\\" }.count
            let continues = trailing % 2 == 1
            if continues { line = line.dropLast() }
            if segs.isEmpty {
                logical = String(line)
                segs = [Segment(offset: 0, line: lineNumber)]
            } else {
                logical += " "
                segs.append(Segment(offset: logical.unicodeScalars.count, line: lineNumber))
                logical += line
            }
            if continues && k + 1 < lines.count { continue }
            let startLine = segs[0].line
            if segs.count > 1 { maps[startLine] = segs }
            do {
                try command(logical, file: file, line: startLine, into: &b, notes: &notes)
            } catch {
                throw error.file == file && error.line == startLine ? remap(error, segs) : error
            }
            segs = []
        }
        return maps
    }

    static let commands: [String: String] = [
        "-A": "-A", "--append": "-A", "-I": "-I", "--insert": "-I", "-D": "-D", "--delete": "-D",
        "-R": "-R", "--replace": "-R", "-N": "-N", "--new-chain": "-N", "--new": "-N",
        "-X": "-X", "--delete-chain": "-X", "-F": "-F", "--flush": "-F", "-P": "-P", "--policy": "-P",
        "-Z": "-Z", "--zero": "-Z", "-L": "-L", "--list": "-L", "-S": "-S", "--list-rules": "-S",
        "-C": "-C", "--check": "-C", "-E": "-E", "--rename-chain": "-E",
    ]

    /// One logical line.
    static func command(_ text: String, file: String, line: Int, into b: inout RuleSetBuilder, notes: inout [String]) throws(Diagnostic) {
        func error(_ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: file, line: line, column: col, message: msg) }
        let tokens = try Tokenizer.split(Substring(text), file: file, lineNumber: line)
        guard let program = tokens.first else { return }  // blank, comment, `#!` line
        let base = program.text.split(separator: "/").last.map(String.init) ?? program.text
        if program.text == "set" { return }
        if ip6tablesNames.contains(base) {
            notes.append("\(file):\(line): note: skipped an ip6tables command (Sluice handles IPv4)")
            return
        }
        guard iptablesNames.contains(base) else {
            throw error(program.column, "'\(program.text)' is not an iptables command (a command script holds iptables commands, 'set' and comments; ip6tables lines are skipped)")
        }

        // Global options anywhere on the line (unquoted: a quoted "-t" is some option's value).
        var table: TableName = .filter
        var tableToken: Token? = nil
        var rest: [Token] = []
        var i = 1
        while i < tokens.count {
            let t = tokens[i]
            if !t.quoted, t.text.contains("$") {
                throw error(t.column, "shell variable in '\(t.text)' is not expanded (a command script must be literal; for ${variables} use the vns3 dialect)")
            }
            if t.quoted { rest.append(t); i += 1; continue }
            switch t.text {
            case "-t", "--table":
                guard i + 1 < tokens.count else { throw error(t.column, "'\(t.text)' needs a table name") }
                guard tableToken == nil else { throw error(t.column, "the table is given twice") }
                let v = tokens[i + 1]
                guard let tn = TableName(rawValue: v.text) else { throw error(v.column, "unknown table '\(v.text)'") }
                table = tn; tableToken = v
                i += 2
            case "-w", "--wait":
                i += 1
                if i < tokens.count, Int(tokens[i].text) != nil { i += 1 }
            case "-W", "--wait-interval":
                guard i + 1 < tokens.count, Int(tokens[i + 1].text) != nil else { throw error(t.column, "'\(t.text)' needs a number") }
                i += 2
            default:
                if t.text.hasPrefix("--table=") {
                    guard tableToken == nil else { throw error(t.column, "the table is given twice") }
                    let name = String(t.text.dropFirst("--table=".count))
                    guard let tn = TableName(rawValue: name) else { throw error(t.column + 8, "unknown table '\(name)'") }
                    table = tn; tableToken = Token(text: name, column: t.column + 8)
                } else {
                    rest.append(t)
                }
                i += 1
            }
        }
        // From here on the shell has removed the quotes: iptables sees plain words.
        for k in rest.indices { rest[k].quoted = false }

        // The command, wherever it stands, and its positional arguments right after it.
        guard let ci = rest.firstIndex(where: { commands[$0.text] != nil }) else {
            throw error(program.column, "no command in this iptables line (expected -A, -I, -D, -R, -N, -X, -F, -P, -Z, -L or -S)")
        }
        if let second = rest[(ci + 1)...].first(where: { commands[$0.text] != nil }) {
            throw error(second.column, "only one command per line ('\(rest[ci].text)' and '\(second.text)')")
        }
        let cmd = commands[rest[ci].text]!
        var positional: [Token] = []
        var j = ci + 1
        func isWord(_ k: Int) -> Bool { k < rest.count && !rest[k].text.hasPrefix("-") && rest[k].text != "!" }
        func isNumber(_ k: Int) -> Bool { k < rest.count && Int(rest[k].text) != nil }
        switch cmd {
        case "-A", "-N", "-C":
            if isWord(j) { positional.append(rest[j]); j += 1 }
        case "-I", "-D":
            if isWord(j) { positional.append(rest[j]); j += 1 }
            if positional.count == 1, isNumber(j) { positional.append(rest[j]); j += 1 }
        case "-R", "-P", "-E":
            for _ in 0 ..< 2 where isWord(j) { positional.append(rest[j]); j += 1 }
        default:  // -X -F -Z -L -S: an optional chain (and -Z/-S an optional rule number)
            if isWord(j) { positional.append(rest[j]); j += 1 }
            if (cmd == "-Z" || cmd == "-S"), positional.count == 1, isNumber(j) { positional.append(rest[j]); j += 1 }
        }
        let ruleTokens = Array(rest[..<ci]) + Array(rest[j...])
        let cmdToken = Token(text: cmd, column: rest[ci].column)

        switch cmd {
        case "-L", "-S", "-C":
            // Read-only: nothing changes, but iptables fails on a chain that does not exist.
            if let chain = positional.first, !b.chainExists(table, chain.text) {
                throw error(chain.column, "chain '\(chain.text)' does not exist in table '\(table.rawValue)'")
            }
            return
        case "-A", "-I", "-R", "-D":
            if let chain = positional.first, !b.chainExists(table, chain.text) {
                throw error(chain.column, "chain '\(chain.text)' does not exist in table '\(table.rawValue)'")
            }
            // The kernel resolves a jump when the command runs, not at a later COMMIT.
            for (k, t) in ruleTokens.enumerated() where ["-j", "--jump", "-g", "--goto"].contains(t.text) && k + 1 < ruleTokens.count {
                let target = ruleTokens[k + 1]
                if builtinTargets.contains(target.text) || extensionTargets.contains(target.text) { continue }
                if !b.chainExists(table, target.text) {
                    throw error(target.column, "chain '\(target.text)' does not exist in table '\(table.rawValue)' (jump target; the kernel applies each command at once, so '-N \(target.text)' must come first)")
                }
            }
        default:
            break
        }
        try RestoreParser.command(&b, table: table, [cmdToken] + positional + ruleTokens, line: line, column: program.column)
    }
}
