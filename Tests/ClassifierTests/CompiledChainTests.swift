import Foundation
import Rules
import Wire
import XCTest
@testable import Classifier

/// Deterministic generator for the property tests (SplitMix64); the seed is printed so a
/// failure reproduces with `SLUICE_CLASSIFIER_SEED=<seed> swift test --filter ClassifierTests`.
struct TestRNG {
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
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func u32() -> UInt32 { UInt32(truncatingIfNeeded: next()) }
    mutating func u16() -> UInt16 { UInt16(truncatingIfNeeded: next()) }
}

final class CompiledChainTests: XCTestCase {
    static func seed() -> UInt64 {
        if let s = ProcessInfo.processInfo.environment["SLUICE_CLASSIFIER_SEED"], let v = UInt64(s) { return v }
        return 0x5EED_2026
    }

    static func prefix(_ len: Int) -> UInt32 { len == 0 ? 0 : ~UInt32(0) << UInt32(32 - len) }

    /// A chain with bit vectors whenever it may have them (not by estimated cost).
    static func vectorChain(_ rules: [CompiledRule], linearBelow: Int = CompiledChain.linearThreshold,
                            order: BitVectorOrder? = nil, inPairs: Bool? = nil) -> CompiledChain {
        CompiledChain(rules, linearBelow: linearBelow, mergeSlack: CompiledChain.mergeSlack, collisionLimit: CompiledChain.collisionLimit,
                      pairFilterKeys: CompiledChain.pairFilterKeys, byCost: false, vectorOrder: order, vectorBlocksInPairs: inPairs)
    }

    /// An address mask: a prefix of any length, now and then a non-contiguous one (a dotted
    /// mask such as 255.0.255.0 is legal in iptables).
    static func mask(_ g: inout TestRNG) -> UInt32 {
        if g.chance(5) { return g.u32() }
        let lens = [0, 0, 8, 16, 24, 32, 32]
        return prefix(g.chance(60) ? lens[g.below(lens.count)] : g.below(33))
    }

    static func port(_ g: inout TestRNG) -> UInt16 {
        let common: [UInt16] = [0, 1, 22, 53, 80, 443, 1023, 1024, 8080, 65534, 65535]
        return g.chance(60) ? common[g.below(common.count)] : g.u16()
    }

    /// Random rules over a small pool of base addresses, so prefixes nest and overlap.
    static func randomRules(_ g: inout TestRNG, count: Int) -> [CompiledRule] {
        let bases: [UInt32] = (0..<4).map { _ in g.u32() } + [0, 0xffff_ffff, 0x0a00_0000]
        var out: [CompiledRule] = []
        for _ in 0..<count {
            var r = CompiledRule()
            if g.chance(80) {
                r.srcMask = mask(&g)
                var a = bases[g.below(bases.count)]
                if g.chance(20) { a ^= UInt32(1) << UInt32(g.below(32)) }
                r.srcNet = a & r.srcMask
                r.srcInvert = g.chance(10)
            }
            if g.chance(80) {
                r.dstMask = mask(&g)
                var a = bases[g.below(bases.count)]
                if g.chance(20) { a ^= UInt32(1) << UInt32(g.below(32)) }
                r.dstNet = a & r.dstMask
                r.dstInvert = g.chance(10)
            }
            if g.chance(70) {
                let protos: [UInt8] = [6, 17, 1, 47, 255]
                r.proto = protos[g.below(protos.count)]
                r.protoInvert = g.chance(10)
            }
            if g.chance(20) {
                r.inAny = false; r.inMask = UInt64(g.below(16)); r.inInvert = g.chance(30)
            }
            if g.chance(20) {
                r.outAny = false; r.outMask = UInt64(g.below(16)); r.outInvert = g.chance(30)
            }
            if g.chance(10) { r.fragment = UInt8(1 + g.below(2)) }
            if g.chance(50) {
                r.portsUsed = true
                if g.chance(60) {
                    let a = port(&g), b = g.chance(50) ? a : port(&g)
                    r.sportLo = min(a, b); r.sportHi = max(a, b); r.sportInvert = g.chance(10)
                }
                if g.chance(70) {
                    let a = port(&g), b = g.chance(50) ? a : port(&g)
                    r.dportLo = min(a, b); r.dportHi = max(a, b); r.dportInvert = g.chance(10)
                }
            }
            r.id = Int32(out.count)
            out.append(r)
        }
        return out
    }

    /// A value near the edges of `net/mask`: first, last, just outside, a random member.
    static func address(near net: UInt32, _ mask: UInt32, _ g: inout TestRNG) -> UInt32 {
        let last = net | ~mask
        switch g.below(6) {
        case 0: return net
        case 1: return last
        case 2: return net &- 1
        case 3: return last &+ 1
        case 4: return net | (g.u32() & ~mask)
        default: return g.u32()
        }
    }

    static func near(_ lo: UInt16, _ hi: UInt16, _ g: inout TestRNG) -> UInt16 {
        switch g.below(5) {
        case 0: return lo
        case 1: return hi
        case 2: return lo &- 1
        case 3: return hi &+ 1
        default: return g.u16()
        }
    }

