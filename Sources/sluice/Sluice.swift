#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Classifier
import Diagnostics
import Engine
import NetModel
import Replay
import Rules
import Wire

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "A userspace packet-processing engine: iptables semantics inline on NFQUEUE and over captures.",
        subcommands: [ReplayCommand.self, CheckCommand.self, TraceCommand.self, RunCommand.self, CtlCommand.self, BenchCommand.self]
    )
}

/// How a command picks and reads its rule files: the dialect (given or detected) and the
/// `${variables}` of the VNS3 dialect.
struct RuleOptions: ParsableArguments {
    @Option(name: .long, help: "Rule dialect: restore (iptables-restore), cmds (iptables command lines) or vns3. Default: from the file's first line.")
    var dialect: String?

    @Option(name: .customLong("var"), help: "Bind ${NAME} in a vns3 rule file (NAME=VALUE). Repeatable; overrides --vars.")
    var vars: [String] = []

    @Option(name: .customLong("vars"), help: "File of NAME=VALUE lines (# comments) binding ${NAME} in a vns3 rule file.")
    var varsFile: String?

    /// Loads the files (several only for cmds, in order), prints the loader's notes on stderr,
    /// and exits with the diagnostic on error.
    func load(_ paths: [String]) -> RuleSet {
        guard !paths.isEmpty else { fail("no rule file given") }
        var d: RuleDialect? = nil
        if let dialect {
            guard let x = RuleDialect(rawValue: dialect) else { fail("--dialect must be restore, cmds or vns3, not '\(dialect)'") }
            d = x
        }
        do {
            let variables = try RuleLoader.variables(file: varsFile, bindings: vars)
            let loaded = try RuleLoader.loadWithNotes(paths: paths, dialect: d, variables: variables)
            for n in loaded.notes { writeStderr("sluice: \(n)\n") }
            return loaded.ruleSet
        } catch {
            fail(error.description)
        }
    }
}

/// Prints an error the way compilers do and exits non-zero.
func fail(_ message: String) -> Never {
    writeStderr("sluice: error: \(message)\n")
    exit(1)
}

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay captures through the rule set and network model; write what each interface emitted.",
        discussion: """
        Writes to DIR: <iface>.pcap per egress interface, local.pcap (delivered to the box), verdicts.jsonl \
        (one object per input packet), conntrack.txt and counters.rules (iptables-save -c format).
        """
    )

    @OptionGroup var box: BoxOptions

    @Option(name: .customLong("in"), help: "IFACE=CAPTURE: packets arriving on IFACE (local=CAPTURE: locally generated). Repeatable.")
    var inputs: [String] = []

    @Option(name: .long, help: "Output directory (created if missing).")
    var out: String

    @Flag(name: .long, help: "Do not print the summary.")
    var quiet = false

    @Option(name: .long, help: "Trace packet N (0-based, merged input order) hook by hook into DIR/trace.txt. Repeatable.")
    var trace: [Int] = []

    @Option(name: .customLong("conntrack-max"), help: "Connection table size (default 262144, like nf_conntrack_max).")
    var conntrackMax: Int = 262_144

    @Option(name: .customLong("conntrack-timeout"), help: "NAME=SECONDS, e.g. tcp_established=3600 (names as net.netfilter.nf_conntrack_*_timeout: tcp_syn_sent, tcp_syn_recv, tcp_established, tcp_fin_wait, tcp_close_wait, tcp_last_ack, tcp_time_wait, tcp_close, udp, udp_stream, icmp, generic). Repeatable.")
    var conntrackTimeouts: [String] = []

    @Flag(name: .customLong("no-conntrack-checksum"), help: "Do not verify L4 checksums in conntrack (nf_conntrack_checksum=0): for captures taken with checksum offload.")
    var noConntrackChecksum = false

    func run() throws {
        let set = box.loadRules()
        var ins: [ReplayInput] = []
        for spec in inputs {
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex else {
                fail("--in expects IFACE=CAPTURE, got '\(spec)'")
            }
            ins.append(ReplayInput(interface: String(spec[..<eq]), path: String(spec[spec.index(after: eq)...])))
        }
        guard !ins.isEmpty else { fail("at least one --in IFACE=CAPTURE is needed") }
        if box.network == nil {
            writeStderr("sluice: note: no --network: the box has no addresses or routes, so nothing is local and nothing can be forwarded\n")
        }
        let summary: ReplaySummary
        do {
            var options = ReplayOptions(rulesPath: box.rules[0], networkPath: box.network, inputs: ins, outDir: out,
                                        progress: isatty(2) != 0, ipsetsPath: box.ipsets)
            options.ruleSet = set
            options.traceIndices = Set(trace)
            options.engine.classifier = box.classifier
            guard conntrackMax >= 16 else { fail("--conntrack-max must be at least 16") }
            options.engine.conntrackCapacity = conntrackMax
            options.engine.conntrackChecksum = !noConntrackChecksum
            for spec in conntrackTimeouts {
                let parts = spec.split(separator: "=")
                guard parts.count == 2, let secs = Int64(parts[1]), secs > 0 else { fail("--conntrack-timeout expects NAME=SECONDS, got '\(spec)'") }
                let ns = secs * 1_000_000_000
                var t = options.engine.conntrackTimeouts
                switch parts[0] {
                case "tcp_syn_sent": t.tcpSynSent = ns
                case "tcp_syn_recv": t.tcpSynRecv = ns
                case "tcp_established": t.tcpEstablished = ns
                case "tcp_fin_wait": t.tcpFinWait = ns
                case "tcp_close_wait": t.tcpCloseWait = ns
                case "tcp_last_ack": t.tcpLastAck = ns
                case "tcp_time_wait": t.tcpTimeWait = ns
                case "tcp_close": t.tcpClose = ns
                case "udp": t.udp = ns
                case "udp_stream": t.udpStream = ns
                case "icmp": t.icmp = ns
                case "generic": t.generic = ns
                default: fail("--conntrack-timeout: unknown timeout '\(parts[0])'")
                }
                options.engine.conntrackTimeouts = t
            }
            summary = try Replayer.run(options)
        } catch let d as Diagnostic {
            fail(d.description)
        } catch {
            fail("\(error)")
        }
        if !quiet { print(SummaryReport.render(summary, outDir: out)) }
    }
}

