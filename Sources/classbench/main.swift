// classbench: build time, memory and ns/lookup of CompiledChain vs LinearClassifier on the
// ClassBench sets and traces (see docs/classifier.md). Not a test: numbers only, plus a check
// that every trace packet classifies to its expected index with both classifiers.
//
//   swift run -c release classbench [--traces DIR] [--linear-limit N] SET...
//   (traces: DIR/<set>.trace from shared/anchors/dpdk-acl/gen_traces.sh)
import Classifier
import Foundation
import Rules
import Wire

let shared = "/work/shared"
var traceDir = "\(shared)/anchors/dpdk-acl/out"
var linearLimit = 100_000
var sets: [String] = []
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--traces": traceDir = args.popFirst() ?? traceDir
    case "--linear-limit": linearLimit = Int(args.popFirst() ?? "") ?? linearLimit
    default: sets.append(a)
    }
}
if sets.isEmpty { sets = ["acl1_1k", "acl1_10k"] }

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

struct Packet { var f: PacketFields; var expected: Int32 }

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

print("set\trules\tparse_s\tbuild_ms\ttables\tlongest_bucket\tstructure_bytes\trule_bytes\tpackets\tcompiled_ns\tlinear_ns\tlinear_packets\tmismatches")
for set in sets {
    let t0 = ContinuousClock.now
    guard let rs = try? RestoreParser.load(path: "\(shared)/rulesets/classbench/\(set).rules"), let filter = rs.table(.filter),
          let table = try? CompiledTable(filter, interfaces: InterfaceTable([]), firstID: 0, firstChainID: 0,
                                         residual: { (_: Rule) throws(CompileError) -> (Int32, Int16) in (0, 0) },
                                         action: { (_: Rule) throws(CompileError) -> Int32 in throw CompileError("action") }),
          let fw = table.chainNames.firstIndex(of: "FORWARD")
    else { print("\(set): cannot load"); continue }
    let rules = table.chains[fw]
    let parsed = ContinuousClock.now - t0
    let t1 = ContinuousClock.now
    let chain = CompiledChain(rules)
    let built = ContinuousClock.now - t1
    let packets = loadTrace("\(traceDir)/\(set).trace")
    var mismatches = 0
    var compiledNs = 0.0, linearNs = 0.0
    var sink = 0
    if !packets.isEmpty {
        var tc = ContinuousClock.now
        for _ in 0..<3 {   // best of 3 passes
            tc = ContinuousClock.now
            for p in packets { sink &+= chain.firstMatch(from: 0, p.f)?.index ?? -1 }
            let ns = seconds(ContinuousClock.now - tc) * 1e9 / Double(packets.count)
            compiledNs = compiledNs == 0 ? ns : min(compiledNs, ns)
        }
        let lin = packets.prefix(linearLimit)
        let tl = ContinuousClock.now
        for p in lin { sink &+= LinearClassifier.firstMatch(rules, from: 0, p.f)?.index ?? -1 }
        linearNs = seconds(ContinuousClock.now - tl) * 1e9 / Double(lin.count)
        for p in packets {
            if Int32(chain.firstMatch(from: 0, p.f)?.index ?? -1) != p.expected { mismatches += 1 }
        }
        for p in lin where Int32(LinearClassifier.firstMatch(rules, from: 0, p.f)?.index ?? -1) != p.expected { mismatches += 1 }
    }
    print("\(set)\t\(rules.count)\t\(String(format: "%.2f", seconds(parsed)))\t\(String(format: "%.1f", seconds(built) * 1000))\t\(chain.tableCount)\t\(chain.longestBucket)\t\(chain.structureBytes)\t\(rules.count * MemoryLayout<CompiledRule>.stride)\t\(packets.count)\t\(String(format: "%.1f", compiledNs))\t\(String(format: "%.1f", linearNs))\t\(min(linearLimit, packets.count))\t\(mismatches)" + (sink == 42 ? " " : ""))
}
print("peak RSS (VmHWM) \(rssKB("VmHWM:")) kB")
