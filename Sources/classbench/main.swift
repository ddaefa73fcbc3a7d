// classbench: build time, memory and ns/lookup of CompiledChain vs LinearClassifier on the
// ClassBench sets and traces (see docs/classifier.md). Not a test: numbers only, plus a check
// that every trace packet classifies to its expected index with both classifiers.
//
//   swift run -c release classbench [--rules DIR] [--traces DIR] [--linear-limit N] [--passes N] SET...
//   (rules: DIR/<set>.rules, default shared/rulesets/classbench; traces: DIR/<set>.trace from
//   shared/anchors/dpdk-acl/gen_traces.sh or trace_gen.py)
// Run one set per process for a per-set peak RSS.
// Environment: CB_NOTREE=1 compiles the tuple tables alone (no cut tree, no bit vectors); CB_VECTORS=N
// lets sets of at most N rules have bit vectors (0: a cut tree for every set); CB_BYCOST=0 gives
// them bit vectors whether or not their estimated cost is lower than the tree's; CB_CG=single|burst
// runs one pass of lookups and nothing else (for cachegrind); CB_SLACK / CB_LIMIT set the tuple
// tables' merge slack and collision limit; CB_BUDGET / CB_LEAF the cut tree's budget and rules per
// leaf; CB_COMPACT=0|1 its leaf layout; CB_TABLES prints the tables; CB_SAME times repeated packets
// (one at a time in turn and in a random order, and in bursts).
import Classifier
import Foundation
import Rules
import Wire

let shared = "/work/shared"
var traceDir = "\(shared)/anchors/dpdk-acl/out"
var rulesDir = "\(shared)/rulesets/classbench"
var linearLimit = 100_000
var passes = 3
var sets: [String] = []
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--traces": traceDir = args.popFirst() ?? traceDir
    case "--linear-limit": linearLimit = Int(args.popFirst() ?? "") ?? linearLimit
    case "--rules": rulesDir = args.popFirst() ?? rulesDir
    case "--passes": passes = max(1, Int(args.popFirst() ?? "") ?? passes)
    case "--help", "-h":
        print("usage: classbench [--rules DIR] [--traces DIR] [--linear-limit N] [--passes N] SET...")
        exit(0)
    default: sets.append(a)
    }
}
if sets.isEmpty { sets = ["acl1_1k", "acl1_10k"] }

/// CPU time of this thread: on a shared machine, time the scheduler gave to others is not
/// counted (hypervisor steal still is).
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func timeChunks(_ packets: [Packet], passes: Int, _ body: (Packet) -> Void) -> Double {
    let chunk = 50_000
    var best = [Double](repeating: .infinity, count: (packets.count + chunk - 1) / chunk)
    for _ in 0..<passes {
        for c in best.indices {
            let t = cpuNow()
            for p in packets[(c * chunk)..<min(packets.count, (c + 1) * chunk)] { body(p) }
            best[c] = min(best[c], cpuNow() - t)
        }
    }
    return best.reduce(0, +) * 1e9 / Double(max(1, packets.count))
}

