import Diagnostics
import Wire

/// Builds a rule set command by command (iptables-restore lines, iptables command lines, the
/// VNS3 dialect all end here), then resolves chain references and checks what the kernel
/// checks at table load: jumps to existing user chains, no loops, targets only in the tables
/// and hooks that allow them. `build()` returns the whole rule set or throws; nothing is
/// half-loaded.
public struct RuleSetBuilder {
    /// The file being read; a caller that loads several files into one builder (iptables
    /// command scripts) sets it before each file, so rule origins and messages name the right one.
    public var file: String
    public var vns3: Bool

    struct PendingRule {
        var rule: Rule
        var ref: TargetRef
        var targetColumn: Int
    }
    struct PendingChain {
        var name: String
        var policy: Policy?
        var counters: Counters
        var rules: [PendingRule]
        var line: Int
    }
    var tables: [(name: TableName, chains: [PendingChain])] = []
    /// Chain name -> index, per table (parallel to `tables`): rule sets have thousands of chains.
    var names: [[String: Int]] = []

    public init(file: String, vns3: Bool = false) { self.file = file; self.vns3 = vns3 }

    func error(_ line: Int, _ col: Int, _ msg: String) -> Diagnostic { Diagnostic(file: file, line: line, column: col, message: msg) }

    @discardableResult
    mutating func tableIndex(_ t: TableName) -> Int {
        if let i = tables.firstIndex(where: { $0.name == t }) { return i }
        tables.append((t, t.builtinChains.map { PendingChain(name: $0, policy: .accept, counters: Counters(), rules: [], line: 0) }))
        names.append(Dictionary(uniqueKeysWithValues: t.builtinChains.enumerated().map { ($1, $0) }))
        return tables.count - 1
    }

    mutating func reindex(_ ti: Int) {
        names[ti] = Dictionary(uniqueKeysWithValues: tables[ti].chains.enumerated().map { ($1.name, $0) })
    }

    /// Empties a table to its built-in chains with ACCEPT policies (iptables-restore without
    /// --noflush does this for every table in the file).
    public mutating func resetTable(_ t: TableName) {
        let i = tableIndex(t)
        tables[i].chains = t.builtinChains.map { PendingChain(name: $0, policy: .accept, counters: Counters(), rules: [], line: 0) }
        reindex(i)
    }

    public func chainExists(_ t: TableName, _ name: String) -> Bool {
        guard let ti = tables.firstIndex(where: { $0.name == t }) else { return t.builtinChains.contains(name) }
        return names[ti][name] != nil
    }

    func chainIndex(_ ti: Int, _ tok: Token, line: Int) throws(Diagnostic) -> Int {
        guard let c = names[ti][tok.text] else {
            throw error(line, tok.column, "chain '\(tok.text)' does not exist in table '\(tables[ti].name.rawValue)'")
        }
        return c
    }

    public static func validateChainName(_ name: String) -> String? {
        if name.isEmpty || name.utf8.count > 28 { return "invalid chain name '\(name)' (1 to 28 characters)" }
        if name.hasPrefix("-") || name.hasPrefix("!") { return "invalid chain name '\(name)'" }
        if builtinTargets.contains(name) || extensionTargets.contains(name) { return "chain name '\(name)' is reserved" }
        return nil
    }

    /// `:NAME POLICY [p:b]` or `-N NAME`.
    public mutating func declareChain(_ t: TableName, name: Token, policy: Policy?, counters: Counters, line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        if t.builtinChains.contains(name.text) {
            guard let policy else { throw error(line, name.column, "built-in chain '\(name.text)' needs a policy") }
            let c = names[ti][name.text]!
            tables[ti].chains[c].policy = policy
            tables[ti].chains[c].counters = counters
            return
        }
        if let msg = Self.validateChainName(name.text) { throw error(line, name.column, msg) }
        if policy != nil { throw error(line, name.column, "user chain '\(name.text)' cannot have a policy") }
        if names[ti][name.text] != nil { throw error(line, name.column, "chain '\(name.text)' already exists") }
        tables[ti].chains.append(PendingChain(name: name.text, policy: nil, counters: counters, rules: [], line: line))
        names[ti][name.text] = tables[ti].chains.count - 1
    }

    public mutating func setPolicy(_ t: TableName, chain: Token, policy: Token, line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        let c = try chainIndex(ti, chain, line: line)
        guard tables[ti].chains[c].policy != nil else { throw error(line, chain.column, "cannot set a policy on user chain '\(chain.text)'") }
        guard let p = Policy(rawValue: policy.text) else { throw error(line, policy.column, "bad policy '\(policy.text)' (ACCEPT or DROP)") }
        tables[ti].chains[c].policy = p
    }

