import NetModel
import Wire
import XCTest

final class RouteLookupTests: XCTestCase {
    let m = parse("""
        ip addr add 203.0.113.1/24 dev eth0
        ip addr add 192.168.1.1/24 dev eth1
        ip addr add 192.168.1.2/24 dev eth1
        ip addr add 10.9.0.1/30 dev eth2
        ip route add default via 203.0.113.254
        ip route add 10.0.0.0/8 via 192.168.1.254
        ip route add 10.1.0.0/16 via 10.9.0.2 metric 10
        ip route add 10.1.0.0/16 via 192.168.1.253 metric 5
        ip route append 10.1.0.0/16 via 192.168.1.252 metric 5
        ip route add 10.1.2.0/24 dev eth2
        ip route add blackhole 10.1.2.3/32
        ip route add unreachable 10.67.0.0/16
        ip route add default via 10.9.0.2 table 102
        ip route add 10.99.0.0/16 via 192.168.1.250 table 103
        ip route add throw 10.99.1.0/24 table 103
        ip rule add fwmark 2 lookup 102
        ip rule add from 192.168.1.128/25 lookup 102
        ip rule add fwmark 0x10/0xf0 lookup 103
        ip rule add pref 100 to 198.18.0.0/15 prohibit
        ip rule add tos 0x10 lookup 102
        ip rule add iif lo to 10.98.0.0/16 blackhole
        ip rule add oif eth0 lookup 102
        ip rule add fwmark 7 lookup 55
        """)
    var eth0: Int { m.id("eth0") }
    var eth1: Int { m.id("eth1") }
    var eth2: Int { m.id("eth2") }

    func testLongestPrefixWins() {
        XCTAssertEqual(m.route(destination: a("8.8.8.8")), .unicast(interface: eth0, gateway: a("203.0.113.254")))
        XCTAssertEqual(m.route(destination: a("10.200.0.1")), .unicast(interface: eth1, gateway: a("192.168.1.254")))
        XCTAssertEqual(m.route(destination: a("10.1.9.9")), .unicast(interface: eth1, gateway: a("192.168.1.253")),
                       "lowest metric, then the first added")
        XCTAssertEqual(m.route(destination: a("10.1.2.4")), .unicast(interface: eth2, gateway: nil))
        XCTAssertEqual(m.route(destination: a("10.1.2.3")), .blackhole)
        XCTAssertEqual(m.route(destination: a("10.67.0.1")), .unreachable)
    }

    func testViaWithoutDevIsResolvedFromConnectedRoutes() {
        let r = m.routes.first { $0.gateway == a("10.9.0.2") && $0.table == 102 }
        XCTAssertEqual(r?.interface, eth2, "table 102 has no connected route: resolved through the rules, like the kernel")
        XCTAssertEqual(r?.scope, RouteScope.universe)
    }

    func testDefaultRulePriorities() {
        let plain = parse("")
        XCTAssertEqual(plain.rules.map(\.priority), [0, 32766, 32767])
        XCTAssertEqual(plain.rules.map(\.action), [.lookup(255), .lookup(254), .lookup(253)])
        XCTAssertEqual(m.rules.map(\.priority), [0, 96, 97, 98, 99, 100, 32763, 32764, 32765, 32766, 32767])
        // The kernel's quirk: once a second rule has priority 0, new rules get 0 too.
        let zero = parse("ip rule add pref 0 lookup 7\nip rule add lookup 8")
        XCTAssertEqual(zero.rules.map(\.priority), [0, 0, 0, 32766, 32767])
        XCTAssertEqual(zero.rules[2].action, .lookup(8), "same priority: after the earlier ones")
    }

