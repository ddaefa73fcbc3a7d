#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Diagnostics
import Wire

/// Parses iptables-restore / iptables-save files: `*table` sections (each starts from an
/// empty table, as iptables-restore without --noflush), `:CHAIN POLICY [p:b]` declarations,
/// commands (`-A`, `-I`, `-R`, `-D`, `-N`, `-P`, `-F`, `-X`) with optional `[p:b]` counters,
/// `COMMIT`. Anything unsupported is refused with `file:line:column`, and a file with any
/// error yields no rule set (nothing is half-loaded).
public enum RestoreParser {
    public static func parse(_ text: String, file: String) throws(Diagnostic) -> RuleSet {
        var b = RuleSetBuilder(file: file)
        var current: (table: TableName, line: Int)? = nil
        var committed = Set<TableName>()
        var lineNumber = 0
        func error(_ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: file, line: lineNumber, column: col, message: msg) }
        // "\r\n" is one Character in Swift: split on both forms.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = rawLine
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let col = line.count - trimmed.count + 1
            if trimmed.hasPrefix("*") {
                if let c = current { throw error(col, "table '\(trimmed.dropFirst())' starts before COMMIT of '\(c.table.rawValue)'") }
                let name = String(trimmed.dropFirst()).trimmingTrailingBlanks()
                guard let t = TableName(rawValue: name) else { throw error(col + 1, "unknown table '\(name)'") }
                guard !committed.contains(t) else { throw error(col + 1, "table '\(name)' appears twice") }
                b.resetTable(t)
                current = (t, lineNumber)
                continue
            }
            if trimmed.trimmingTrailingBlanks() == "COMMIT" {
                guard let c = current else { throw error(col, "COMMIT outside a table") }
                committed.insert(c.table)
                current = nil
                continue
            }
            guard let table = current?.table else { throw error(col, "expected '*table' before this line") }
            if trimmed.hasPrefix(":") {
                var tokens = try Tokenizer.split(trimmed.dropFirst(), file: file, lineNumber: lineNumber)
                for i in tokens.indices { tokens[i].column += col }
                guard let name = tokens.first else { throw error(col, "chain declaration without a name") }
                guard tokens.count <= 3 else { throw error(tokens[3].column, "unexpected '\(tokens[3].text)' in chain declaration") }
                var policy: Policy? = nil
                if tokens.count > 1, tokens[1].text != "-" {
                    guard let p = Policy(rawValue: tokens[1].text) else { throw error(tokens[1].column, "bad policy '\(tokens[1].text)' (ACCEPT, DROP or - for a user chain)") }
                    policy = p
                }
                var counters = Counters()
                if tokens.count > 2 {
                    guard let c = Counters(text: tokens[2].text) else { throw error(tokens[2].column, "bad counters '\(tokens[2].text)'") }
                    counters = c
                }
                if policy != nil && !table.builtinChains.contains(name.text) {
                    throw error(tokens[1].column, "user chain '\(name.text)' cannot have a policy")
                }
                try b.declareChain(table, name: name, policy: policy, counters: counters, line: lineNumber)
                continue
            }
            var tokens = try Tokenizer.split(trimmed, file: file, lineNumber: lineNumber)
            for i in tokens.indices { tokens[i].column += col - 1 }
            var counters = Counters()
            if let first = tokens.first, first.text.hasPrefix("[") {
                guard let c = Counters(text: first.text) else { throw error(first.column, "bad counters '\(first.text)'") }
                counters = c
                tokens.removeFirst()
            }
            try command(&b, table: table, tokens, counters: counters, line: lineNumber, column: col)
        }
        if let c = current {
            throw Diagnostic(file: file, line: c.line, column: 1, message: "table '\(c.table.rawValue)' has no COMMIT")
        }
        return try b.build()
    }

    /// One iptables command (without `iptables` and `-t`), shared with the command-line dialect.
    public static func command(_ b: inout RuleSetBuilder, table: TableName, _ tokens: [Token], counters: Counters = Counters(),
                               line: Int, column: Int) throws(Diagnostic) {
        let file = b.file
        func error(_ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: file, line: line, column: col, message: msg) }
        guard let cmd = tokens.first else { throw error(column, "empty command") }
        func arg(_ i: Int, _ what: String) throws(Diagnostic) -> Token {
            guard i < tokens.count else { throw error(cmd.column, "'\(cmd.text)' needs \(what)") }
            return tokens[i]
        }
        let rest = { (i: Int) -> [Token] in i < tokens.count ? Array(tokens[i...]) : [] }
        switch cmd.text {
        case "-A", "--append":
            try b.append(table, chain: try arg(1, "a chain"), rule: rest(2), counters: counters, line: line)
        case "-I", "--insert":
            let chain = try arg(1, "a chain")
            if tokens.count > 2, Int(tokens[2].text) != nil {
                try b.insert(table, chain: chain, position: tokens[2], rule: rest(3), counters: counters, line: line)
            } else {
                try b.insert(table, chain: chain, position: nil, rule: rest(2), counters: counters, line: line)
            }
        case "-R", "--replace":
            try b.replace(table, chain: try arg(1, "a chain"), position: try arg(2, "a rule number"), rule: rest(3), line: line)
        case "-D", "--delete":
            try b.delete(table, chain: try arg(1, "a chain"), rule: rest(2), line: line)
        case "-N", "--new-chain", "--new":
            guard tokens.count == 2 else { throw error(cmd.column, "'-N' takes one chain name") }
            try b.declareChain(table, name: tokens[1], policy: nil, counters: Counters(), line: line)
        case "-P", "--policy":
            guard tokens.count == 3 else { throw error(cmd.column, "'-P' takes a chain and a policy") }
            try b.setPolicy(table, chain: tokens[1], policy: tokens[2], line: line)
        case "-F", "--flush":
            guard tokens.count <= 2 else { throw error(tokens[2].column, "unexpected '\(tokens[2].text)'") }
            try b.flush(table, chain: tokens.count == 2 ? tokens[1] : nil, line: line)
        case "-X", "--delete-chain":
            guard tokens.count <= 2 else { throw error(tokens[2].column, "unexpected '\(tokens[2].text)'") }
            try b.deleteChain(table, chain: tokens.count == 2 ? tokens[1] : nil, line: line)
        case "-Z", "--zero":
            break  // counters of a rule set being loaded start at what the file says
        default:
            throw error(cmd.column, "unsupported command '\(cmd.text)'")
        }
    }

    public static func load(path: String) throws(Diagnostic) -> RuleSet {
        let text: String
        do { text = try readTextFile(path) } catch { throw Diagnostic(file: path, line: 0, column: 0, message: "cannot read rule file: \(error)") }
        return try parse(text, file: path)
    }
}

extension Counters {
    /// `[packets:bytes]`
    public init?(text s: String) {
        guard s.hasPrefix("["), s.hasSuffix("]") else { return nil }
        let inner = s.dropFirst().dropLast().split(separator: ":", omittingEmptySubsequences: false)
        guard inner.count == 2, let p = UInt64(inner[0]), let b = UInt64(inner[1]) else { return nil }
        self.init(packets: p, bytes: b)
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

extension StringProtocol {
    func trimmingTrailingBlanks() -> String {
        var s = Substring(self)
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