    func parseRule(_ t: TableName, chain: String, tokens: [Token], counters: Counters, line: Int) throws(Diagnostic) -> PendingRule {
        let p = try RuleParser.parse(tokens, context: RuleContext(file: file, line: line, table: t, chain: chain, vns3: vns3))
        let target: RuleTarget
        if case .target(let tt) = p.target { target = tt } else { target = .none }
        return PendingRule(rule: Rule(match: p.match, target: target, counters: counters, origin: SourceLine(file: file, line: line)),
                           ref: p.target, targetColumn: p.targetColumn)
    }

    /// `-A CHAIN rule...`
    public mutating func append(_ t: TableName, chain: Token, rule tokens: [Token], counters: Counters = Counters(), line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        let c = try chainIndex(ti, chain, line: line)
        tables[ti].chains[c].rules.append(try parseRule(t, chain: chain.text, tokens: tokens, counters: counters, line: line))
    }

    /// `-I CHAIN [N] rule...` (N is 1-based; default 1).
    public mutating func insert(_ t: TableName, chain: Token, position: Token?, rule tokens: [Token], counters: Counters = Counters(), line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        let c = try chainIndex(ti, chain, line: line)
        var at = 1
        if let position {
            guard let n = Int(position.text), n >= 1, n <= tables[ti].chains[c].rules.count + 1 else {
                throw error(line, position.column, "index of insertion '\(position.text)' out of range (chain has \(tables[ti].chains[c].rules.count) rules)")
            }
            at = n
        }
        tables[ti].chains[c].rules.insert(try parseRule(t, chain: chain.text, tokens: tokens, counters: counters, line: line), at: at - 1)
    }

    /// `-R CHAIN N rule...`
    public mutating func replace(_ t: TableName, chain: Token, position: Token, rule tokens: [Token], line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        let c = try chainIndex(ti, chain, line: line)
        guard let n = Int(position.text), n >= 1, n <= tables[ti].chains[c].rules.count else {
            throw error(line, position.column, "index of replacement '\(position.text)' out of range")
        }
        tables[ti].chains[c].rules[n - 1] = try parseRule(t, chain: chain.text, tokens: tokens, counters: Counters(), line: line)
    }

    /// `-D CHAIN N` or `-D CHAIN rule...` (the first rule equal to the one given).
    public mutating func delete(_ t: TableName, chain: Token, rule tokens: [Token], line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        let c = try chainIndex(ti, chain, line: line)
        if tokens.count == 1, let n = Int(tokens[0].text) {
            guard n >= 1, n <= tables[ti].chains[c].rules.count else { throw error(line, tokens[0].column, "index of deletion '\(n)' out of range") }
            tables[ti].chains[c].rules.remove(at: n - 1)
            return
        }
        let want = try parseRule(t, chain: chain.text, tokens: tokens, counters: Counters(), line: line)
        guard let k = tables[ti].chains[c].rules.firstIndex(where: { $0.rule.match == want.rule.match && $0.ref == want.ref }) else {
            throw error(line, chain.column, "bad rule (does a matching rule exist in that chain?)")
        }
        tables[ti].chains[c].rules.remove(at: k)
    }

    /// `-F [CHAIN]`
    public mutating func flush(_ t: TableName, chain: Token?, line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        if let chain {
            let c = try chainIndex(ti, chain, line: line)
            tables[ti].chains[c].rules = []
        } else {
            for c in tables[ti].chains.indices { tables[ti].chains[c].rules = [] }
        }
    }

    /// `-X [CHAIN]`: deletes one empty, unreferenced user chain, or all user chains.
    public mutating func deleteChain(_ t: TableName, chain: Token?, line: Int) throws(Diagnostic) {
        let ti = tableIndex(t)
        func referenced(_ name: String) -> Bool {
            tables[ti].chains.contains { $0.rules.contains { if case .chain(let n, _) = $0.ref { n == name } else { false } } }
        }
        if let chain {
            let c = try chainIndex(ti, chain, line: line)
            guard tables[ti].chains[c].policy == nil else { throw error(line, chain.column, "cannot delete built-in chain '\(chain.text)'") }
            guard tables[ti].chains[c].rules.isEmpty else { throw error(line, chain.column, "chain '\(chain.text)' is not empty") }
            guard !referenced(chain.text) else { throw error(line, chain.column, "chain '\(chain.text)' is still referenced") }
            tables[ti].chains.remove(at: c)
            reindex(ti)
        } else {
            for ch in tables[ti].chains where ch.policy == nil {
                let stillUsed = tables[ti].chains.contains { $0.policy != nil && $0.rules.contains { if case .chain(let n, _) = $0.ref { n == ch.name } else { false } } }
                if stillUsed { throw error(line, 1, "chain '\(ch.name)' is still referenced from a built-in chain") }
            }
            tables[ti].chains.removeAll { $0.policy == nil }
            reindex(ti)
        }
    }