    func testPolicyRules() {
        let gw102 = RouteDecision.unicast(interface: eth2, gateway: a("10.9.0.2"))
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), mark: 2), gw102)
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), mark: 3), .unicast(interface: eth0, gateway: a("203.0.113.254")))
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), source: a("192.168.1.200"), inputInterface: eth1), gw102)
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), source: a("192.168.1.100"), inputInterface: eth1),
                       .unicast(interface: eth0, gateway: a("203.0.113.254")))
        // fwmark with mask; table 103 has no default, so the lookup falls through to main.
        XCTAssertEqual(m.route(destination: a("10.99.5.5"), mark: 0x1F), .unicast(interface: eth1, gateway: a("192.168.1.250")))
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), mark: 0x13), .unicast(interface: eth0, gateway: a("203.0.113.254")))
        XCTAssertEqual(m.route(destination: a("10.99.1.5"), mark: 0x10), .unicast(interface: eth1, gateway: a("192.168.1.254")),
                       "throw goes on to the next rule")
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), mark: 7), .unicast(interface: eth0, gateway: a("203.0.113.254")),
                       "a rule for a table without routes passes on")
        XCTAssertEqual(m.route(destination: a("198.19.0.1")), .prohibit)
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), tos: 0x12), gw102, "tos compared under IPTOS_RT_MASK")
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), tos: 0x08), .unicast(interface: eth0, gateway: a("203.0.113.254")))
        // Locally generated packets are looked up with iif lo.
        XCTAssertEqual(m.route(destination: a("10.98.0.1")), .blackhole)
        XCTAssertEqual(m.route(destination: a("10.98.0.1"), source: a("192.168.1.5"), inputInterface: eth1),
                       .unicast(interface: eth1, gateway: a("192.168.1.254")))
    }

    func testNotInvertsTheWholeSelector() {
        let n = parse("""
            ip addr add 192.168.1.1/24 dev eth1
            ip route add default via 192.168.1.254
            ip rule add not iif lo to 10.97.0.0/16 unreachable
            """)
        let eth1 = n.id("eth1"), gw = RouteDecision.unicast(interface: eth1, gateway: a("192.168.1.254"))
        XCTAssertEqual(n.route(destination: a("10.97.0.1")), gw, "local traffic to 10.97/16: both selectors hold")
        XCTAssertEqual(n.route(destination: a("8.8.8.8")), .unreachable, "not (iif lo and to 10.97/16), as the kernel")
        XCTAssertEqual(n.route(destination: a("10.97.0.1"), source: a("192.168.1.5"), inputInterface: eth1), .unreachable)
    }

    func testLocalBroadcastAndLoopback() {
        XCTAssertEqual(m.route(destination: a("203.0.113.1")), .local(interface: eth0))
        XCTAssertEqual(m.route(destination: a("192.168.1.2")), .local(interface: eth1), "secondary addresses are local")
        XCTAssertEqual(m.route(destination: a("192.168.1.255"), source: a("192.168.1.9"), inputInterface: eth1),
                       .local(interface: eth1))
        XCTAssertEqual(m.route(destination: a("10.9.0.3")), .local(interface: eth2))
        XCTAssertEqual(m.route(destination: 0xFFFF_FFFF, inputInterface: eth1), .local(interface: eth1))
        XCTAssertEqual(m.route(destination: a("127.0.0.1")), .local(interface: 0))
        XCTAssertEqual(m.route(destination: a("127.8.9.10")), .local(interface: 0))
        XCTAssertEqual(m.interfaceName(0), "lo")
        XCTAssertTrue(m.isLocal(a("127.1.1.1")))
        XCTAssertTrue(m.isLocal(a("192.168.1.2")))
        XCTAssertFalse(m.isLocal(a("192.168.1.255")), "broadcast, not local (inet_addr_type)")
        XCTAssertFalse(m.isLocal(a("192.168.1.3")))
    }

    func testSourceAddressSelection() {
        let s = parse("""
            ip addr add 192.168.1.1/24 dev eth1
            ip addr add 192.168.1.2/24 dev eth1
            ip addr add 10.0.0.1/24 dev eth1
            ip addr add 172.16.0.1/24 scope link dev eth2
            ip link set eth3 up
            """)
        let eth1 = s.id("eth1")
        XCTAssertEqual(s.primaryAddress(of: eth1), a("192.168.1.1"))
        XCTAssertEqual(s.primaryAddress(of: s.id("eth3")), nil)
        XCTAssertEqual(s.primaryAddress(of: 0), a("127.0.0.1"))
        XCTAssertEqual(s.sourceAddress(for: eth1, gateway: a("10.0.0.254")), a("10.0.0.1"))
        XCTAssertEqual(s.sourceAddress(for: eth1, gateway: a("192.168.1.2")), a("192.168.1.1"), "never a secondary")
        XCTAssertEqual(s.sourceAddress(for: eth1, gateway: nil), a("192.168.1.1"))
        XCTAssertEqual(s.sourceAddress(for: eth1, gateway: a("8.8.8.8")), a("192.168.1.1"))
        // Link scope is never used for a universe destination; with nothing usable on the
        // device the kernel takes the first global address of any other (never lo's host scope).
        XCTAssertEqual(s.sourceAddress(for: s.id("eth2"), gateway: a("172.16.0.9")), a("192.168.1.1"))
        XCTAssertEqual(s.sourceAddress(for: s.id("eth3"), gateway: nil), a("192.168.1.1"))
        XCTAssertEqual(parse("").sourceAddress(for: 0, gateway: nil), nil)
    }

    /// The per-packet query must stay cheap: a sanity bound, not a benchmark.
    func testLookupCost() {
        var text = "ip addr add 192.168.1.1/24 dev eth1\n"
        for i in 0..<4096 { text += "ip route add 10.\(i >> 8).\(i & 255).0/24 via 192.168.1.254 metric \(i % 3)\n" }
        let big = parse(text)
        var hits = 0
        let base = a("10.0.0.0")
        let start = DispatchTime.now().uptimeNanoseconds
        for i in 0..<200_000 {
            if case .unicast = big.route(destination: base &+ UInt32(truncatingIfNeeded: i &* 2_654_435_761) & 0x0FFF_FFFF) { hits += 1 }
        }
        let ns = Double(DispatchTime.now().uptimeNanoseconds - start) / 200_000
        XCTAssertGreaterThan(hits, 0)
        print("route() on 4096 routes: \(Int(ns)) ns per lookup (debug build)")
        XCTAssertLessThan(ns, 50_000)
    }
}