    /// A packet aimed at the boundaries of a random rule (each field drawn from a possibly
    /// different rule, so partial matches are common too).
    static func randomPacket(_ g: inout TestRNG, _ rules: [CompiledRule]) -> PacketFields {
        var f = PacketFields()
        func pick(_ g: inout TestRNG) -> CompiledRule { rules.isEmpty ? CompiledRule() : rules[g.below(rules.count)] }
        var r = pick(&g)
        f.source = address(near: r.srcNet, r.srcMask, &g)
        if g.chance(30) { r = pick(&g) }
        f.destination = address(near: r.dstNet, r.dstMask, &g)
        if g.chance(30) { r = pick(&g) }
        f.proto = g.chance(80) && r.proto != 0 ? r.proto : [0, 1, 6, 17, 47, 255][g.below(6)]
        if g.chance(30) { r = pick(&g) }
        f.sourcePort = near(r.sportLo, r.sportHi, &g)
        if g.chance(30) { r = pick(&g) }
        f.destinationPort = near(r.dportLo, r.dportHi, &g)
        f.inInterface = Int16(g.below(6) - 1)
        f.outInterface = Int16(g.below(6) - 1)
        switch g.below(10) {
        case 0: f.laterFragment = true; f.hasL4 = false
        case 1: f.hasL4 = false; f.l4Truncated = true
        case 2: f.hasL4 = false
        default: f.hasL4 = true
        }
        return f
    }

    func check(_ rules: [CompiledRule], _ chain: CompiledChain, _ f: PacketFields, start: Int, seed: UInt64, set: Int) -> Bool {
        let a = LinearClassifier.firstMatch(rules, from: start, f)
        let b = chain.firstMatch(from: start, f)
        if a?.index != b?.index || a?.result != b?.result {
            XCTFail("seed \(seed) set \(set) start \(start): linear \(String(describing: a)) compiled \(String(describing: b)) for \(f)")
            return false
        }
        return true
    }

    /// compiled == linear for every packet and every start index, over random rule sets of
    /// every size class (tiny chains scanned linearly, and up to a few hundred rules).
    func testDifferentialRandom() {
        let seed = Self.seed()
        print("CompiledChainTests.testDifferentialRandom: seed \(seed) (SLUICE_CLASSIFIER_SEED to replay)")
        var g = TestRNG(seed: seed)
        var checks = 0, matched = 0, hotdrops = 0, compiledSets = 0, treeSets = 0, tableOnlySets = 0, forestSets = 0
        var vectorSets = 0, costVectors = 0, costTrees = 0, pairSets = 0, compactSets = 0
        for set in 0..<160 {
            let n = [0, 1, 5, 15, 16, 17, 40, 100, 300][set % 9] + (set % 9 > 3 ? g.below(20) : 0)
            let rules = Self.randomRules(&g, count: n)
            // Every other set compiles even tiny chains (the engine scans them). The default
            // (sets 0 and 2: bit vectors or a cut tree, whichever the estimate favours), bit
            // vectors (set 1) and, with the vectors off:
            // the tuple tables alone (every fourth), a cut tree (every eighth), one with the
            // leaves of a big set (16 rules, not 8, every eighth), and a forest (the rules
            // separated by which addresses they leave wide, as when one tree is over budget).
            // The trees' leaves take the layout `CutTree.compactLayout` picks (the random rules
            // fix source ports too often for the compact one), or either one forced.
            let compact = [nil, true, false][set / 8 % 3]
            let chain = switch set % 8 {
            case 0, 2: CompiledChain(rules)
            case 6: CompiledChain(rules, linearBelow: CompiledChain.linearThreshold, mergeSlack: CompiledChain.mergeSlack,
                                  collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys, bitVectorRules: 0,
                                  treeCompact: compact)
            case 4: CompiledChain(rules, linearBelow: 0, mergeSlack: CompiledChain.mergeSlack, collisionLimit: CompiledChain.collisionLimit,
                                  pairFilterKeys: CompiledChain.pairFilterKeys, treeSeparate: true, bitVectorRules: 0, treeCompact: compact)
            case 1: Self.vectorChain(rules, linearBelow: 0, order: set % 16 == 1 ? nil : BitVectorOrder.allCases[set / 16 % BitVectorOrder.allCases.count],
                                     inPairs: set % 32 == 1 ? nil : set % 16 == 9)
            case 5: CompiledChain(rules, linearBelow: 0, mergeSlack: CompiledChain.mergeSlack, collisionLimit: CompiledChain.collisionLimit,
                                  pairFilterKeys: CompiledChain.pairFilterKeys, treeLeafLimit: 16, bitVectorRules: 0, treeCompact: compact)
            default: CompiledChain(rules, linearBelow: 0, mergeSlack: CompiledChain.mergeSlack,
                                   collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys, tree: false,
                                   bitVectorRules: 0)
            }
            if chain.tableCount > 0 { compiledSets += 1 }
            if let costs = chain.structureCosts {
                // The default chose: the cheaper estimate was kept.
                XCTAssertEqual(chain.hasVectors, costs.vectors <= costs.tree, "set \(set)")
                XCTAssertEqual(chain.hasTree, costs.vectors > costs.tree, "set \(set)")
                if chain.hasVectors { costVectors += 1 } else { costTrees += 1 }
            }
            if chain.vectorPairs { pairSets += 1 }
            if chain.vectorSummary != nil {
                vectorSets += 1
            } else if chain.treeSummary != nil {
                treeSets += 1
            } else if chain.tableCount > 0 {
                tableOnlySets += 1
            }
            if (chain.treeSummary?.trees ?? 0) > 1 { forestSets += 1 }
            if chain.treeSummary?.compact == true { compactSets += 1 }
            for _ in 0..<40 {
                let f = Self.randomPacket(&g, rules)
                for start in 0...(n + 1) {
                    guard check(rules, chain, f, start: start, seed: seed, set: set) else { return }
                    checks += 1
                    if let m = LinearClassifier.firstMatch(rules, from: start, f) {
                        matched += 1
                        if m.result == .hotdrop { hotdrops += 1 }
                    }
                }
            }
        }
        print("  \(checks) lookups (\(matched) matched, \(hotdrops) hotdrops), \(compiledSets) of 160 sets compiled "
              + "(\(vectorSets) with bit vectors, \(treeSets) with a cut tree, \(forestSets) of them forests, \(compactSets) with compact leaves, "
              + "\(tableOnlySets) tuple tables only; "
              + "by estimated cost \(costVectors) bit vectors, \(costTrees) trees; \(pairSets) taking blocks in pairs)")
        // The generator must actually exercise matches, hotdrops, the vectors, the tree and the
        // table path.
        XCTAssertGreaterThan(matched, checks / 10)
        XCTAssertGreaterThan(hotdrops, 0)
        XCTAssertGreaterThan(compiledSets, 80)
        XCTAssertGreaterThan(vectorSets, 15)
        XCTAssertGreaterThan(pairSets, 6)
        XCTAssertGreaterThan(costVectors + costTrees, 15)
        XCTAssertGreaterThan(treeSets, 30)
        XCTAssertGreaterThan(tableOnlySets, 20)
        XCTAssertGreaterThan(forestSets, 10)
        XCTAssertGreaterThan(compactSets, 6)
        XCTAssertGreaterThan(treeSets - compactSets, 6)
    }

