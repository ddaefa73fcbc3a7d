// Engine.process, the whole offline pipeline, and the cost of NAT rewriting in it.
//
// One iteration = one pass over a fixed list of frames (engine-edge), or the next 200 frames
// of it (the 1k-flow workloads; 10 iterations make a pass): each frame is copied into one
// reused buffer (the engine rewrites in place) and processed; nothing is written. Time moves forward from pass to pass (each pass is shifted by the list's span plus
// 1 ms), as `sluice bench` does, so connections made in one pass are found in the next.
//
// - engine-edge: the demo (examples/edge/edge.rules and network, captures/edge-eth0.pcap on
//   eth0 merged with captures/edge-eth1.pcap on eth1): port forward (DNAT), MASQUERADE,
//   stateful filter, malformed frames, IPv6/ARP passed. 42 frames a pass.
// - stateful-1k: 1,000 UDP flows (request and reply, 64-byte frames, both arriving on eth0)
//   through examples/bench/stateful.rules: conntrack lookup and ctstate rules, no NAT. 2,000
//   frames.
// - nat-rewrite-1k: the same flows through examples/bench/masquerade.rules, requests on eth0
//   masqueraded out eth1, replies arriving on eth1 to eth1's address and de-NATed back out
//   eth0: every packet is rewritten (source address one way, destination the other) with
//   incremental checksums. nat-rewrite-1k minus stateful-1k is the cost of NAT.
//
// Metrics: wallClock and mallocCountTotal (0: a pass allocates nothing). peakMemoryResident is
// left out for the reason given in WireBenchmarks.

import Benchmark
import Capture
import Engine
import NetModel
import Rules
import Wire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The repository root: this file is Benchmarks/Benchmarks/PipelineBenchmarks/PipelineBenchmarks.swift.
let repoRoot: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(4)
    return parts.joined(separator: "/")
}()

/// Frames in one buffer, in processing order, each with its link type, input interface and time.
final class Workload: @unchecked Sendable {
    struct Frame { var offset: Int; var length: Int; var linkType: LinkType; var iface: Int16; var time: Int64 }
    let name: String
    var engine: Engine
    let bytes: UnsafeMutableRawBufferPointer
    let frames: [Frame]
    let scratch: UnsafeMutableRawBufferPointer
    let period: Int64
    var pass: Int64 = 0
    /// Frames per iteration, and where the next iteration starts. An iteration of about 100 µs
    /// keeps p90 clear of preemption on a loaded machine: with passes of 1.4-3 ms (2,000
    /// frames), a third of the samples included a time slice given to another process, and p90
    /// of an unchanged binary moved by 70-120% from run to run.
    let chunk: Int
    var cursor = 0
    var parsed = ParsedPacket()
    var trace = HitTrace()
    var emitted = Emitted()