/// As `timeChunks`, for a burst API: `body` gets 64 packets at a time.
func timeBursts(_ packets: [PacketFields], passes: Int, _ body: (UnsafeBufferPointer<PacketFields>) -> Void) -> Double {
    let chunk = 50_048
    var best = [Double](repeating: .infinity, count: (packets.count + chunk - 1) / chunk)
    packets.withUnsafeBufferPointer { all in
        for _ in 0..<passes {
            for c in best.indices {
                let t = cpuNow()
                var i = c * chunk
                let end = min(all.count, (c + 1) * chunk)
                while i < end {
                    let n = min(64, end - i)
                    body(UnsafeBufferPointer(rebasing: all[i..<(i + n)]))
                    i += n
                }
                best[c] = min(best[c], cpuNow() - t)
            }
        }
    }
    return best.reduce(0, +) * 1e9 / Double(max(1, packets.count))
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

struct Packet { var f: PacketFields; var expected: Int32 }

/// `chain.firstMatches` over `fields` in bursts of 64; `each(first, count, results)` per burst.
func bursts(_ fields: [PacketFields], _ chain: CompiledChain,
            _ each: (Int, Int, UnsafeMutableBufferPointer<(index: Int32, result: MatchResult)>) -> Void) {
    var out = [(index: Int32, result: MatchResult)](repeating: (-1, .noMatch), count: 64)
    fields.withUnsafeBufferPointer { all in
        out.withUnsafeMutableBufferPointer { res in
            var i = 0
            while i < all.count {
                let n = min(64, all.count - i)
                chain.firstMatches(UnsafeBufferPointer(rebasing: all[i..<(i + n)]), into: res)
                each(i, n, res)
                i += n
            }
        }
    }
}

func loadTrace(_ path: String) -> [Packet] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    var out: [Packet] = []
    out.reserveCapacity(1_000_000)
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        let c = line.split(separator: " ")
        guard c.count >= 6, let s = IPv4Address(c[0]), let d = IPv4Address(c[1]), let sp = UInt16(c[2]),
              let dp = UInt16(c[3]), let pr = UInt8(c[4]), let e = Int32(c[5]) else { continue }
        var f = PacketFields()
        f.source = s.value; f.destination = d.value; f.proto = pr
        f.sourcePort = sp; f.destinationPort = dp; f.hasL4 = true
        out.append(Packet(f: f, expected: e))
    }
    return out
}

func rssKB(_ key: String) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for l in s.split(separator: "\n") where l.hasPrefix(key) {
        return Int(l.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }
    return 0
}

