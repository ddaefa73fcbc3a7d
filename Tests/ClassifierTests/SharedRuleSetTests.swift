import Foundation
import Rules
import Wire
import XCTest
@testable import Classifier

/// Issue 5's check on real rule sets: every rule set in ../shared/rulesets (the dumps from
/// Docker, kube-proxy, ufw, ferm, libvirt and others, the generated 5,000-service kube-proxy
/// set, the ClassBench sets up to 100k rules), every chain of every table, compiled as the
/// engine compiles it and with each structure forced, answers as the linear scan for packets
/// drawn from the chain's own rules: from index 0, from the index after each match (where the
/// engine goes on when a rule's residual matches fail), from a random index, and in bursts.
/// About 3 minutes in a debug build (the ClassBench sets most of it). SLUICE_SHARED_ONLY=<part
/// of a file name> checks only those files (and skips the corpus-wide counts);
/// SLUICE_SHARED_TIMES=1 prints each file's time to stderr; SLUICE_CLASSIFIER_SEED as in
/// `CompiledChainTests`.
final class SharedRuleSetTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../shared/rulesets").standardized.path

    /// Rule files the loader refuses: the parser torture files (an option iptables refuses too;
    /// IPv6 in the ip6 one), the other ip6tables files (IPv6), ufw's fragments (they jump to
    /// chains ufw creates at run time) and ClassBench fw2/fw4 (`-m u32`). Asserted, so that a
    /// change shows here.
    static let refused: Set<String> = [
        "parser-torture-iptables-semantics.rules", "parser-torture-iptables-semantics.ip6.rules",
        "docker-iptabler-golden-nat-hairpin-bindlh.ip6.rules", "ufw-before.ip6.rules", "ufw-after.ip6.rules",
        "ufw-before.rules", "ufw-after.rules",
        "classbench/fw2_1k.rules", "classbench/fw2_10k.rules", "classbench/fw4_1k.rules", "classbench/fw4_10k.rules",
    ]

    /// The rule files, each a list of paths loaded together (libvirt's second file fills
    /// chains its first one creates), relative to `dir`.
    static func ruleFiles() throws -> [[String]] {
        let fm = FileManager.default
        var out: [[String]] = []
        for sub in ["", "generated/", "classbench/"] {
            for n in try fm.contentsOfDirectory(atPath: dir + "/" + sub).sorted() where n.hasSuffix(".rules") {
                out.append([sub + n])
            }
        }
        out.append(["libvirt-base.iptables-cmds"])
        out.append(["libvirt-base.iptables-cmds", "libvirt-nat-many-ips.iptables-cmds"])
        return out
    }

    /// Every interface a rule names (a wildcard's prefix with "0" and "1" after it), and eth0 and
    /// eth9; packets come in and go out on any of them, or on none (index -1).
    static func interfaces(_ set: RuleSet) -> InterfaceTable {
        var t = InterfaceTable(["eth0", "eth9"])
        for table in set.tables {
            for chain in table.chains {
                for r in chain.rules {
                    for spec in [r.match.inInterface?.value, r.match.outInterface?.value].compactMap({ $0 }) {
                        guard t.names.count + 2 <= InterfaceTable.capacity else { continue }
                        if spec.wildcard { t.add(spec.name + "0"); t.add(spec.name + "1") } else { t.add(spec.name) }
                    }
                }
            }
        }
        return t
    }

    /// A packet aimed inside one rule (a member of both prefixes, ports within both ranges, the
    /// rule's protocol; an inverted part sends it outside instead), or near the rules' edges (`CompiledChainTests.randomPacket`, each field
    /// from a possibly different rule); interfaces among the table's.
    static func packet(_ g: inout TestRNG, _ rules: [CompiledRule], interfaces: Int) -> PacketFields {
        var f = CompiledChainTests.randomPacket(&g, rules)
        if g.chance(50) {
            let r = rules[g.below(rules.count)]
            f.source = r.srcNet | (g.u32() & ~r.srcMask)
            f.destination = r.dstNet | (g.u32() & ~r.dstMask)
            if r.proto != 0 { f.proto = r.proto }
            f.sourcePort = r.sportLo &+ UInt16(truncatingIfNeeded: g.below(Int(r.sportHi &- r.sportLo) + 1))
            f.destinationPort = r.dportLo &+ UInt16(truncatingIfNeeded: g.below(Int(r.dportHi &- r.dportLo) + 1))
            if g.chance(90) { f.hasL4 = true; f.laterFragment = false; f.l4Truncated = false }
        }
        f.inInterface = Int16(g.below(interfaces + 1) - 1)
        f.outInterface = Int16(g.below(interfaces + 1) - 1)
        return f
    }

    struct Tally {
        var sets = 0, chains = 0, lookups = 0, matched = 0, bursts = 0
        var vectors = 0, trees = 0, forests = 0, tablesOnly = 0, longestChain = 0
    }

    /// compiled == linear, lookup by lookup, for `packets` through `chain`; false after the
    /// first difference (reported).
    static func agree(_ rules: [CompiledRule], _ chain: CompiledChain, _ packets: [PacketFields],
                      _ g: inout TestRNG, _ what: String, _ t: inout Tally) -> Bool {
        var fromZero: [(index: Int32, result: MatchResult)] = []
        fromZero.reserveCapacity(packets.count)
        for f in packets {
            // From 0, then from the index after each match (at most four), then from anywhere.
            var start = 0, steps = 0
            while steps < 5 {
                let a = LinearClassifier.firstMatch(rules, from: start, f)
                let b = chain.firstMatch(from: start, f)
                t.lookups += 1
                if a?.index != b?.index || a?.result != b?.result {
                    XCTFail("\(what) from \(start): linear \(String(describing: a)) compiled \(String(describing: b)) for \(f)")
                    return false
                }
                if start == 0 { fromZero.append(a.map { (Int32($0.index), $0.result) } ?? (-1, .noMatch)) }
                guard let m = a else { break }
                t.matched += 1
                start = m.index + 1
                steps += 1
            }
            let s = g.below(rules.count + 1)
            let a = LinearClassifier.firstMatch(rules, from: s, f), b = chain.firstMatch(from: s, f)
            t.lookups += 1
            if a?.index != b?.index || a?.result != b?.result {
                XCTFail("\(what) from \(s): linear \(String(describing: a)) compiled \(String(describing: b)) for \(f)")
                return false
            }
        }
        // Bursts of 1 to 64 packets (`firstMatches`), against the answers from index 0.
        let lengths = (0..<packets.count).map { _ in 1 + g.below(64) }
        let out = CompiledChainTests.burstAnswers(chain, packets) { t.bursts += 1; return lengths[$0] }
        for k in packets.indices where out[k].index != fromZero[k].index || out[k].result != fromZero[k].result {
            XCTFail("\(what) burst: linear \(fromZero[k]) compiled \(out[k]) for \(packets[k])")
            return false
        }
        return true
    }

    func testSharedRuleSetsCompiledEqualsLinear() throws {
        guard FileManager.default.fileExists(atPath: Self.dir + "/classbench") else {
            print("SKIPPED: \(Self.dir) not found; the compiled classifier was not checked against the shared rule sets")
            return
        }
        let env = ProcessInfo.processInfo.environment, only = env["SLUICE_SHARED_ONLY"]
        var g = TestRNG(seed: CompiledChainTests.seed())
        var t = Tally()
        var refused: Set<String> = []
        for files in try Self.ruleFiles() {
            let name = files.joined(separator: "+")
            if let only, !name.contains(only) { continue }
            let set: RuleSet
            do {
                set = try RuleLoader.loadWithNotes(paths: files.map { Self.dir + "/" + $0 }).ruleSet
            } catch {
                refused.insert(name)
                continue
            }
            t.sets += 1
            let began = Date()
            defer { if env["SLUICE_SHARED_TIMES"] != nil { FileHandle.standardError.write(Data("  \(name): \(Date().timeIntervalSince(began)) s\n".utf8)) } }
            let interfaces = Self.interfaces(set)
            for table in set.tables {
                let compiled = try CompiledTable(table, interfaces: interfaces, firstID: 0, firstChainID: 0,
                                                 residual: { (_: Rule) throws(CompileError) -> (Int32, Int16) in (0, 0) },
                                                 action: { (_: Rule) throws(CompileError) -> Int32 in 0 })
                // Chains the engine compiles (16 rules or more) all; of the ones it scans, at most
                // 64 per table, evenly spread (the generated kube-proxy set has 10,000 two-rule
                // KUBE-SEP chains, all alike).
                let small = compiled.chains.filter { !$0.isEmpty && $0.count < CompiledChain.linearThreshold }.count
                var smallSeen = 0
                for (c, rules) in compiled.chains.enumerated() where !rules.isEmpty {
                    if rules.count < CompiledChain.linearThreshold {
                        smallSeen += 1
                        guard small <= 64 || (smallSeen - 1) % ((small + 63) / 64) == 0 else { continue }
                    }
                    t.chains += 1
                    t.longestChain = max(t.longestChain, rules.count)
                    // Fewer packets through the biggest chains (the linear scan is the cost).
                    let count = rules.count > 20_000 ? 200 : min(2_000, max(300, 10 * rules.count))
                    let packets = (0..<count).map { _ in Self.packet(&g, rules, interfaces: interfaces.names.count) }
                    let what = "\(name) \(table.name) \(compiled.chainNames[c]) (\(rules.count) rules)"
                    // As the engine compiles it (chains under 16 rules scanned), then compiled
                    // whatever the size, with the structure chosen by cost, the tree alone and
                    // the tuple tables alone (the biggest chains: as the engine does only).
                    var variants = [("engine", CompiledChain(rules))]
                    if rules.count <= 12_000 {
                        let k = (linearBelow: 0, mergeSlack: CompiledChain.mergeSlack, collisionLimit: CompiledChain.collisionLimit,
                                 pairFilterKeys: CompiledChain.pairFilterKeys)
                        variants.append(("compiled", CompiledChain(rules, linearBelow: k.linearBelow, mergeSlack: k.mergeSlack,
                                                                   collisionLimit: k.collisionLimit, pairFilterKeys: k.pairFilterKeys)))
                        variants.append(("tree", CompiledChain(rules, linearBelow: k.linearBelow, mergeSlack: k.mergeSlack,
                                                               collisionLimit: k.collisionLimit, pairFilterKeys: k.pairFilterKeys,
                                                               bitVectorRules: 0)))
                        variants.append(("tables", CompiledChain(rules, linearBelow: k.linearBelow, mergeSlack: k.mergeSlack,
                                                                 collisionLimit: k.collisionLimit, pairFilterKeys: k.pairFilterKeys,
                                                                 tree: false, bitVectorRules: 0)))
                    }
                    for (label, chain) in variants {
                        if chain.hasVectors { t.vectors += 1 }
                        if chain.hasTree { t.trees += 1 }
                        if (chain.treeSummary?.trees ?? 0) > 1 { t.forests += 1 }
                        if !chain.hasVectors && !chain.hasTree && chain.tableCount > 0 { t.tablesOnly += 1 }
                        guard Self.agree(rules, chain, packets, &g, "\(what) \(label)", &t) else { return }
                    }
                }
            }
        }
        print("SharedRuleSetTests: \(t.sets) rule sets, \(t.chains) chains (longest \(t.longestChain) rules), \(t.lookups) lookups "
              + "(\(t.matched) matched), \(t.bursts) bursts; compiled as bit vectors \(t.vectors), cut trees \(t.trees) "
              + "(\(t.forests) forests), tuple tables alone \(t.tablesOnly)")
        guard only == nil else { return }
        XCTAssertEqual(refused, Self.refused)
        // The corpus must actually exercise every structure, and most lookups must hit a rule.
        XCTAssertGreaterThan(t.sets, 45)
        XCTAssertGreaterThanOrEqual(t.longestChain, 99_000)
        XCTAssertGreaterThan(t.vectors, 20)
        XCTAssertGreaterThan(t.trees, 20)
        XCTAssertGreaterThan(t.forests, 5)
        XCTAssertGreaterThan(t.tablesOnly, 20)
        XCTAssertGreaterThan(t.matched, t.lookups / 3)
    }
}
