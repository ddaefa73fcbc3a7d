// Classifier: CompiledChain.firstMatch, one packet at a time and in bursts of 64
// (`firstMatches`), against LinearClassifier.firstMatch (the reference) on ClassBench rule sets
// from the shared corpus beside the repo, at 10, 100, 1k, 10k and 100k rules.
//
// One iteration = one pass of `packetsPerPass` lookups from rule 0 (scalingFactor .one), so
// the figures are per pass: divide by `packetsPerPass` for ns/lookup, and packets/s is
// `packetsPerPass` / (seconds per pass) (docs/benchmarks.md).
//
// - Rule sets: ../shared/rulesets/classbench/acl1_1k.rules (its first 10 rules for the 10-rule
//   size, its first 100 for 100, all 942 for 1k), acl1_10k.rules (9,774) and acl1_100k.rules
//   (99,604). Parsed with RestoreParser and
//   compiled to the FORWARD chain's [CompiledRule], as `classbench` does. When ../shared is
//   missing the suite prints a note and registers nothing.
// - Packets are generated here from the rules themselves (no trace files needed), once per
//   process, outside the measured region, with a fixed-seed SplitMix64: 90% are a random point
//   inside a randomly chosen rule's box (addresses inside its prefixes, ports inside its ranges,
//   its protocol), 10% are uniformly random. This is trace_gen.py's recipe.
// - Before anything is measured, every packet's answer from the compiled chain is compared with
//   the linear scan's; a difference stops the process (figures for a wrong classifier are
//   worthless).
//
// Metrics: wallClock and mallocCountTotal (a lookup must allocate nothing). Left out, as in
// WireBenchmarks.swift: peakMemoryResident (its sampler allocates), throughput, instructions,
// ARC counters. The structure's size and build time come from `swift run -c release classbench`.

import Benchmark
import Classifier
import Rules
import Wire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The repository root: this file is Benchmarks/Benchmarks/ClassifierBenchmarks/ClassifierBenchmarks.swift.
let repoRoot: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(4)
    return parts.joined(separator: "/")
}()

let classbenchDirectory = repoRoot + "/../shared/rulesets/classbench"
let packetsPerPass = 1_000

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// The FORWARD chain of a ClassBench set converted to iptables-restore, or nil if the file is missing.
func loadChain(_ path: String) -> [CompiledRule]? {
    guard access(path, R_OK) == 0 else { return nil }
    do {
        let ruleSet = try RestoreParser.load(path: path)
        guard let filter = ruleSet.table(.filter) else { fatalError("ClassifierBenchmarks: \(path): no filter table") }
        let table = try CompiledTable(filter, interfaces: InterfaceTable([]), firstID: 0, firstChainID: 0,
            residual: { (_: Rule) throws(CompileError) -> (Int32, Int16) in (0, 0) },
            action: { (r: Rule) throws(CompileError) -> Int32 in throw CompileError("unexpected target in \(r)") })
        guard let forward = table.chainNames.firstIndex(of: "FORWARD") else { fatalError("ClassifierBenchmarks: \(path): no FORWARD") }
        return table.chains[forward]
    } catch {
        fatalError("ClassifierBenchmarks: cannot load \(path): \(error)")
    }
}

/// A value inside net/mask (any bits where the mask is 0).
func inside(_ net: UInt32, _ mask: UInt32, _ g: inout SplitMix64) -> UInt32 {
    net & mask | UInt32(truncatingIfNeeded: g.next()) & ~mask
}

func port(_ lo: UInt16, _ hi: UInt16, _ g: inout SplitMix64) -> UInt16 {
    lo &+ UInt16(truncatingIfNeeded: g.below(Int(hi) - Int(lo) + 1))
}

/// Packets drawn from the rules (see the header comment).
func makePackets(_ rules: [CompiledRule], count: Int, seed: UInt64) -> [PacketFields] {
    var g = SplitMix64(seed: seed)
    var out: [PacketFields] = []
    out.reserveCapacity(count)
    for _ in 0..<count {
        var f = PacketFields()
        f.hasL4 = true
        if g.below(10) == 0 {
            let a = g.next(), b = g.next()
            f.source = UInt32(truncatingIfNeeded: a); f.destination = UInt32(truncatingIfNeeded: a >> 32)
            f.sourcePort = UInt16(truncatingIfNeeded: b); f.destinationPort = UInt16(truncatingIfNeeded: b >> 16)
            f.proto = [6, 17, 1][g.below(3)]
        } else {
            let r = rules[g.below(rules.count)]
            f.source = inside(r.srcNet, r.srcMask, &g)
            f.destination = inside(r.dstNet, r.dstMask, &g)
            f.proto = r.proto != 0 ? r.proto : [6, 17][g.below(2)]
            f.sourcePort = port(r.sportLo, r.sportHi, &g)
            f.destinationPort = port(r.dportLo, r.dportHi, &g)
        }
        out.append(f)
    }
    return out
}