    /// The bit vectors' orders of the rules (`BitVectorOrder`): every order is one in which
    /// rules whose boxes intersect keep the chain's order (a topological order), it moves rules
    /// (not the identity), and the lookups answer as the scan from every start, with rules
    /// checked on the rule (interfaces, inversions) among them so that a candidate that fails
    /// passes the search on to the next one, which may sit in an earlier block; lookups taking
    /// blocks one at a time and in pairs.
    func testBitVectorOrders() {
        let seed = Self.seed() &+ 8
        print("CompiledChainTests.testBitVectorOrders: seed \(seed)")
        var g = TestRNG(seed: seed)
        var moved: [BitVectorOrder: Int] = [:], matched = 0
        // Six sets per order: three taking blocks one at a time, three in pairs.
        for set in 0..<(6 * BitVectorOrder.allCases.count) {
            let n = [40, 100, 300][set % 3] + g.below(30)
            let rules = Self.randomRules(&g, count: n)
            let order = BitVectorOrder.allCases[set % BitVectorOrder.allCases.count]
            // Blocks one at a time and in pairs, each order both ways.
            let chain = Self.vectorChain(rules, linearBelow: 0, order: order, inPairs: set / BitVectorOrder.allCases.count % 2 == 1)
            XCTAssertEqual(chain.vectorOrder, order)
            XCTAssertEqual(chain.vectorPairs, set / BitVectorOrder.allCases.count % 2 == 1)
            let boxes = rules.map { CutTree.TreeEntry($0) }
            let positions = BitVectors.positions(boxes, order)
            XCTAssertEqual(positions.sorted(), Array(0..<n), "set \(set): a permutation")
            XCTAssertEqual(chain.vectors.order.map { Int($0) }, positions)
            XCTAssertEqual(chain.vectors.identity, positions == Array(0..<n))
            var at = [Int](repeating: 0, count: n)
            for (p, r) in positions.enumerated() { at[r] = p }
            for j in 0..<n {
                for i in 0..<j where (0..<5).allSatisfy({ d in
                    let (a, b) = (boxes[i].range(d), boxes[j].range(d))
                    return a.lo <= b.hi && b.lo <= a.hi
                }) {
                    guard at[i] < at[j] else { return XCTFail("set \(set) \(order): rules \(i) and \(j) intersect, order swapped") }
                }
            }
            if !chain.vectors.identity { moved[order, default: 0] += 1 }
            for _ in 0..<40 {
                let f = Self.randomPacket(&g, rules)
                for start in 0...(n + 1) {
                    guard check(rules, chain, f, start: start, seed: seed, set: set) else { return }
                    if LinearClassifier.firstMatch(rules, from: start, f) != nil { matched += 1 }
                }
            }
        }
        print("  sets whose rules moved, per order: \(moved)")
        XCTAssertEqual(moved[.chain], nil)
        for order in BitVectorOrder.allCases where order != .chain { XCTAssertGreaterThan(moved[order] ?? 0, 3, "\(order)") }
        XCTAssertGreaterThan(matched, 10_000)
    }

