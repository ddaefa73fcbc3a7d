// Conntrack.ConnTable: insert and lookup at 1k, 100k and 1M connections, random and
// adversarial tuples.
//
// One iteration = one pass of N operations over one table (scalingFactor .one), so the figures
// are per pass: divide by N for ns/operation (docs/benchmarks.md).
//
// - Tuples (and the lookup order) are generated once per process with a fixed-seed SplitMix64,
//   outside the measured region. The table's own SipHash secret is random (`secret: nil`), as
//   in production: the adversary knows the tuples, not the secret.
// - insert-*: N inserts (reply tuple from `ConnTable.replyTuple(for:)`, as the tracker does)
//   into a table of capacity N that is empty but warm. After the measured pass the N
//   connections are removed again, outside the measured region, so every pass reuses the same
//   slots and pages; first-touch page faults of a fresh table are not in these figures.
// - lookup-*: N finds over a table filled with the N connections, in a pseudo-random order,
//   alternating original and reply tuples (both are keys of the one index).
// - adversarial tuples: src = A ^ x, dst = B ^ x, fixed ports, x = 0..<N. Every original and
//   every reply tuple has the same value under a naive `src ^ dst ^ sport ^ dport` hash (the
//   xor cancels x, and swapping src/dst does not change it), so a table indexed by that hash
//   would put all 2N keys in one chain. Each process prints the naive-hash distinct count and
//   the SipHash table's longest chain for both tuple sets.
//
// Metrics left out, and why: see WireBenchmarks.swift (peakMemoryResident allocates in its
// sampler; throughput adds nothing to wallClock; no perf counters; no ARC counters). Bytes per
// connection come from Tools/ConntrackMemory, a separate process.

import Benchmark
import Conntrack
import Wire

enum TupleSet: String {
    case random, adversarial
}

/// N original tuples (TCP).
func makeTuples(_ set: TupleSet, count n: Int) -> [FlowKey] {
    var g = SplitMix64(seed: 0x5EED_0000 &+ UInt64(n))
    var out: [FlowKey] = []
    out.reserveCapacity(n)
    switch set {
    case .random:
        for _ in 0..<n {
            let r = g.next(), s = g.next()
            out.append(FlowKey(source: UInt32(truncatingIfNeeded: r), destination: UInt32(truncatingIfNeeded: r >> 32),
                               sourcePort: 1024 &+ UInt16(truncatingIfNeeded: s) % 64_512,
                               destinationPort: UInt16(truncatingIfNeeded: s >> 16), proto: 6))
        }
    case .adversarial:
        let a: UInt32 = 0x0A00_0000   // 10.0.0.0
        let b: UInt32 = 0xC0A8_0000   // 192.168.0.0
        for x in 0..<UInt32(n) {
            out.append(FlowKey(source: a ^ x, destination: b ^ x, sourcePort: 40_000, destinationPort: 443, proto: 6))
        }
    }
    return out
}

/// The hash a naive table would use; the adversarial set is built to collapse it.
@inline(__always)
func naiveHash(_ k: FlowKey) -> UInt32 {
    k.source ^ k.destination ^ UInt32(k.sourcePort) ^ UInt32(k.destinationPort) ^ UInt32(k.proto)
}

let now: Int64 = 1_000_000_000

/// One table and its tuples, built once per process (the first time the benchmark body runs,
/// before `startMeasurement`). A class so the mutating passes work on the one stored table
/// (`inout` through the box: one exclusivity check per pass, not per operation).
final class Fixture {
    let n: Int
    let set: TupleSet
    let originals: [FlowKey]
    /// Lookup keys: a pseudo-random permutation of the connections, even positions by the
    /// original tuple, odd by the reply tuple.
    let lookups: [FlowKey]
    var table: ConnTable

    init(_ set: TupleSet, count n: Int, filled: Bool) {
        self.n = n
        self.set = set
        originals = makeTuples(set, count: n)
        var order = Array(0..<n)
        var g = SplitMix64(seed: 0x0DE7_0000 &+ UInt64(n))
        order.shuffle(using: &g)
        var keys: [FlowKey] = []
        keys.reserveCapacity(n)
        for (j, i) in order.enumerated() {
            let o = originals[i]
            keys.append(j & 1 == 0 ? o : ConnTable.replyTuple(for: o)!)
        }
        lookups = keys
        table = ConnTable(capacity: n)
        if filled {
            let added = insertPass(&table, originals)
            precondition(added == n && table.count == n, "ConntrackBenchmarks: fill inserted \(added) of \(n)")
            let hits = lookupPass(&table, lookups)
            precondition(hits & 0xFFFF_FFFF == UInt64(n), "ConntrackBenchmarks: lookup check missed")
            print(describe())
        }
    }