    /// Resolves chain references, checks loops and where targets may stand, and returns the
    /// rule set (tables in kernel order).
    public func build() throws(Diagnostic) -> RuleSet {
        var out: [Table] = []
        for (ti, (name, chains)) in tables.enumerated().sorted(by: { $0.element.name < $1.element.name }) {
            var table = Table(name: name)
            table.chains = chains.map { Chain(name: $0.name, policy: $0.policy, counters: $0.counters, rules: $0.rules.map(\.rule)) }
            let index = names[ti]
            for (c, ch) in chains.enumerated() {
                for (r, pr) in ch.rules.enumerated() {
                    guard case .chain(let target, let isGoto) = pr.ref else { continue }
                    guard let idx = index[target] else {
                        throw Diagnostic(file: pr.rule.origin.file, line: pr.rule.origin.line, column: pr.targetColumn, message: "chain '\(target)' does not exist (jump target)")
                    }
                    guard chains[idx].policy == nil else {
                        throw Diagnostic(file: pr.rule.origin.file, line: pr.rule.origin.line, column: pr.targetColumn, message: "cannot jump to built-in chain '\(target)'")
                    }
                    table.chains[c].rules[r].target = isGoto ? .goto(idx) : .jump(idx)
                }
            }
            try checkLoops(table)
            try checkHooks(table, pending: chains)
            out.append(table)
        }
        return RuleSet(tables: out)
    }

    /// The kernel refuses a table whose jumps form a loop (ELOOP).
    func checkLoops(_ table: Table) throws(Diagnostic) {
        var color = [UInt8](repeating: 0, count: table.chains.count)
        func visit(_ c: Int) -> Rule? {
            color[c] = 1
            for r in table.chains[c].rules {
                let next: Int
                switch r.target {
                case .jump(let n), .goto(let n): next = n
                default: continue
                }
                if color[next] == 1 { return r }
                if color[next] == 0, let loop = visit(next) { return loop }
            }
            color[c] = 2
            return nil
        }
        for c in table.chains.indices where color[c] == 0 {
            if let r = visit(c) {
                throw Diagnostic(file: r.origin.file, line: r.origin.line, column: 1, message: "jump creates a loop (chain '\(table.chains[c].name)' reaches itself)")
            }
        }
    }

    /// Targets and matches that the kernel allows only at some hooks, checked against the
    /// built-in chains that can reach each rule (as xt_check_target does with the hook mask).
    func checkHooks(_ table: Table, pending: [PendingChain]) throws(Diagnostic) {
        let hooks = Self.reachingHooks(table)
        for (c, ch) in table.chains.enumerated() {
            for (r, rule) in ch.rules.enumerated() {
                let reached = hooks[c]
                let allowed: Set<String>?
                switch rule.target {
                case .reject: allowed = ["INPUT", "FORWARD", "OUTPUT"]
                case .dnat, .redirect: allowed = ["PREROUTING", "OUTPUT"]
                case .snat, .masquerade: allowed = ["POSTROUTING", "INPUT"]
                case .tcpmss(.clampToPMTU): allowed = ["FORWARD", "OUTPUT", "POSTROUTING"]
                default: allowed = nil
                }
                if let allowed, let bad = reached.subtracting(allowed).sorted().first {
                    let via = ch.policy == nil ? " (chain '\(ch.name)' is reached from \(bad))" : ""
                    throw Diagnostic(file: rule.origin.file, line: rule.origin.line, column: pending[c].rules[r].targetColumn, message:
                                "target '\(rule.target.name)' is not valid in \(bad)\(via)")
                }
            }
        }
    }

    /// For each chain, the built-in chains (hooks) from which it can be reached.
    public static func reachingHooks(_ table: Table) -> [Set<String>] {
        var result = [Set<String>](repeating: [], count: table.chains.count)
        for (b, ch) in table.chains.enumerated() where ch.isBuiltin {
            var stack = [b]
            var seen = Set<Int>()
            while let c = stack.popLast() {
                guard seen.insert(c).inserted else { continue }
                result[c].insert(ch.name)
                for r in table.chains[c].rules {
                    switch r.target {
                    case .jump(let n), .goto(let n): stack.append(n)
                    default: break
                    }
                }
            }
        }
        return result
    }
}
