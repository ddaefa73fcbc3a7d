#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import Diagnostics
import Engine
import Inline
import NetModel
import Replay
import Rules

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Serve NFQUEUE queues inline: every queued packet gets the rule set's verdict.",
        discussion: """
        Reads the network (addresses, routes, ip rules, ip_forward) of the namespace it runs in,
        binds the queues, and runs until SIGINT/SIGTERM (drain: every packet received gets its
        verdict, then the queues close). SIGHUP re-reads the rules and the network, compiles
        beside the running set and swaps; connections and NAT bindings survive; a bad file
        keeps the running rules and logs file:line:column.

        Without --install-hooks the operator queues the traffic (see README, "Running inline"):
          iptables -t raw -A PREROUTING ! -i lo -j CT --notrack
          iptables -t raw -A PREROUTING ! -i lo -j NFQUEUE --queue-num 0 --queue-bypass
          iptables -t raw -A OUTPUT -j CT --notrack
          iptables -t raw -A OUTPUT -m mark --mark 0x20000000/0x20000000 -j ACCEPT
          iptables -t raw -A OUTPUT -j NFQUEUE --queue-num 0 --queue-bypass
          sysctl net.ipv4.conf.all.accept_local=1   (source NAT)
        """
    )

    @Option(name: .long, help: "Rule file (iptables-restore, iptables command lines or vns3).")
    var rules: [String] = []

    @OptionGroup var ruleOptions: RuleOptions

    @Option(name: .long, help: "ipset save file for -m set.")
    var ipsets: String?

    @Option(name: .long, help: "Queue number N or range N-M (one worker thread per queue).")
    var queue: String = "0"

    @Flag(name: .long, help: "Install (and on exit remove) the iptables rules that queue traffic to Sluice, with --queue-bypass.")
    var installHooks = false

    @Option(name: .long, help: "iptables command for --install-hooks (iptables, iptables-legacy, iptables-nft).")
    var iptables = "iptables"

    @Flag(name: .long, help: "When a queue is full the kernel accepts packets instead of dropping them (NFQA_CFG_F_FAIL_OPEN).")
    var failOpen = false

    @Flag(name: .long, help: "Do not ask for GSO super-packets (the kernel segments and checksums before queueing).")
    var noGso = false

    @Option(name: .long, help: "Packets the kernel holds per queue before it drops (or fails open).")
    var queueMaxlen: UInt32 = 8192

    @Option(name: .long, help: "Control socket for `sluice ctl` (default /run/sluice-<first queue>.sock).")
    var control: String?

    @Option(name: .long, help: "LOOKUP --table T inline: the packet gets mark M, which `ip rule fwmark M lookup T` routes (T=M, repeatable). With --install-hooks the ip rule is added too.")
    var routeMark: [String] = []

    @Option(name: .long, help: "Mark on packets Sluice sends itself (REJECT answers, COPY clones); the hooks let them pass.")
    var injectMark: String = "0x20000000"

    @Option(name: .long, help: "CPUs to pin the workers to, comma-separated (worker i on cpus[i % n]); default: not pinned.")
    var cpus: String?

    @Flag(name: .long, help: "Accept packets the parser refuses (default: drop; counted with their reason either way).")
    var acceptMalformed = false

    @Option(name: .long, help: "Prometheus endpoint, IPv4:PORT (e.g. 127.0.0.1:9469): GET /metrics.")
    var metrics: String?

    @Option(name: .long, help: "LOG target lines per second per worker (the rest are counted as suppressed).")
    var logRate: Double = 20

    @Option(name: .long, help: "Connection table size.")
    var conntrackMax: Int = 262_144

    @Option(name: .long, help: "How chains find their next candidate rule: compiled (default; cut tree and tuple tables, docs/classifier.md) or linear; same answers.")
    var classifier: ClassifierKind = .compiled

    func run() throws {
        guard !rules.isEmpty else { fail("--rules RULES is needed") }
        let (first, last) = parseQueues(queue)
        var routeMarks: [UInt32: UInt32] = [:]
        for rm in routeMark {
            let parts = rm.split(separator: "=")
            guard parts.count == 2, let t = UInt32(parts[0]), let m = parseNumber(String(parts[1])) else {
                fail("--route-mark wants TABLE=MARK with a numeric table, not '\(rm)'")
            }
            routeMarks[t] = m
        }
        guard let inject = parseNumber(injectMark), inject != 0 else { fail("--inject-mark must be a non-zero number") }

        // Signals are taken by sigwait in this thread; block them before any thread starts.
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)

        let build = { () throws -> Engine in
            let variables = try RuleLoader.variables(file: ruleOptions.varsFile, bindings: ruleOptions.vars)
            var dialect: RuleDialect? = nil
            if let d = ruleOptions.dialect {
                guard let x = RuleDialect(rawValue: d) else { throw Diagnostic(file: "--dialect", line: 0, column: 0, message: "must be restore, cmds or vns3") }
                dialect = x
            }
            let loaded = try RuleLoader.loadWithNotes(paths: rules, dialect: dialect, variables: variables)
            for n in loaded.notes { writeStderr("sluice run: \(n)\n") }
            let network = try LiveNetwork.snapshot()
            var options = EngineOptions()
            options.inline = true
            options.routeMarks = routeMarks
            options.classifier = classifier
            options.conntrackCapacity = conntrackMax
            if let ipsets { options.ipsets = try IPSetCollection.load(path: ipsets) }
            return try Engine(rules: loaded.ruleSet, network: network, options: options)
        }
        let engine: Engine
        do { engine = try build() } catch { fail("\(error)") }

        var options = RunOptions()
        options.firstQueue = first
        options.lastQueue = last
        options.failOpen = failOpen
        options.gso = !noGso
        options.maxLength = queueMaxlen
        options.injectMark = inject
        options.acceptMalformed = acceptMalformed
        options.logRate = logRate
        if let cpus { options.cpus = cpus.split(separator: ",").compactMap { Int($0) } }
        let runner: Runner
        do { runner = try Runner(engine: engine, options: options) } catch { fail(error.description) }
        let controlPath = control ?? "/run/sluice-\(first).sock"
        let server: ControlServer
        do { server = try ControlServer(path: controlPath, runner: runner, rulesName: rules.joined(separator: " ")) } catch { fail(error.description) }
        // Capabilities are per thread: drop them here, before the workers and the control
        // thread start (they inherit this thread's set).
        let kept = Privileges.dropAfterStart(keepNetAdmin: installHooks)
        var metricsServer: MetricsServer? = nil
        if let metrics {
            do { metricsServer = try MetricsServer(address: metrics, runner: runner) } catch { fail(error.description) }
        }
        server.start()
        metricsServer?.start()
        runner.start()

        var hooks = Hooks(firstQueue: first, lastQueue: last, injectMark: inject)
        hooks.iptables = iptables
        hooks.routeMarks = routeMarks
        if installHooks {
            do { try hooks.install() } catch {
                hooks.remove()
                runner.stop()
                server.close()
                fail("installing hooks: \(error)")
            }
        }
        // Source NAT (and the reply side of DNAT) rewrites sources before the kernel's input
        // route check: without accept_local the kernel drops those packets as martians.
        let natRules = runner.withState { s in s.engine.ruleSet.tables.first { $0.name == .nat }?.chains.contains { !$0.rules.isEmpty } ?? false }
        let acceptLocal = (try? String(contentsOfFile: "/proc/sys/net/ipv4/conf/all/accept_local", encoding: .utf8))?.hasPrefix("1") ?? false
        if natRules && !acceptLocal {
            writeStderr("sluice run: warning: the rule set has NAT rules but net.ipv4.conf.all.accept_local is 0: the kernel will drop packets whose source Sluice rewrote to one of the box's addresses (run with --install-hooks, or sysctl -w net.ipv4.conf.all.accept_local=1)\n")
        }
        let queues = first == last ? "\(first)" : "\(first)-\(last)"
        writeStderr("sluice run: serving queue\(first == last ? "" : "s") \(queues) (\(runner.withState { $0.engine.tables.count }) tables, control \(controlPath)\(metricsServer.map { ", metrics on port \($0.port)" } ?? "")\(installHooks ? ", hooks installed" : ""), capabilities kept: \(kept ?? "unchanged"))\n")

        while true {
            var sig: Int32 = 0
            sigwait(&set, &sig)
            if sig == SIGHUP {
                do {
                    let next = try build()
                    runner.swap(next)
                    writeStderr("sluice run: reloaded \(rules.joined(separator: " ")) (connections kept)\n")
                } catch {
                    writeStderr("sluice run: reload failed, the running rules stay: \(error)\n")
                }
                continue
            }
            break
        }
        writeStderr("sluice run: stopping: draining the queues\n")
        if installHooks { hooks.remove() }
        runner.stop()
        server.close()
        metricsServer?.close()
        var received: UInt64 = 0, verdicts: UInt64 = 0
        for st in runner.stats {
            received += st.received.load(ordering: .relaxed)
            verdicts += st.verdicts.load(ordering: .relaxed)
        }
        writeStderr(runner.statsText().split(separator: "\n").map { "sluice run: \($0)\n" }.joined())
        writeStderr("sluice run: stopped received=\(received) verdicts=\(verdicts)\n")
    }

    func parseQueues(_ s: String) -> (UInt16, UInt16) {
        let parts = s.split(separator: "-")
        guard (1 ... 2).contains(parts.count), let a = UInt16(parts[0]), let b = UInt16(parts.last!), a <= b else {
            fail("--queue wants N or N-M, not '\(s)'")
        }
        return (a, b)
    }
}

func parseNumber(_ s: String) -> UInt32? {
    s.hasPrefix("0x") || s.hasPrefix("0X") ? UInt32(s.dropFirst(2), radix: 16) : UInt32(s)
}

struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Ask a running `sluice run`: conntrack (live table), counters (rules with [packets:bytes]) or stats."
    )

    @Option(name: .long, help: "Control socket (default /run/sluice-0.sock).")
    var control: String = "/run/sluice-0.sock"

    @Argument(help: "conntrack, counters or stats")
    var command: String

    func run() throws {
        guard ["conntrack", "counters", "stats"].contains(command) else { fail("unknown command '\(command)': conntrack, counters or stats") }
        do {
            let answer = try controlRequest(path: control, command: command)
            print(answer, terminator: "")
        } catch {
            fail(error.description)
        }
    }
}
