@testable import NetModel
import Wire
import XCTest

/// The engine's route lookups answer from a flattened map per table (`RoutingIndex.flatten`);
/// the search by prefix length it is built from stays the reference. Random tables (nested and
/// overlapping prefixes of every length, equal prefixes with different metrics, several tables,
/// blackhole/unreachable/throw routes), looked up at every prefix's edges and at random.
final class RouteFlattenTests: XCTestCase {
    func testFlattenedLookupEqualsPrefixSearch() throws {
        var rng = SystemRandomNumberGenerator()
        var seed = UInt64.random(in: 0 ... .max, using: &rng)
        print("RouteFlattenTests seed \(seed)")
        func next() -> UInt64 {   // SplitMix64: the seed above reproduces a failure
            seed &+= 0x9E37_79B9_7F4A_7C15
            var z = seed
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var compared = 0
        for _ in 0 ..< 60 {
            var text = """
                ip addr add 10.0.0.1/8 dev eth0
                ip addr add 192.168.7.1/24 dev eth1
                ip addr add 172.16.0.1/12 dev eth2

                """
            // Addresses near a few bases, so that prefixes nest and overlap.
            let bases: [UInt32] = [0x0A00_0000, 0x0A01_0200, 0xC0A8_0700, 0xAC10_0000, 0x0800_0000, 0xFFFF_FF00]
            for k in 0 ..< Int(next() % 40) {
                let len = Int(next() % 33)
                let base = bases[Int(next() % UInt64(bases.count))] ^ UInt32(truncatingIfNeeded: next() % 4096)
                let mask: UInt32 = len == 0 ? 0 : ~0 << (32 - len)
                let net = IPv4Address(base & mask)
                let table = [" table 100", " table 200", ""][Int(next() % 3)]
                let metric = " metric \(next() % 3)"
                let line: String
                switch next() % 6 {
                case 0: line = "ip route add blackhole \(net)/\(len)\(table)\(metric)"
                case 1: line = "ip route add unreachable \(net)/\(len)\(table)\(metric)"
                case 2: line = "ip route add throw \(net)/\(len)\(table)\(metric)"
                default: line = "ip route append \(net)/\(len) dev eth\(k % 3)\(table)\(metric)"
                }
                // Keep the lines the parser accepts (a duplicate route is refused, as by `ip`).
                if (try? NetworkModel.parse(text + line + "\n", file: "net")) != nil { text += line + "\n" }
            }
            let m = try NetworkModel.parse(text, file: "net")
            let index = m.index
            XCTAssertEqual(index.flatStarts.count, index.tableIDs.count)
            for slot in index.tableIDs.indices {
                var probes: [UInt32] = [0, .max]
                for g in index.tableGroups[slot] {
                    for i in index.groups[g].range {
                        let lo = index.networks[i], hi = lo | ~index.groups[g].mask
                        probes += [lo, lo &- 1, hi, hi &+ 1, lo &+ (hi &- lo) / 2]
                    }
                }
                for _ in 0 ..< 50 { probes.append(UInt32(truncatingIfNeeded: next())) }
                for x in probes {
                    XCTAssertEqual(index.lookup(slot: slot, x, minScope: RouteScope.universe),
                                   index.groupLookup(slot: slot, x, minScope: RouteScope.universe),
                                   "table \(index.tableIDs[slot]), \(IPv4Address(x)):\n\(text)")
                    compared += 1
                }
            }
        }
        XCTAssertGreaterThan(compared, 5000)
    }
}