enum SummaryReport {
    static func render(_ s: ReplaySummary, outDir: String) -> String {
        var o = ""
        let rate = s.seconds > 0 ? Double(s.packets) / s.seconds : 0
        o += "packets in: \(s.packets)   (\(fixed(s.seconds, 3)) s, \(Int(rate)) packets/s incl. output)\n"
        o += "verdicts:\n"
        for k in ["forwarded", "local", "sent", "dropped", "rejected", "passed"] where s.verdicts[k, default: 0] > 0 {
            o += "  \(pad(k, 10)) \(s.verdicts[k]!)\n"
        }
        if !s.dropReasons.isEmpty {
            o += "drop reasons:\n"
            for (k, v) in s.dropReasons.sorted(by: { $0.value > $1.value || $0.value == $1.value && $0.key < $1.key }) { o += "  \(pad(k, 30)) \(v)\n" }
        }
        if !s.passed.isEmpty {
            o += "passed through (not IPv4):\n"
            for (k, v) in s.passed.sorted(by: { $0.key < $1.key }) { o += "  \(pad(k, 30)) \(v)\n" }
        }
        o += "out per interface:\n"
        if s.outPerInterface.isEmpty { o += "  (none)\n" }
        for (k, v) in s.outPerInterface.sorted(by: { $0.key < $1.key }) { o += "  \(pad(k, 10)) \(v)\n" }
        if let n = s.connections { o += "connections at the end: \(n)\(s.evicted > 0 ? " (\(s.evicted) evicted when the table was full)" : "") (conntrack.txt)\n" }
        o += "top rules hit:\n"
        if s.topRules.isEmpty { o += "  (none)\n" }
        for r in s.topRules.prefix(10) { o += "  \(pad(String(r.packets), 8)) \(r.rule)\n" }
        for w in s.warnings.prefix(10) { o += "warning: \(w)\n" }
        o += "wrote \(outDir)/: \(s.outputs.joined(separator: " "))"
        return o
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Parse, resolve and compile a rule file; errors as file:line:column; print a summary.",
        discussion: "Exits non-zero on any error in the file. Warns about chains nothing jumps to and rules that can never be reached."
    )

    @Argument(help: "Rule file (iptables-restore, iptables command lines or vns3); several cmds scripts are applied in order.")
    var rules: [String]

    @OptionGroup var ruleOptions: RuleOptions

    @Option(name: .long, help: "ipset save file for -m set.")
    var ipsets: String?