    /// Bit vectors at the edges of their 64-rule blocks (63 to 129 rules, and 2,048, the most
    /// the default gives them), from every start: random rules; rules whose boxes are all the
    /// same whole space (every chunk left out), told apart by interfaces and fragments only (no
    /// box is exact, each hit is checked on its rule); and the two mixed.
    func testBitVectorBlocks() {
        let seed = Self.seed() &+ 6
        print("CompiledChainTests.testBitVectorBlocks: seed \(seed)")
        var g = TestRNG(seed: seed)
        var matched = 0
        for (set, n) in [16, 63, 64, 65, 127, 128, 129, 2048].enumerated() {
            for shape in 0..<3 {
                var rules = Self.randomRules(&g, count: n)
                for i in rules.indices where shape == 1 || (shape == 2 && i % 2 == 0) {
                    var r = CompiledRule()
                    r.inAny = false; r.inMask = UInt64(1) << UInt64(i % 5); r.inInvert = i % 7 == 0
                    if i % 11 == 0 { r.fragment = 2 }
                    r.id = Int32(i)
                    rules[i] = r
                }
                // Blocks one at a time and in pairs (a second block or none, the first masked by
                // `from`).
                let chain = Self.vectorChain(rules, inPairs: (set + shape) % 2 == 0)
                guard let v = chain.vectorSummary else { return XCTFail("no bit vectors for \(n) rules") }
                if shape == 1 { XCTAssertEqual(v.chunks, 0) }
                for _ in 0..<(n > 1000 ? 30 : 60) {
                    let f = Self.randomPacket(&g, rules)
                    for start in stride(from: 0, through: n + 1, by: n > 1000 ? 61 : 1) {
                        guard check(rules, chain, f, start: start, seed: seed, set: set * 3 + shape) else { return }
                        if LinearClassifier.firstMatch(rules, from: start, f) != nil { matched += 1 }
                    }
                }
            }
        }
        XCTAssertNil(Self.vectorChain(Self.randomRules(&g, count: CompiledChain.bitVectorRules + 1)).vectorSummary)
        XCTAssertGreaterThan(matched, 10_000)
    }

    /// The default's choice between bit vectors and a cut tree, and both answering as the scan.
    /// Crossed wildcards (a source host with any destination, then any source with a
    /// destination host, alternating: every such pair of rules intersects, so no order moves a
    /// rule; each block holds rules open in every chunk): a packet passes every block's summary
    /// and meets its rule's block after a third of them on average, while the tree cuts
    /// straight to it: the tree, by estimate. Host pairs (a source and a destination per rule,
    /// no two intersecting; in the chain's order each block holds every source and every
    /// destination value): in an order by destination (`BitVectorOrder.narrowFirst`) a packet
    /// passes about one block: the vectors, by estimate, in a moved order. Overlapping prefixes
    /// with wide port ranges: the tree passes its budget, so no estimate: the vectors.
    func testStructureChoice() {
        let seed = Self.seed() &+ 7
        print("CompiledChainTests.testStructureChoice: seed \(seed)")
        var g = TestRNG(seed: seed)
        var pairs: [CompiledRule] = [], wide: [CompiledRule] = [], crossed: [CompiledRule] = []
        for i in 0..<1024 {
            var r = CompiledRule()
            r.srcMask = ~0; r.srcNet = 0x0a00_0000 | UInt32(i % 64)
            r.dstMask = ~0; r.dstNet = 0x0a01_0000 | UInt32((i * 7 + i / 64) % 64)
            r.id = Int32(i)
            pairs.append(r)
            var v = CompiledRule()
            let h = UInt32(truncatingIfNeeded: i &* 40_503)
            v.srcMask = Self.prefix([0, 8, 16, 24][i % 4]); v.srcNet = (0x0a00_0000 | h & 0xff_ffff) & v.srcMask
            v.dstMask = Self.prefix([16, 24, 32][i % 3]); v.dstNet = (0xc0a8_0000 | (h >> 8) & 0xffff) & v.dstMask
            v.proto = 6; v.portsUsed = true
            (v.dportLo, v.dportHi) = [(UInt16(1000 + i * 37 % 5000), UInt16(1000 + i * 37 % 5000)), (1024, 65535), (0, 1023)][i % 3]
            (v.sportLo, v.sportHi) = (0, 65535)
            v.id = Int32(i)
            wide.append(v)
            var c = CompiledRule()
            if i % 2 == 0 {
                c.srcMask = ~0; c.srcNet = 0x0a00_0000 | UInt32(i / 2)
            } else {
                c.dstMask = ~0; c.dstNet = 0x0a01_0000 | UInt32(i / 2)
            }
            c.id = Int32(i)
            crossed.append(c)
        }
        for (name, rules, wantVectors) in [("crossed wildcards", crossed, false), ("host pairs", pairs, true), ("wide ranges", wide, true)] {
            let chain = CompiledChain(rules)
            XCTAssertEqual(chain.hasVectors, wantVectors, name)
            XCTAssertEqual(chain.hasTree, !wantVectors, name)
            let other: CompiledChain
            if name == "wide ranges" {
                other = CompiledChain(rules, linearBelow: CompiledChain.linearThreshold, mergeSlack: CompiledChain.mergeSlack,
                                      collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys, bitVectorRules: 0)
                XCTAssertNil(other.treeSummary, "\(name): the tree fits its budget")
                XCTAssertNil(chain.structureCosts, name)
            } else {
                other = wantVectors ? CompiledChain(rules, linearBelow: CompiledChain.linearThreshold, mergeSlack: CompiledChain.mergeSlack,
                                                    collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys,
                                                    bitVectorRules: 0)
                    : Self.vectorChain(rules)
                XCTAssertNotNil(wantVectors ? other.treeSummary : other.vectorSummary, name)
                guard let costs = chain.structureCosts else { return XCTFail("\(name): no estimate") }
                print("  \(name): estimated ns per lookup: bit vectors \(costs.vectors), cut tree \(costs.tree)")
                if wantVectors {
                    XCTAssertLessThan(costs.vectors, costs.tree, name)
                } else {
                    XCTAssertGreaterThan(costs.vectors, 1.5 * costs.tree, name)
                }
            }
            if name == "host pairs" {
                // The order moved the rules, and packets pass fewer blocks than in the chain's.
                XCTAssertEqual(chain.vectorOrder, .narrowFirst)
                let inChainOrder = Self.vectorChain(rules, order: .chain)
                var moved = 0, unmoved = 0
                for r in rules {
                    var f = PacketFields()
                    f.source = r.srcNet; f.destination = r.dstNet; f.hasL4 = true
                    moved += chain.vectorWalk(f)?.blocks ?? 0
                    unmoved += inChainOrder.vectorWalk(f)?.blocks ?? 0
                }
                print("  host pairs: blocks per lookup \(Double(moved) / 1024) (chain order \(Double(unmoved) / 1024))")
                XCTAssertLessThan(moved * 4, unmoved)
            }
            var packets: [PacketFields] = []
            for k in 0..<300 {
                // Half aimed at a rule (its box), half random.
                var f = Self.randomPacket(&g, rules)
                if k % 2 == 0 {
                    let r = rules[g.below(rules.count)]
                    f.source = r.srcNet | (g.u32() & ~r.srcMask); f.destination = r.dstNet | (g.u32() & ~r.dstMask)
                    if r.portsUsed { f.proto = r.proto; f.hasL4 = true; f.laterFragment = false; f.l4Truncated = false; f.destinationPort = r.dportLo }
                }
                packets.append(f)
                for start in stride(from: 0, through: rules.count + 1, by: 41) {
                    guard check(rules, chain, f, start: start, seed: seed, set: 0),
                          check(rules, other, f, start: start, seed: seed, set: 1) else { return }
                }
            }
            checkBurst(rules, chain, packets, name)
        }
    }