    /// Which tuples, how a naive hash sees them, and how the table's keyed hash does.
    func describe() -> String {
        var naive = Set<UInt32>()
        for o in originals {
            naive.insert(naiveHash(o))
            naive.insert(naiveHash(ConnTable.replyTuple(for: o)!))
        }
        let s = table.chainStats()
        return "ConntrackBenchmarks: \(set.rawValue) \(n): \(2 * n) keys, \(naive.count) distinct naive xor hashes; "
            + "SipHash table: \(s.buckets) buckets, \(s.usedBuckets) used, longest chain \(s.maxChain)"
    }

    /// Empties the table after an insert pass (not measured): slots 0..<n are all live.
    func clear() {
        for i in 0..<n { table.remove(Int32(i)) }
        precondition(table.count == 0)
    }
}

// MARK: - Measured passes

/// Inserts every tuple with its reply tuple; returns how many went in.
@inline(never)
func insertPass(_ table: inout ConnTable, _ originals: [FlowKey]) -> Int {
    var added = 0
    for o in originals {
        guard let r = ConnTable.replyTuple(for: o) else { continue }
        if table.insert(original: o, reply: r, now: now) != nil { added += 1 }
    }
    return added
}

/// Finds every key; returns hits in the low 32 bits and a fold of indices and directions above,
/// so the finds cannot be dropped.
@inline(never)
func lookupPass(_ table: inout ConnTable, _ keys: [FlowKey]) -> UInt64 {
    var hits: UInt64 = 0, fold: UInt64 = 0
    for k in keys {
        if let hit = table.find(k, now: now) {
            hits &+= 1
            fold &+= UInt64(UInt32(bitPattern: hit.index)) &+ (hit.reply ? 1 : 0)
        }
    }
    return fold << 32 | hits
}

// MARK: - Registration

let sizes: [(label: String, n: Int)] = [("1k", 1_000), ("100k", 100_000), ("1M", 1_000_000)]

let benchmarks: @Sendable () -> Void = {
    // As WireBenchmarks: generous relative tolerances on time (shared, noisy machine), none on
    // mallocs (a pass allocates nothing; the committed threshold is 0).
    let time = BenchmarkThresholds(relative: [.p50: 50.0, .p90: 50.0])
    let thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .wallClock: time,
        .mallocCountTotal: BenchmarkThresholds(absolute: [.p50: 0, .p90: 0, .p100: 0]),
    ]
    func configuration(_ n: Int) -> Benchmark.Configuration {
        .init(
            metrics: [.wallClock, .mallocCountTotal],
            // A 1k pass takes ~20-150 µs: ns so the printed tables resolve 1 ns/op.
            timeUnits: n < 100_000 ? .nanoseconds : .microseconds,
            warmupIterations: n >= 1_000_000 ? 2 : 5,
            scalingFactor: .one,
            maxDuration: .seconds(n >= 1_000_000 ? 6 : 2),
            maxIterations: n >= 1_000_000 ? 25 : 2_000,
            thresholds: thresholds
        )
    }

    for set in [TupleSet.random, .adversarial] {
        for (label, n) in sizes {
            nonisolated(unsafe) var insertFixture: Fixture?
            Benchmark("insert-\(set.rawValue)-\(label)", configuration: configuration(n)) { benchmark in
                let f: Fixture
                if let existing = insertFixture { f = existing } else { f = Fixture(set, count: n, filled: false); insertFixture = f }
                for _ in benchmark.scaledIterations {
                    benchmark.startMeasurement()
                    let added = insertPass(&f.table, f.originals)
                    benchmark.stopMeasurement()
                    precondition(added == n, "ConntrackBenchmarks: inserted \(added) of \(n)")
                    f.clear()
                }
            }

            nonisolated(unsafe) var lookupFixture: Fixture?
            Benchmark("lookup-\(set.rawValue)-\(label)", configuration: configuration(n)) { benchmark in
                let f: Fixture
                if let existing = lookupFixture { f = existing } else { f = Fixture(set, count: n, filled: true); lookupFixture = f }
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations {
                    blackHole(lookupPass(&f.table, f.lookups))
                }
                benchmark.stopMeasurement()
            }
        }
    }
}