    init(name: String, rules: String, network: String, chunk: Int = Int.max,
         inputs: [(iface: String, frames: [(bytes: [UInt8], linkType: LinkType, time: Int64)])]) {
        self.name = name
        self.chunk = chunk
        do {
            let set = try RuleLoader.loadWithNotes(paths: [repoRoot + "/" + rules], dialect: nil, variables: [:]).ruleSet
            let model = try NetworkModel.load(path: repoRoot + "/" + network)
            engine = try Engine(rules: set, network: model, extraInterfaces: inputs.map(\.iface))
        } catch {
            fatalError("PipelineBenchmarks: \(name): \(error)")
        }
        var all: [(bytes: [UInt8], linkType: LinkType, time: Int64, iface: Int16, order: Int)] = []
        for (k, input) in inputs.enumerated() {
            let iface = engine.interfaceIndex(input.iface)!
            for f in input.frames { all.append((f.bytes, f.linkType, f.time, iface, k)) }
        }
        all.sort { $0.time != $1.time ? $0.time < $1.time : $0.order < $1.order }
        let total = all.reduce(0) { $0 + $1.bytes.count }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 64)
        bytes = buffer
        var list: [Frame] = []
        var at = 0
        let t0 = all.first?.time ?? 0
        for f in all {
            f.bytes.withUnsafeBytes { (buffer.baseAddress! + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            list.append(Frame(offset: at, length: f.bytes.count, linkType: f.linkType, iface: f.iface, time: f.time - t0))
            at += f.bytes.count
        }
        frames = list
        period = (list.last?.time ?? 0) + 1_000_000
        scratch = .allocate(byteCount: (list.map(\.length).max() ?? 0) + 128, alignment: 64)
    }

    /// One iteration: the next `chunk` frames (the whole list by default), wrapping around to
    /// the next pass; returns a fold of the decisions so the work cannot be dropped.
    @inline(never)
    func runPass() -> UInt64 {
        var fold: UInt64 = 0
        let start = cursor
        let end = min(frames.count, start + chunk)
        let shift = pass * period
        cursor = end
        if end == frames.count { cursor = 0; pass += 1 }
        frames.withUnsafeBufferPointer { list in
            for f in list[start ..< end] {
                scratch.baseAddress!.copyMemory(from: bytes.baseAddress! + f.offset, byteCount: f.length)
                let frame = UnsafeMutableRawBufferPointer(start: scratch.baseAddress!, count: f.length)
                let d = engine.process(frame: frame, capacity: scratch.count, linkType: f.linkType, inInterface: f.iface,
                                       timestampNanos: f.time &+ shift, parsed: &parsed, trace: &trace, emitted: &emitted)
                fold = fold &* 31 &+ UInt64(d.kind.rawValue) &+ UInt64(bitPattern: Int64(d.outInterface))
            }
        }
        return fold
    }

    /// Verdict counts of one pass (printed once per process, so a run says what it measured).
    func describe() -> String {
        var counts: [String: Int] = [:]
        let before = engine.verdictCounts
        repeat { _ = runPass() } while cursor != 0
        for k in VerdictKind.allCases { let n = Int(engine.verdictCounts[Int(k.rawValue)] - before[Int(k.rawValue)]); if n > 0 { counts[k.name] = n } }
        return "PipelineBenchmarks: \(name): \(frames.count) frames a pass; " + counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }
}

func readCapture(_ path: String) -> [(bytes: [UInt8], linkType: LinkType, time: Int64)] {
    let file: CaptureFile
    do { file = try CaptureFile.open(path: repoRoot + "/" + path) } catch { fatalError("PipelineBenchmarks: \(path): \(error)") }
    return file.records.indices.map { i in
        let r = file.records[i]
        return (file.withFrame(i) { Array($0) }, file.interfaces[r.interface].linkType!, r.timestampNanos)
    }
}

/// n UDP flows, request then reply, 64-byte Ethernet frames, 1 µs apart (as `capgen flows n
/// --packets 2` writes them). With `repliesTo`, the replies are addressed there instead of to
/// the client (they come back to a masquerading box's address), and returned apart.
func udpFlows(_ n: Int, repliesTo: UInt32? = nil) -> (requests: [(bytes: [UInt8], linkType: LinkType, time: Int64)],
                                                      replies: [(bytes: [UInt8], linkType: LinkType, time: Int64)]) {
    let payload = [UInt8](repeating: 0x5A, count: 64 - 42)
    let clientMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0xFE], boxMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
    var out: [(bytes: [UInt8], linkType: LinkType, time: Int64)] = []
    var back: [(bytes: [UInt8], linkType: LinkType, time: Int64)] = []
    var t: Int64 = 0
    for round in 0 ..< 2 {
        for i in 0 ..< n {
            let client = IPv4Address(0x0A00_0000 &+ UInt32(i))
            let server = IPv4Address(0x6440_0000 | UInt32((UInt64(i) &* 2_654_435_761) & 0x3F_FFFF))
            let cport = UInt16(10000 + i % 50000)
            let ip = round == 0
                ? PacketBuilder.udp(source: client, destination: server, sourcePort: cport, destinationPort: 443, payload: payload)
                : PacketBuilder.udp(source: server, destination: repliesTo.map(IPv4Address.init) ?? client, sourcePort: 443,
                                    destinationPort: cport, payload: payload)
            let frame = (PacketBuilder.ethernet(destination: boxMAC, source: clientMAC, payload: ip), LinkType.ethernet, t)
            if round == 1 && repliesTo != nil { back.append(frame) } else { out.append(frame) }
            t += 1000
        }
    }
    return (out, back)
}

let benchmarks: @Sendable () -> Void = {
    // Time: +50% at p50 and p90, as the other suites; mallocs: none, exactly.
    let time = BenchmarkThresholds(relative: [.p50: 50.0, .p90: 50.0])
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .microseconds,
        warmupIterations: 5,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 5_000,
        thresholds: [
            .wallClock: time,
            .mallocCountTotal: BenchmarkThresholds(absolute: [.p50: 0, .p90: 0, .p100: 0]),
        ]
    )

    let edge = Workload(name: "engine-edge", rules: "examples/edge/edge.rules", network: "examples/edge/network",
                        inputs: [("eth0", readCapture("captures/edge-eth0.pcap")), ("eth1", readCapture("captures/edge-eth1.pcap"))])
    let stateful = Workload(name: "stateful-1k", rules: "examples/bench/stateful.rules", network: "examples/bench/network",
                            chunk: 200, inputs: [("eth0", udpFlows(1000).requests)])
    // Replies come back on eth1 to eth1's address (198.19.255.1), as after MASQUERADE.
    let masqueraded = udpFlows(1000, repliesTo: 0xC613_FF01)
    let nat = Workload(name: "nat-rewrite-1k", rules: "examples/bench/masquerade.rules", network: "examples/bench/network",
                       chunk: 200, inputs: [("eth0", masqueraded.requests), ("eth1", masqueraded.replies)])
    for w in [edge, stateful, nat] {
        print(w.describe())
        Benchmark(w.name) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(w.runPass()) }
        }
    }
}