    /// Many rules on the same few keys: long buckets (the binary search for `start`), and a
    /// chain of hundreds of /32 rules in one table (kube-proxy's KUBE-SERVICES shape).
    func testLongBucketsAndServiceChains() {
        let seed = Self.seed() &+ 1
        print("CompiledChainTests.testLongBucketsAndServiceChains: seed \(seed)")
        var g = TestRNG(seed: seed)
        var rules: [CompiledRule] = []
        for i in 0..<400 {
            var r = CompiledRule()
            r.dstMask = ~0
            r.dstNet = 0x0a60_0000 | UInt32(g.below(i % 3 == 0 ? 4 : 200))
            r.proto = g.chance(50) ? 6 : 17
            r.portsUsed = true
            r.dportLo = UInt16(g.below(20)); r.dportHi = r.dportLo
            rules.append(r)
        }
        let chain = CompiledChain(rules, linearBelow: CompiledChain.linearThreshold, mergeSlack: CompiledChain.mergeSlack,
                                  collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys,
                                  tree: false, bitVectorRules: 0)
        let vectors = Self.vectorChain(rules)
        XCTAssertNotNil(vectors.vectorSummary)
        XCTAssertGreaterThan(chain.longestBucket, 8)
        for _ in 0..<300 {
            var f = PacketFields()
            f.destination = 0x0a60_0000 | UInt32(g.below(210))
            f.proto = g.chance(50) ? 6 : 17
            f.destinationPort = UInt16(g.below(22))
            f.hasL4 = !g.chance(5); f.l4Truncated = !f.hasL4
            for start in 0...(rules.count + 1) {
                guard check(rules, chain, f, start: start, seed: seed, set: 0),
                      check(rules, vectors, f, start: start, seed: seed, set: 1) else { return }
            }
        }
    }

