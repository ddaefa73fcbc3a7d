import Diagnostics
import Wire

/// IP sets for `-m set --match-set`, read from an `ipset save` file:
/// `create NAME hash:ip|hash:net [family inet] [options...]` and `add NAME ADDR[/LEN]`.
/// Only IPv4 address sets are supported (hash:ip, hash:net, bitmap:ip); other types are refused
/// with file:line:column.
public struct IPSetCollection: Equatable, Sendable {
    public struct IPSet: Equatable, Sendable {
        public var name: String
        public var type: String
        public var members: [IPv4Prefix]
    }
    public var sets: [IPSet] = []

    public init() {}

    public func index(_ name: String) -> Int? { sets.firstIndex { $0.name == name } }

    public static func parse(_ text: String, file: String) throws(Diagnostic) -> IPSetCollection {
        var c = IPSetCollection()
        var ln = 0
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            ln += 1
            let t = try Tokenizer.split(raw, file: file, lineNumber: ln)
            guard let cmd = t.first else { continue }
            func err(_ k: Int, _ m: String) -> Diagnostic { Diagnostic(file: file, line: ln, column: k < t.count ? t[k].column : cmd.column, message: m) }
            switch cmd.text {
            case "create", "-N", "-exist":
                guard t.count >= 3 else { throw err(0, "create needs a name and a type") }
                guard ["hash:ip", "hash:net", "bitmap:ip"].contains(t[2].text) else {
                    throw err(2, "unsupported set type '\(t[2].text)' (hash:ip, hash:net, bitmap:ip)")
                }
                if let f = t.firstIndex(where: { $0.text == "family" }), f + 1 < t.count, t[f + 1].text != "inet" {
                    throw err(f + 1, "unsupported family '\(t[f + 1].text)' (IPv4 sets only)")
                }
                guard c.index(t[1].text) == nil else { throw err(1, "set '\(t[1].text)' already exists") }
                c.sets.append(IPSet(name: t[1].text, type: t[2].text, members: []))
            case "add", "-A":
                guard t.count >= 3 else { throw err(0, "add needs a set and an entry") }
                guard let s = c.index(t[1].text) else { throw err(1, "set '\(t[1].text)' does not exist") }
                if t[2].text.contains("-"), c.sets[s].type != "hash:net" {
                    let parts = t[2].text.split(separator: "-")
                    guard parts.count == 2, let a = IPv4Address(parts[0]), let b = IPv4Address(parts[1]), a <= b, b.value - a.value < 65536 else {
                        throw err(2, "bad range '\(t[2].text)'")
                    }
                    for v in a.value ... b.value { c.sets[s].members.append(IPv4Prefix(address: IPv4Address(v), length: 32)) }
                    continue
                }
                guard let p = IPv4Prefix(t[2].text) else { throw err(2, "bad entry '\(t[2].text)'") }
                if c.sets[s].type != "hash:net" && p.length != 32 {
                    // hash:ip and bitmap:ip take a CIDR as "every address in it".
                    guard p.length >= 16 else { throw err(2, "range too large for \(c.sets[s].type): '\(t[2].text)'") }
                    for v in p.network ... p.broadcast { c.sets[s].members.append(IPv4Prefix(address: IPv4Address(v), length: 32)) }
                } else {
                    c.sets[s].members.append(p)
                }
            default:
                throw err(0, "unsupported ipset command '\(cmd.text)'")
            }
        }
        return c
    }

    public static func load(path: String) throws(Diagnostic) -> IPSetCollection {
        let text: String
        do { text = try readTextFile(path) } catch { throw Diagnostic(file: path, line: 0, column: 0, message: "cannot read ipset file: \(error)") }
        return try parse(text, file: path)
    }
}