print("set\trules\tparse_s\tbuild_ms\ttables\tlongest_bucket\tstructure_bytes\trule_bytes\tpackets\tcompiled_ns\tcompiled_mpps\tburst64_ns\tlinear_ns\tlinear_mpps\tlinear_packets\tmismatches\tcand/probed/hits/steps/checked\tpeak_rss_kB")
for set in sets {
    let t0 = ContinuousClock.now
    guard let rs = try? RestoreParser.load(path: "\(rulesDir)/\(set).rules"), let filter = rs.table(.filter),
          let table = try? CompiledTable(filter, interfaces: InterfaceTable([]), firstID: 0, firstChainID: 0,
                                         residual: { (_: Rule) throws(CompileError) -> (Int32, Int16) in (0, 0) },
                                         action: { (_: Rule) throws(CompileError) -> Int32 in throw CompileError("action") }),
          let fw = table.chainNames.firstIndex(of: "FORWARD")
    else { print("\(set): cannot load"); continue }
    let rules = table.chains[fw]
    let parsed = ContinuousClock.now - t0
    let t1 = ContinuousClock.now
    let env = ProcessInfo.processInfo.environment
    // CB_SLACK / CB_LIMIT: tuple-table knobs; CB_NOTREE: tuple tables only (no cut tree);
    // CB_BUDGET / CB_LEAF: the cut tree's node budget and rules per leaf; CB_VECTORS: the most
    // rules a chain may get bit vectors for (0: none); CB_BYCOST=0: bit vectors whenever allowed;
    // CB_ORDER: the vectors' order of the rules (a `BitVectorOrder` case name); CB_COMPACT=0|1:
    // the cut tree's leaves in the full or the compact layout (default: `CutTree.compactLayout`).
    let tuned = ["CB_SLACK", "CB_LIMIT", "CB_NOTREE", "CB_BUDGET", "CB_LEAF", "CB_VECTORS", "CB_BYCOST", "CB_ORDER", "CB_COMPACT"]
        .contains { env[$0] != nil }
    let chain = !tuned ? CompiledChain(rules)
        : CompiledChain(rules, linearBelow: CompiledChain.linearThreshold, mergeSlack: Int(env["CB_SLACK"] ?? "") ?? CompiledChain.mergeSlack,
                        collisionLimit: Int(env["CB_LIMIT"] ?? "") ?? CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys,
                        tree: env["CB_NOTREE"] == nil, treeBudget: Int(env["CB_BUDGET"] ?? ""), treeLeafLimit: Int(env["CB_LEAF"] ?? ""),
                        bitVectorRules: env["CB_NOTREE"] != nil ? 0 : Int(env["CB_VECTORS"] ?? "") ?? CompiledChain.bitVectorRules,
                        byCost: env["CB_BYCOST"] != "0",
                        vectorOrder: env["CB_ORDER"].flatMap { o in BitVectorOrder.allCases.first { "\($0)" == o } },
                        treeCompact: env["CB_COMPACT"].map { $0 != "0" })
    let built = ContinuousClock.now - t1
    if let c = chain.structureCosts {
        print("# \(set): estimated ns per lookup: bit vectors \(String(format: "%.1f", c.vectors)), cut tree \(String(format: "%.1f", c.tree))")
    }
    if let v = chain.vectorSummary {
        print("# \(set): bit vectors: \(v.classes) classes, \(v.chunks) chunks, \(v.bytes) bytes, order \(chain.vectorOrder.map { "\($0)" } ?? "-")"
              + (chain.vectorSampleBlocks.map { ", drawn packets: \(String(format: "%.2f", $0.perLookup)) blocks per lookup, \(String(format: "%.2f", $0.multi)) past one" } ?? "")
              + (chain.vectorPairs ? ", blocks in pairs" : ""))
    } else if let t = chain.treeSummary {
        print("# \(set): cut tree\(t.trees > 1 ? "s: \(t.trees) trees," : ":") \(t.nodes) nodes, \(t.entries) leaf entries\(t.compact ? " (compact)" : ""), \(t.leaves) leaves, depth \(t.depth), largest leaf \(t.largestLeaf)")
    } else {
        print("# \(set): no cut tree")
    }
    if ProcessInfo.processInfo.environment["CB_TABLES"] != nil { chain.tableSummary.forEach { print("  " + $0) } }
    let packets = loadTrace("\(traceDir)/\(set).trace")
    if let mode = env["CB_CG"] {
        // For cachegrind: one pass of single lookups ("single") or bursts ("burst"), nothing else.
        var sink = 0
        if mode == "burst" {
            bursts(packets.map(\.f), chain) { _, _, res in sink &+= Int(res[0].index) }
        } else {
            for p in packets { sink &+= chain.firstMatch(from: 0, p.f)?.index ?? -1 }
        }
        print("\(set) cg \(mode) \(packets.count) \(sink)")
        continue
    }
    var mismatches = 0
    var compiledNs = 0.0, linearNs = 0.0, burstNs = 0.0
    var sink = 0
    if !packets.isEmpty {
        // Per 50,000-packet chunk, the fastest of `passes` passes (thread CPU time), summed: on
        // a shared machine a pass is often slowed for part of its length only.
        compiledNs = timeChunks(packets, passes: passes) { sink &+= chain.firstMatch(from: 0, $0.f)?.index ?? -1 }
        // Bursts of 64 through `firstMatches` (DPDK's harness uses bursts of 64 too).
        let fields = packets.map(\.f)
        var out = [(index: Int32, result: MatchResult)](repeating: (-1, .noMatch), count: 64)
        burstNs = timeBursts(fields, passes: passes) { burst in
            out.withUnsafeMutableBufferPointer { chain.firstMatches(burst, into: $0) }
            sink &+= Int(out[0].index)
        }
        bursts(fields, chain) { i, n, res in
            for k in 0..<n where res[k].index != packets[i + k].expected { mismatches += 1 }
        }
        if ProcessInfo.processInfo.environment["CB_SAME"] != nil {
            for k in [1, 16, 256, 4096, 65536] {
                let sub = Array(packets.prefix(k))
                let tc = cpuNow()
                var i = 0
                for _ in 0..<1_000_000 { sink &+= chain.firstMatch(from: 0, sub[i].f)?.index ?? -1; i += 1; if i == sub.count { i = 0 } }
                print("  \(k) distinct packets: \((cpuNow() - tc) * 1e3) ns")
                // The same packets in a random order (a fixed pseudo-random sequence): no
                // repeating sequence for the branch predictor to learn.
                if k > 1 {
                    var x: UInt64 = 0x9e37_79b9_7f4a_7c15
                    let order = (0..<1_000_000).map { _ in
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17
                        return Int32(truncatingIfNeeded: x % UInt64(k))
                    }
                    let ts = cpuNow()
                    for j in order { sink &+= chain.firstMatch(from: 0, sub[Int(j)].f)?.index ?? -1 }
                    print("  \(k) distinct packets, random order: \((cpuNow() - ts) * 1e3) ns")
                }
                // The same packets in bursts of 64 (k >= 64).
                if k >= 64 {
                    let subFields = sub.map(\.f)
                    let tb = cpuNow()
                    var j = 0
                    subFields.withUnsafeBufferPointer { sf in
                        out.withUnsafeMutableBufferPointer { o in
                            for _ in 0..<(1_000_000 / 64) {
                                chain.firstMatches(UnsafeBufferPointer(rebasing: sf[j..<(j + 64)]), into: o)
                                sink &+= Int(o[0].index)
                                j += 64; if j + 64 > sf.count { j = 0 }
                            }
                        }
                    }
                    print("  \(k) distinct packets, bursts: \((cpuNow() - tb) * 1e3) ns")
                }
            }
        }
        let lin = packets.prefix(linearLimit)
        linearNs = timeChunks(Array(lin), passes: passes) { sink &+= LinearClassifier.firstMatch(rules, from: 0, $0.f)?.index ?? -1 }
        for p in packets {
            if Int32(chain.firstMatch(from: 0, p.f)?.index ?? -1) != p.expected { mismatches += 1 }
        }
        for p in lin where Int32(LinearClassifier.firstMatch(rules, from: 0, p.f)?.index ?? -1) != p.expected { mismatches += 1 }
    }
    var cand = 0, probed = 0, hits = 0, steps = 0, checked = 0
    for p in packets.prefix(100_000) {
        let st = chain.probeStats(p.f)
        cand += st.candidates; probed += st.probed; hits += st.hits; steps += st.steps; checked += st.checked
    }
    let np = Double(max(1, min(100_000, packets.count)))
    var walkDepth = 0, walkScanned = 0, walkEarly = 0
    for p in packets.prefix(100_000) {
        if let w = chain.treeWalk(p.f) { walkDepth += w.depth; walkScanned += w.scanned; walkEarly += w.early }
    }
    var vecBlocks = 0, vecBoxes = 0
    for p in packets.prefix(100_000) {
        if let w = chain.vectorWalk(p.f) { vecBlocks += w.blocks; vecBoxes += w.boxes }
    }
    if chain.vectorSummary != nil {
        print("# \(set): bit vectors: \(String(format: "%.2f", Double(vecBlocks) / np)) blocks, \(String(format: "%.2f", Double(vecBoxes) / np)) boxes per lookup")
    }
    if chain.treeSummary != nil {
        print("# \(set): cut tree walk: \(String(format: "%.2f", Double(walkDepth) / np)) nodes, \(String(format: "%.2f", Double(walkScanned) / np)) entries per lookup, \(String(format: "%.2f", Double(walkEarly) / np)) descents ending below a node of leaves")
    }
    let stats = [cand, probed, hits, steps, checked].map { String(format: "%.1f", Double($0) / np) }.joined(separator: "/")
    print("\(set)\t\(rules.count)\t\(String(format: "%.2f", seconds(parsed)))\t\(String(format: "%.1f", seconds(built) * 1000))\t\(chain.tableCount)\t\(chain.longestBucket)\t\(chain.structureBytes)\t\(rules.count * MemoryLayout<CompiledRule>.stride)\t\(packets.count)\t\(String(format: "%.1f", compiledNs))\t\(String(format: "%.2f", 1e3 / compiledNs))\t\(String(format: "%.1f", burstNs))\t\(String(format: "%.1f", linearNs))\t\(String(format: "%.3f", 1e3 / linearNs))\t\(min(linearLimit, packets.count))\t\(mismatches)\t\(stats)\t\(rssKB("VmHWM:"))" + (sink == 42 ? " " : ""))
}
print("peak RSS (VmHWM) \(rssKB("VmHWM:")) kB")