    /// No merging (one table per exact tuple) on rules with lengths of every size: more than
    /// 64 tables, so the prefilter's table sets span several words; and the same rules with
    /// the pair filters switched off. Both must answer like the scan, from every start.
    func testManyTablesAndNoPairFilters() {
        let seed = Self.seed() &+ 2
        print("CompiledChainTests.testManyTablesAndNoPairFilters: seed \(seed)")
        var g = TestRNG(seed: seed)
        var rules: [CompiledRule] = []
        for i in 0..<600 {
            var r = CompiledRule()
            let s = i % 33, d = (i / 33 + i) % 33
            r.srcMask = Self.prefix(s); r.srcNet = [0x0a00_0000, 0xc0a8_0100, g.u32()][g.below(3)] & r.srcMask
            r.dstMask = Self.prefix(d); r.dstNet = [0x0a00_0000, 0xac10_0000, g.u32()][g.below(3)] & r.dstMask
            if g.chance(60) { r.proto = [6, 17][g.below(2)] }
            if g.chance(40) { r.portsUsed = true; r.dportLo = UInt16(g.below(100)); r.dportHi = r.dportLo &+ UInt16(g.below(3)) }
            rules.append(r)
        }
        let many = CompiledChain(rules, linearBelow: 0, mergeSlack: 0, collisionLimit: 16, pairFilterKeys: CompiledChain.pairFilterKeys,
                                 tree: false, bitVectorRules: 0)
        let noPairs = CompiledChain(rules, linearBelow: 0, mergeSlack: CompiledChain.mergeSlack, collisionLimit: 16, pairFilterKeys: 0,
                                    tree: false, bitVectorRules: 0)
        XCTAssertGreaterThan(many.tableCount, 64)
        var matched = 0
        for _ in 0..<150 {
            var f = Self.randomPacket(&g, rules)
            f.inInterface = -1; f.outInterface = -1
            for start in stride(from: 0, through: rules.count + 1, by: 7) {
                guard check(rules, many, f, start: start, seed: seed, set: 0),
                      check(rules, noPairs, f, start: start, seed: seed, set: 1) else { return }
                if LinearClassifier.firstMatch(rules, from: start, f) != nil { matched += 1 }
            }
        }
        XCTAssertGreaterThan(matched, 1000)
    }

    /// `firstMatches` (bursts, staged or not) answers what `firstMatch(from: 0, _)` answers,
    /// for every packet of bursts of every length around the staging group size.
    /// `chain.firstMatches` over `packets`, cut into bursts of `length(n)` packets (n counts the
    /// bursts; clamped to what is left), each answer in its packet's place.
    static func burstAnswers(_ chain: CompiledChain, _ packets: [PacketFields],
                             length: (Int) -> Int) -> [(index: Int32, result: MatchResult)] {
        var out = [(index: Int32, result: MatchResult)](repeating: (-7, .match), count: packets.count)
        packets.withUnsafeBufferPointer { all in
            out.withUnsafeMutableBufferPointer { res in
                var i = 0, n = 0
                while i < all.count {
                    let len = min(length(n), all.count - i)
                    n += 1
                    chain.firstMatches(UnsafeBufferPointer(rebasing: all[i..<(i + len)]),
                                       into: UnsafeMutableBufferPointer(rebasing: res[i..<(i + len)]))
                    i += len
                }
            }
        }
        return out
    }

    func testFirstMatchesEqualsFirstMatch() {
        let seed = Self.seed() &+ 4
        var g = TestRNG(seed: seed)
        var checked = 0, matched = 0
        for set in 0..<12 {
            let rules = Self.randomRules(&g, count: [20, 150, 400][set % 3])
            let chain = set % 2 == 0
                ? CompiledChain(rules, linearBelow: 0, mergeSlack: CompiledChain.mergeSlack, collisionLimit: 16,
                                pairFilterKeys: CompiledChain.pairFilterKeys, burstStageRules: 0, treeLeafLimit: [8, 16][set / 2 % 2],
                                treeSeparate: set % 4 == 2, bitVectorRules: 0, treeCompact: set / 4 % 2 == 1)
                : Self.vectorChain(rules)
            XCTAssertEqual(chain.stagedBursts, set % 2 == 0 && chain.layout.words > 0 && !chain.hasTree)
            XCTAssertEqual(chain.hasVectors, set % 2 == 1)
            let packets = (0..<300).map { _ in Self.randomPacket(&g, rules) }
            let out = Self.burstAnswers(chain, packets) { [0, 1, 15, 16, 17, 64][$0 % 6] }
            for (k, f) in packets.enumerated() {
                let want = chain.firstMatch(from: 0, f)
                let lin = LinearClassifier.firstMatch(rules, from: 0, f)
                XCTAssertEqual(want?.index, lin?.index)
                if Int(out[k].index) != (want?.index ?? -1) || out[k].result != (want?.result ?? .noMatch) {
                    XCTFail("seed \(seed) set \(set) packet \(k): burst \(out[k]) single \(String(describing: want))")
                    return
                }
                checked += 1
                if want != nil { matched += 1 }
            }
        }
        XCTAssertGreaterThan(matched, checked / 10)
    }