    func run() throws {
        let t0 = monotonicSeconds()
        let set: RuleSet
        set = ruleOptions.load(rules)
        let t1 = monotonicSeconds()
        var options = EngineOptions()
        // The flat compile alone here; the compiled chains are built and timed below.
        options.classifier = .linear
        if let ipsets {
            do { options.ipsets = try IPSetCollection.load(path: ipsets) } catch { fail(error.description) }
        }
        var compileNote: String? = nil
        var compiledRules = 0
        var checkedEngine: Engine? = nil
        do {
            let engine = try Engine(rules: set, network: try NetworkModel.parse("", file: "<none>"), options: options)
            compiledRules = engine.tables.reduce(0) { $0 + $1.ruleCount }
            checkedEngine = engine
        } catch {
            compileNote = error.description
        }
        let t2 = monotonicSeconds()
        print("\(rules.joined(separator: " ")): ok")
        var warnings: [String] = []
        for t in set.tables {
            let user = t.chains.filter { !$0.isBuiltin }.count
            print("  table \(t.name.rawValue): \(t.chains.count) chains (\(user) user), \(t.chains.reduce(0) { $0 + $1.rules.count }) rules")
            let reach = RuleSetBuilder.reachingHooks(t)
            for (ci, c) in t.chains.enumerated() {
                let from = c.isBuiltin ? "" : reach[ci].isEmpty ? ", unused" : ", reached from \(reach[ci].sorted().joined(separator: ","))"
                print("    \(c.name)\(c.policy.map { " policy \($0.rawValue)" } ?? ""): \(c.rules.count) rules\(from)")
                if !c.isBuiltin && reach[ci].isEmpty {
                    warnings.append("\(rules.joined(separator: " ")): warning: chain '\(c.name)' (table \(t.name.rawValue)) is never jumped to")
                }
                if let k = c.rules.firstIndex(where: { Self.unconditionalTerminal($0) }), k + 1 < c.rules.count {
                    let r = c.rules[k + 1]
                    warnings.append("\(r.origin.file):\(r.origin.line):1: warning: rule \(k + 2) of \(t.name.rawValue):\(c.name) can never be reached (rule \(k + 1) matches everything and ends the chain)")
                }
            }
        }
        for w in warnings { print(w) }
        print("  parse \(fixed((t1 - t0) * 1000, 2)) ms, compile \(fixed((t2 - t1) * 1000, 2)) ms (linear classifier, \(compiledRules) rules)")
        if let engine = checkedEngine {
            // The compiled classifier's structure for every chain: size and build time.
            let t3 = monotonicSeconds()
            let chains = engine.tables.flatMap { $0.chains.map { CompiledChain($0) } }
            let t4 = monotonicSeconds()
            let bytes = chains.reduce(0) { $0 + $1.structureBytes }
            let tableCount = chains.reduce(0) { $0 + $1.tableCount }
            let trees = chains.compactMap(\.treeSummary)
            let vectors = chains.compactMap(\.vectorSummary)
            let overBudget = chains.filter { $0.tableCount > 0 && $0.treeSummary == nil && $0.vectorSummary == nil }.count
            let forests = trees.filter { $0.trees > 1 }.count, compact = trees.filter(\.compact).count
            print("  compiled classifier: \(chains.count) chains, \(tableCount) tuple tables, "
                  + "bit vectors: \(vectors.count) (\(vectors.reduce(0) { $0 + $1.classes }) classes), cut trees: \(trees.count) "
                  + "(\(forests > 0 ? "\(forests) of them forests, " : "")\(compact > 0 ? "\(compact) with compact leaves, " : "")\(trees.reduce(0) { $0 + $1.nodes }) nodes, \(trees.reduce(0) { $0 + $1.entries }) leaf entries, depth <= \(trees.map(\.depth).max() ?? 0)"
                  + (overBudget > 0 ? "; \(overBudget) chains over the tree budget use their tables alone" : "")
                  + "), \(bytes) bytes, built in \(fixed((t4 - t3) * 1000, 2)) ms")
        }
        if let compileNote { print("  note: parsed, but this version cannot run it yet: \(compileNote)") }
    }

