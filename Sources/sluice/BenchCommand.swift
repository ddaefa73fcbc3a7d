#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Bench
import Diagnostics
import Engine
import NetModel
import Rules

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Replay captures from memory through the engine as fast as possible; report packets/s, ns/packet, mallocs/packet.",
        discussion: """
        The captures are read into memory once. Each pass copies every packet into a reusable buffer \
        and runs Engine.process on it (parse, hooks, chains, routing, conntrack, NAT, verdict; nothing \
        is written). One untimed warm-up pass comes first; timed passes repeat until --min-seconds have \
        passed. Pass N is the inputs shifted later in time by N x (their span + 1 ms), like a capture \
        looped by tcpreplay --loop, so connections carry over while their timeouts allow \
        (a gap of more than 1 s between consecutive packets counts as 1 s).

        --capture FILE: the packets arrive on the --in interface (default: the first interface of \
        the network model, else eth0). --capture IFACE=FILE names the interface for that file \
        (local=FILE: locally generated, OUTPUT path). Several captures are merged by timestamp.

        --stage parse: PacketParser only. --stage classify: packets that parse as IPv4, parsed and \
        routed before timing, through the FORWARD hook's chains only (no conntrack lookup, no NAT).
        """
    )

    @OptionGroup var box: BoxOptions

    @Option(name: .customLong("capture"), help: "FILE or IFACE=FILE: a capture to replay (pcap or pcapng). Repeatable.")
    var captures: [String] = []

    @Option(name: .customLong("in"), help: "Interface the packets of a plain --capture FILE arrive on (default: first interface of --network, else eth0).")
    var inInterface: String?

    @Option(name: .long, help: "What to time: full (Engine.process), parse (PacketParser only) or classify (FORWARD chains, pre-parsed packets).")
    var stage: BenchStage = .full

    @Option(name: .customLong("min-seconds"), help: "Repeat timed passes until this many seconds have passed (default 3).")
    var minSeconds: Double = 3

    @Option(name: .customLong("warmup"), help: "Untimed passes before timing (default 1).")
    var warmup: Int = 1

    @Option(name: .customLong("conntrack-max"), help: "Connection table size (default 262144).")
    var conntrackMax: Int = 262_144

    @Flag(name: .customLong("no-conntrack-checksum"), help: "Do not verify L4 checksums in conntrack (captures taken with checksum offload).")
    var noConntrackChecksum = false

    @Flag(name: .long, help: "Print one JSON object instead of the text report.")
    var json = false

    func run() throws {
        let set = box.loadRules()
        guard !captures.isEmpty else { fail("at least one --capture FILE is needed") }
        guard minSeconds >= 0, minSeconds.isFinite else { fail("--min-seconds must be a number >= 0") }
        guard warmup >= 0 else { fail("--warmup must be >= 0") }
        guard conntrackMax >= 16 else { fail("--conntrack-max must be at least 16") }
        let model: NetworkModel
        do throws(Diagnostic) {
            if let network = box.network { model = try NetworkModel.load(path: network) } else { model = try NetworkModel.parse("", file: "<none>") }
        } catch { fail(error.description) }
        let defaultIn = inInterface ?? model.interfaceNames.first { $0 != "lo" } ?? "eth0"
        var inputs: [BenchInput] = []
        for spec in captures {
            // A path that exists is a path, even with '=' in it; otherwise IFACE=FILE.
            if access(spec, F_OK) != 0, let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex {
                inputs.append(BenchInput(interface: String(spec[..<eq]), path: String(spec[spec.index(after: eq)...])))
            } else {
                inputs.append(BenchInput(interface: defaultIn, path: spec))
            }
        }
        var options = BenchOptions(ruleSet: set, network: model, inputs: inputs)
        if let ipsets = box.ipsets {
            do { options.engine.ipsets = try IPSetCollection.load(path: ipsets) } catch { fail(error.description) }
        }
        options.engine.classifier = box.classifier
        options.engine.conntrackCapacity = conntrackMax
        options.engine.conntrackChecksum = !noConntrackChecksum
        options.stage = stage
        options.minSeconds = minSeconds
        options.warmupPasses = warmup
        options.progress = isatty(2) != 0
        let r: BenchResult
        do {
            r = try Bencher.run(options)
        } catch let d as Diagnostic {
            fail(d.description)
        } catch {
            fail("\(error)")
        }
        if json { print(r.json); return }
        print(Self.report(r))
    }

    static func report(_ r: BenchResult) -> String {
        var o = ""
        o += "stage \(r.stage.rawValue), \(r.classifier.rawValue) classifier, \(r.rules) rules\n"
        for i in r.inputs { o += "  \(i.interface): \(i.path)\n" }
        o += "capture: \(r.capturePackets) packets, \(r.captureBytes) bytes per pass\(r.skipped > 0 ? " (\(r.skipped) records of undecodable link types skipped)" : "")\n"
        o += "timed: \(r.packets) packets in \(r.passes) passes, \(fixed(r.seconds, 3)) s (after \(r.warmupPasses) warm-up passes)\n"
        o += "  \(fixed(r.packetsPerSecond / 1e6, 3)) Mpps, \(fixed(r.nsPerPacket, 1)) ns/packet (\(fixed(r.nsPerPacketCPU, 1)) ns/packet of CPU time), \(fixed(r.bytesPerSecond / 1e6, 1)) MB/s (\(fixed(r.bytesPerSecond * 8 / 1e9, 2)) Gbit/s)\n"
        if let m = r.mallocsPerPacket { o += "  mallocs: \(r.mallocs!) (\(fixed(m, 4)) per packet)\n" } else { o += "  mallocs: not counted (malloc is not interposed in this process)\n" }
        if let c = r.connections { o += "connections at the end: \(c) (table of \(r.conntrackCapacity ?? 0))\n" } else { o += "conntrack: off (the rule set does not need it)\n" }
        o += "verdicts (timed passes): " + r.verdicts.filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }.joined(separator: ", ") + "\n"
        if let h = r.peakRSS { o += "peak RSS (VmHWM): \(fixed(Double(h) / 1_048_576, 1)) MiB (inputs held in memory: \(fixed(Double(r.inputMemory) / 1_048_576, 1)) MiB)" }
        return o
    }
}

extension BenchStage: ExpressibleByArgument {}