    /// One tree past `longLeafBytes` is built again with leaves of `CutTree.longLeaf` rules:
    /// fewer nodes, longer leaves, the same answers as the scan from every start, one at a time
    /// and in bursts, in both leaf layouts. (The threshold is 0 here: the real one, 4 MB, takes
    /// ~100k rules.)
    func testLongLeavesPastTheCaches() {
        let seed = Self.seed() &+ 11
        print("CompiledChainTests.testLongLeavesPastTheCaches: seed \(seed)")
        var g = TestRNG(seed: seed)
        var rules: [CompiledRule] = []
        for _ in 0..<1500 {
            var r = CompiledRule()
            r.srcMask = Self.prefix([16, 24, 32][g.below(3)]); r.srcNet = (0xc000_0000 | g.u32() >> 8) & r.srcMask
            r.dstMask = Self.prefix(16 + g.below(17)); r.dstNet = (0x0a00_0000 | g.u32() >> 8) & r.dstMask
            if g.chance(80) { r.proto = [6, 17, 1][g.below(3)] }
            if r.proto == 6 || r.proto == 17, g.chance(60) {
                r.portsUsed = true; r.dportLo = UInt16(g.below(2048)); r.dportHi = r.dportLo &+ UInt16(g.below(16))
                if g.chance(3) { r.sportLo = 1024; r.sportHi = 65535 }
            }
            if g.chance(5) { r.inAny = false; r.inMask = 1 }
            rules.append(r)
        }
        func chain(_ longLeafBytes: Int, compact: Bool? = nil) -> CompiledChain {
            CompiledChain(rules, linearBelow: CompiledChain.linearThreshold, mergeSlack: CompiledChain.mergeSlack,
                          collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys, bitVectorRules: 0,
                          treeCompact: compact, treeLongLeafBytes: longLeafBytes)
        }
        let normal = chain(CutTree.longLeafBytes)
        guard let n = normal.treeSummary, n.trees == 1 else { return XCTFail("no single cut tree for 1,500 separable rules: \(String(describing: normal.treeSummary)), \(normal.tableCount) tables") }
        XCTAssertLessThanOrEqual(n.largestLeaf, 8 + 4, "leaves of 8 below 4,096 rules")
        for compact in [true, false] {
            let long = chain(0, compact: compact)
            guard let l = long.treeSummary else { return XCTFail("no cut tree with long leaves") }
            XCTAssertEqual(l.trees, 1)
            XCTAssertEqual(l.compact, compact)
            XCTAssertLessThan(l.nodes, n.nodes / 2)
            XCTAssertGreaterThan(l.largestLeaf, n.largestLeaf)
            var packets: [PacketFields] = []
            for _ in 0..<300 {
                let f = Self.randomPacket(&g, rules)
                packets.append(f)
                for start in stride(from: 0, through: rules.count + 1, by: 7) {
                    guard check(rules, long, f, start: start, seed: seed, set: compact ? 1 : 0) else { return }
                }
            }
            checkBurst(rules, long, packets, "long leaves burst")
        }
    }

    /// The cut tree on the shapes it finds hard: a leaf that cannot be split (a hundred rules
    /// with the same box, told apart by interfaces and fragments only), scanned from every
    /// start; bursts of it (`firstMatches`' lock-step descent); and crossing wildcards, which
    /// one tree cannot hold: a forest (one tree per part) within the budget, and past a tiny
    /// budget the tuple tables alone, both answering like the scan.
    func testCutTreeLeavesBudgetAndBursts() {
        let seed = Self.seed() &+ 5
        print("CompiledChainTests.testCutTreeLeavesBudgetAndBursts: seed \(seed)")
        var g = TestRNG(seed: seed)
        var rules: [CompiledRule] = []
        for i in 0..<300 {
            var r = CompiledRule()
            if i % 3 == 0 {   // the unsplittable group: one box, different interfaces
                r.dstMask = ~0; r.dstNet = 0x0a00_0001; r.proto = 6
                r.portsUsed = true; r.dportLo = 80; r.dportHi = 80
                r.inAny = false; r.inMask = UInt64(1) << UInt64(i % 5); r.inInvert = i % 7 == 0
                if i % 11 == 0 { r.fragment = 2 }
            } else {
                r.srcMask = Self.prefix(24 + g.below(9)); r.srcNet = (0xc0a8_0000 | UInt32(g.below(4096))) & r.srcMask
                r.dstMask = Self.prefix(16 + g.below(17)); r.dstNet = (0x0a00_0000 | UInt32(g.below(65536))) & r.dstMask
                if g.chance(70) { r.proto = [6, 17][g.below(2)] }
                if r.proto != 0 && g.chance(60) { r.portsUsed = true; r.dportLo = UInt16(g.below(1024)); r.dportHi = r.dportLo &+ UInt16(g.below(8)) }
            }
            rules.append(r)
        }
        let chain = CompiledChain(rules, linearBelow: CompiledChain.linearThreshold, mergeSlack: CompiledChain.mergeSlack,
                                  collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys, bitVectorRules: 0)
        let vectors = Self.vectorChain(rules)
        XCTAssertNotNil(vectors.vectorSummary)
        guard let shape = chain.treeSummary else { return XCTFail("no cut tree for 300 separable rules") }
        XCTAssertGreaterThanOrEqual(shape.largestLeaf, 100)
        // No rule fixes a source port: the leaves are compact (a group is one cache line).
        XCTAssertTrue(shape.compact)
        // The leaf groups start at a 128-byte boundary: each is one aligned line (compact) or
        // pair of lines.
        chain.tree.lanes.withUnsafeBufferPointer { XCTAssertEqual(Int(bitPattern: $0.baseAddress! + chain.tree.laneStart) % 128, 0) }
        var packets: [PacketFields] = []
        for _ in 0..<400 {
            var f = Self.randomPacket(&g, rules)
            if g.chance(40) { f.destination = 0x0a00_0001; f.proto = 6; f.destinationPort = 80 }
            packets.append(f)
            for start in 0...(rules.count + 1) {
                guard check(rules, chain, f, start: start, seed: seed, set: 0),
                      check(rules, vectors, f, start: start, seed: seed, set: 3) else { return }
            }
        }
        checkBurst(rules, chain, packets, "burst")
        checkBurst(rules, vectors, packets, "vectors burst")
        // Nodes whose children are all leaves are marked (`lastBit`): some descents leave one,
        // none more than one.
        let early = packets.map { chain.treeWalk($0)?.early ?? -1 }
        XCTAssertTrue(early.allSatisfy { $0 == 0 || $0 == 1 }, "\(early.filter { $0 != 0 && $0 != 1 })")
        XCTAssertGreaterThan(early.reduce(0, +), 0)
        // Crossing wildcards: sources fixed with destinations open and the reverse, every
        // port range: a cut on any field copies half the rules. One tree is over any budget;
        // under a tiny one the forest is too: no tree.
        var crossing: [CompiledRule] = []
        for i in 0..<2000 {
            var r = CompiledRule()
            if i % 2 == 0 { r.srcMask = ~0; r.srcNet = g.u32() } else { r.dstMask = ~0; r.dstNet = g.u32() }
            r.proto = 6; r.portsUsed = true
            r.sportLo = UInt16(g.below(60000)); r.sportHi = r.sportLo &+ UInt16(g.below(5000))
            crossing.append(r)
        }
        let small = CompiledChain(crossing, linearBelow: 0, mergeSlack: CompiledChain.mergeSlack, collisionLimit: CompiledChain.collisionLimit,
                                  pairFilterKeys: CompiledChain.pairFilterKeys, treeBudget: 1000, bitVectorRules: 0)
        XCTAssertNil(small.treeSummary)
        XCTAssertGreaterThan(small.tableCount, 0)
        // Within the default budget the same rules get a forest: sources fixed in one tree,
        // destinations in the other.
        let forest = CompiledChain(crossing, linearBelow: CompiledChain.linearThreshold, mergeSlack: CompiledChain.mergeSlack,
                                   collisionLimit: CompiledChain.collisionLimit, pairFilterKeys: CompiledChain.pairFilterKeys, bitVectorRules: 0)
        XCTAssertEqual(forest.treeSummary?.trees, 2)
        // Every rule fixes a source port, which the compact leaves leave out: full leaves.
        XCTAssertEqual(forest.treeSummary?.compact, false)
        forest.tree.lanes.withUnsafeBufferPointer { XCTAssertEqual(Int(bitPattern: $0.baseAddress! + forest.tree.laneStart) % 128, 0) }
        // Bit vectors (2,000 rules: within `bitVectorRules`), which crossing wildcards do not trouble.
        let vectors2 = Self.vectorChain(crossing)
        XCTAssertNotNil(vectors2.vectorSummary)
        for _ in 0..<300 {
            let f = Self.randomPacket(&g, crossing)
            for start in stride(from: 0, through: crossing.count, by: 97) {
                guard check(crossing, small, f, start: start, seed: seed, set: 1),
                      check(crossing, forest, f, start: start, seed: seed, set: 2),
                      check(crossing, vectors2, f, start: start, seed: seed, set: 4) else { return }
            }
        }
        checkBurst(crossing, forest, (0..<300).map { _ in Self.randomPacket(&g, crossing) }, "forest burst")
    }