    static func unconditionalTerminal(_ r: Rule) -> Bool {
        let m = r.match
        guard m.source == nil, m.destination == nil, m.proto == nil, m.inInterface == nil, m.outInterface == nil,
              m.fragment == nil, m.extensions.allSatisfy({ if case .comment = $0 { true } else { false } }) else { return false }
        switch r.target {
        case .accept, .drop, .reject, .return, .goto: return true
        default: return false
        }
    }
}

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Show the path of one packet: hooks, tables, chains, each rule tried, routing, verdict.",
        discussion: """
        PACKET: 'tcp 198.51.100.7:40000 > 203.0.113.1:8080 in eth0 flags S', 'udp 10.0.0.1:53 > 10.0.0.2:5353 in eth1', \
        'icmp 10.0.0.1 > 8.8.8.8 type 8 in eth1', or '... out' for a locally generated packet. \
        Optional: flags (S A F R P U or SYN,ACK), mark N, ttl N, len N (payload bytes).
        """
    )

    @OptionGroup var box: BoxOptions

    @Argument(parsing: .remaining, help: "The packet, in words (quote it or not).")
    var packet: [String]

    func run() throws {
        let spec: PacketSpec
        do { spec = try PacketSpec.parse(packet.joined(separator: " ")) } catch { fail("packet: \(error)") }
        let set = box.loadRules()
        let model: NetworkModel
        do throws(Diagnostic) {
            if let network = box.network { model = try NetworkModel.load(path: network) } else { model = try NetworkModel.parse("", file: "<none>") }
        } catch { fail(error.description) }
        var options = EngineOptions()
        if let ipsets = box.ipsets { do { options.ipsets = try IPSetCollection.load(path: ipsets) } catch { fail(error.description) } }
        options.classifier = box.classifier
        var engine: Engine
        do { engine = try Engine(rules: set, network: model, extraInterfaces: spec.interface.map { [$0] } ?? [], options: options) } catch { fail(error.description) }
        var bytes = spec.build()
        var parsed = ParsedPacket()
        var trace = HitTrace(detailed: true, logging: true)
        var emitted = Emitted()
        let iif = spec.interface.map { engine.interfaceIndex($0)! }
        let d = bytes.withUnsafeMutableBytes { m in
            engine.process(frame: m, linkType: .ipv4, inInterface: iif, mark: spec.mark, parsed: &parsed, trace: &trace, emitted: &emitted)
        }
        for l in trace.lines { print(l) }
        for l in trace.logs { print("log: \(l)") }
        var verdict = "verdict: \(d.kind.name)"
        if d.outInterface >= 0 { verdict += " out \(engine.interfaceName(d.outInterface))" }
        if d.kind == .dropped || d.kind == .rejected {
            verdict += " (\(d.reason == .malformed ? d.malformed!.name : d.reason.name)"
            if d.reason == .rule || d.reason == .policy || d.reason == .hotdrop { verdict += " \(engine.describe(traceEntry: d.decidedBy))" }
            verdict += ")"
        }
        if d.mark != 0 { verdict += " mark 0x\(String(d.mark, radix: 16))" }
        if d.generatedOut >= 0 { verdict += "; reply sent out \(engine.interfaceName(d.generatedOut))" }
        print(verdict)
    }
}

/// A fixed-point rendering without Foundation: `fixed(1.23456, 2)` is "1.23".
func fixed(_ x: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0 ..< decimals { scale *= 10 }
    let v = (x * scale).rounded()
    let neg = v < 0
    let n = Int(abs(v))
    let whole = n / Int(scale), frac = n % Int(scale)
    var f = String(frac)
    while f.count < decimals { f = "0" + f }
    return (neg ? "-" : "") + String(whole) + (decimals > 0 ? "." + f : "")
}

/// What `replay` and `trace` need to know about the box: its rules (and their dialect and
/// variables), its network model, its IP sets.
struct BoxOptions: ParsableArguments {
    @Option(name: .long, help: "Rule file (iptables-restore, iptables command lines or vns3). Repeat it to apply several cmds scripts in order.")
    var rules: [String] = []

    @OptionGroup var ruleOptions: RuleOptions

    @Option(name: .long, help: "Network model (ip addr/route/rule, sysctl lines).")
    var network: String?

    @Option(name: .long, help: "ipset save file for -m set.")
    var ipsets: String?

    @Option(name: .long, help: "How chains find their next candidate rule: compiled (default; cut tree and tuple tables, docs/classifier.md) or linear; same answers.")
    var classifier: ClassifierKind = .compiled

    func loadRules() -> RuleSet {
        guard !rules.isEmpty else { fail("--rules RULES is needed") }
        return ruleOptions.load(rules)
    }
}

extension ClassifierKind: ExpressibleByArgument {}