/// One rule set, its compiled chain and its packets; built once per process.
struct Fixture {
    let name: String
    let rules: [CompiledRule]
    let chain: CompiledChain
    let packets: [PacketFields]

    init(name: String, rules: [CompiledRule]) {
        self.name = name
        self.rules = rules
        chain = CompiledChain(rules)
        packets = makePackets(rules, count: packetsPerPass, seed: 0x5EED_C1A5 &+ UInt64(rules.count))
        var matched = 0
        for (n, f) in packets.enumerated() {
            let lin = LinearClassifier.firstMatch(rules, from: 0, f)
            let cmp = chain.firstMatch(from: 0, f)
            if lin?.index != cmp?.index || lin?.result != cmp?.result {
                fatalError("ClassifierBenchmarks: \(name) packet \(n): linear \(String(describing: lin)) compiled \(String(describing: cmp))")
            }
            if lin != nil { matched += 1 }
        }
        // The bursts' answers too.
        var out = [(index: Int32, result: MatchResult)](repeating: (0, .noMatch), count: 64)
        for lo in stride(from: 0, to: packets.count, by: 64) {
            let n = min(64, packets.count - lo)
            packets.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer { chain.firstMatches(UnsafeBufferPointer(rebasing: p[lo..<(lo + n)]), into: $0) }
            }
            for k in 0..<n {
                let lin = LinearClassifier.firstMatch(rules, from: 0, packets[lo + k])
                if Int(out[k].index) != (lin?.index ?? -1) || (lin != nil && out[k].result != lin?.result) {
                    fatalError("ClassifierBenchmarks: \(name) packet \(lo + k) in a burst: linear \(String(describing: lin)) compiled \(out[k])")
                }
            }
        }
        print("ClassifierBenchmarks: \(name): \(rules.count) rules, \(chain.tableCount) tables, \(chain.structureBytes) structure bytes; "
            + "\(packets.count) packets per pass, \(matched) matched; compiled == linear for all of them, one at a time and in bursts")
    }
}

@inline(never)
func compiledPass(_ fx: Fixture) -> Int {
    var sum = 0
    for f in fx.packets { sum &+= fx.chain.firstMatch(from: 0, f)?.index ?? -1 }
    return sum
}

/// The same packets in bursts of 64 through `firstMatches`.
@inline(never)
func burstPass(_ fx: Fixture, _ out: UnsafeMutableBufferPointer<(index: Int32, result: MatchResult)>) -> Int {
    var sum = 0
    fx.packets.withUnsafeBufferPointer { p in
        var i = 0
        while i < p.count {
            let n = min(64, p.count - i)
            fx.chain.firstMatches(UnsafeBufferPointer(rebasing: p[i..<(i + n)]), into: out)
            sum &+= Int(out[0].index)
            i += n
        }
    }
    return sum
}

@inline(never)
func linearPass(_ fx: Fixture) -> Int {
    var sum = 0
    for f in fx.packets { sum &+= LinearClassifier.firstMatch(fx.rules, from: 0, f)?.index ?? -1 }
    return sum
}

// MARK: - Registration

let benchmarks: @Sendable () -> Void = {
    // Generous relative tolerances on time (shared, noisy machine); none on mallocs: a pass
    // must allocate nothing, and the committed threshold is 0.
    let time = BenchmarkThresholds(relative: [.p50: 50.0, .p90: 50.0])
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .microseconds,
        warmupIterations: 3,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 2_000,
        thresholds: [
            .wallClock: time,
            .mallocCountTotal: BenchmarkThresholds(absolute: [.p50: 0, .p90: 0, .p100: 0]),
        ]
    )

    guard let acl1k = loadChain(classbenchDirectory + "/acl1_1k.rules"),
          let acl10k = loadChain(classbenchDirectory + "/acl1_10k.rules"),
          let acl100k = loadChain(classbenchDirectory + "/acl1_100k.rules") else {
        print("ClassifierBenchmarks: SKIPPED: \(classbenchDirectory)/acl1_{1k,10k,100k}.rules not found (the shared corpus"
            + " beside the repo); no benchmarks registered")
        return
    }
    let fixtures = [
        ("10", Fixture(name: "acl1_1k first 10", rules: Array(acl1k.prefix(10)))),
        ("100", Fixture(name: "acl1_1k first 100", rules: Array(acl1k.prefix(100)))),
        ("1k", Fixture(name: "acl1_1k", rules: acl1k)),
        ("10k", Fixture(name: "acl1_10k", rules: acl10k)),
        ("100k", Fixture(name: "acl1_100k", rules: acl100k)),
    ]
    for (size, fx) in fixtures {
        Benchmark("compiled-\(size)") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(compiledPass(fx)) }
        }
        Benchmark("compiled-burst-\(size)") { benchmark in
            let out = UnsafeMutableBufferPointer<(index: Int32, result: MatchResult)>.allocate(capacity: 64)
            defer { out.deallocate() }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { blackHole(burstPass(fx, out)) }
            benchmark.stopMeasurement()
        }
        Benchmark("linear-\(size)") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(linearPass(fx)) }
        }
    }
}