    /// `packets` through `chain.firstMatches` in one burst: each answer is the scan's.
    func checkBurst(_ rules: [CompiledRule], _ chain: CompiledChain, _ packets: [PacketFields], _ label: String) {
        var out = [(index: Int32, result: MatchResult)](repeating: (-7, .match), count: packets.count)
        packets.withUnsafeBufferPointer { all in
            out.withUnsafeMutableBufferPointer { chain.firstMatches(all, into: $0) }
        }
        for (k, f) in packets.enumerated() {
            let lin = LinearClassifier.firstMatch(rules, from: 0, f)
            XCTAssertEqual(Int(out[k].index), lin?.index ?? -1, "\(label) packet \(k)")
            XCTAssertEqual(out[k].result, lin?.result ?? .noMatch, "\(label) packet \(k)")
        }
    }

    /// The branch-free rule check used for candidates gives exactly `matches`' answers.
    func testBranchFreeMatchesEqualsMatches() {
        let seed = Self.seed() &+ 3
        var g = TestRNG(seed: seed)
        var counts = [MatchResult: Int]()
        for _ in 0..<50 {
            let rules = Self.randomRules(&g, count: 50)
            for _ in 0..<200 {
                let f = Self.randomPacket(&g, rules)
                for r in rules {
                    let a = r.matches(f), b = r.matchesBranchFree(f)
                    if a != b { XCTFail("seed \(seed): matches \(a), branch-free \(b) for \(r) and \(f)"); return }
                    counts[a, default: 0] += 1
                }
            }
        }
        // Every outcome occurs, so the comparison covers them all.
        XCTAssertGreaterThan(counts[.match] ?? 0, 1000)
        XCTAssertGreaterThan(counts[.hotdrop] ?? 0, 100)
    }

    func testLayout() {
        // Buckets and slots are plain values; a slot is 24 bytes, a bucket entry 28.
        XCTAssertEqual(MemoryLayout<CompiledChain.Slot>.stride, 24)
        XCTAssertEqual(MemoryLayout<CompiledChain.Entry>.stride, 28)
        XCTAssertTrue(_isPOD(CompiledChain.Slot.self))
        XCTAssertTrue(_isPOD(CompiledChain.Entry.self))
        XCTAssertTrue(_isPOD(CompiledChain.TupleTable.self))
        XCTAssertTrue(_isPOD(CompiledChain.FilterLayout.self))
    }
}
