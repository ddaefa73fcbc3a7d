import NetModel
import Wire
import XCTest

final class NetworkModelParseTests: XCTestCase {
    static let designExample = """
        ip addr add 203.0.113.1/24 dev eth0
        ip addr add 192.168.1.1/24 dev eth1
        ip route add default via 203.0.113.254 dev eth0
        ip route add default via 198.51.100.1 dev ppp1 table 102
        ip rule add fwmark 2 lookup 102
        sysctl net.ipv4.ip_forward=1
        """

    func testDesignExample() {
        let m = parse(Self.designExample)
        XCTAssertEqual(m.interfaceNames, ["lo", "eth0", "eth1", "ppp1"])
        XCTAssertTrue(m.ipForward)
        XCTAssertEqual(m.rules.map(\.priority), [0, 32765, 32766, 32767])
        let eth0 = m.id("eth0"), eth1 = m.id("eth1"), ppp1 = m.id("ppp1")
        XCTAssertEqual(m.route(destination: a("8.8.8.8")), .unicast(interface: eth0, gateway: a("203.0.113.254")))
        XCTAssertEqual(m.route(destination: a("8.8.8.8"), mark: 2), .unicast(interface: ppp1, gateway: a("198.51.100.1")))
        XCTAssertEqual(m.route(destination: a("192.168.1.7"), mark: 2), .unicast(interface: ppp1, gateway: a("198.51.100.1")))
        XCTAssertEqual(m.route(destination: a("192.168.1.7")), .unicast(interface: eth1, gateway: nil))
        XCTAssertEqual(m.route(destination: a("203.0.113.1")), .local(interface: eth0))
        XCTAssertEqual(m.route(destination: a("203.0.113.255"), inputInterface: eth0), .local(interface: eth0))
        // Same layout and wording as `ip route show table all` / `ip rule` on Linux 6.x.
        XCTAssertEqual(m.renderRoutes(), """
            default via 198.51.100.1 dev ppp1 table 102
            default via 203.0.113.254 dev eth0
            192.168.1.0/24 dev eth1 proto kernel scope link src 192.168.1.1
            203.0.113.0/24 dev eth0 proto kernel scope link src 203.0.113.1
            local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
            local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
            broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1
            local 192.168.1.1 dev eth1 table local proto kernel scope host src 192.168.1.1
            broadcast 192.168.1.255 dev eth1 table local proto kernel scope link src 192.168.1.1
            local 203.0.113.1 dev eth0 table local proto kernel scope host src 203.0.113.1
            broadcast 203.0.113.255 dev eth0 table local proto kernel scope link src 203.0.113.1
            0:\tfrom all lookup local
            32765:\tfrom all fwmark 0x2 lookup 102
            32766:\tfrom all lookup main
            32767:\tfrom all lookup default

            """)
    }

    func testAddressCommandForms() {
        let m = parse("""
            ip address add 10.0.0.1/24 dev eth0
            ip a add 10.0.1.1/24 dev eth0
            ip -4 addr add dev eth1 local 10.0.2.1/24 brd + scope link label eth1:x
            ip a a 10.0.3.1/24 brd 10.0.3.77 dev eth1
            ip addr add 10.0.4.1 dev eth1
            """)
        let eth0 = m.interfaces[m.id("eth0")], eth1 = m.interfaces[m.id("eth1")]
        XCTAssertEqual(eth0.addresses.map(\.address), [a("10.0.0.1"), a("10.0.1.1")])
        XCTAssertEqual(eth1.addresses[0], InterfaceAddress(address: a("10.0.2.1"), length: 24, broadcast: a("10.0.2.255"),
                                                           scope: RouteScope.link, label: "eth1:x", secondary: false))
        XCTAssertEqual(eth1.addresses[1].broadcast, a("10.0.3.77"))
        XCTAssertEqual(eth1.addresses[2].length, 32, "no /len means /32, as in iproute2")
        XCTAssertTrue(m.isLocal(a("10.0.4.1")))
        // An explicit brd gets its own broadcast route, on top of the subnet's.
        XCTAssertEqual(m.route(destination: a("10.0.3.77")), .local(interface: m.id("eth1")))
        XCTAssertEqual(m.route(destination: a("10.0.3.255")), .local(interface: m.id("eth1")))
    }

    func testConnectedAndLocalRoutes() {
        let m = parse("""
            ip addr add 10.0.0.1/24 dev eth0
            ip addr add 10.0.0.2/24 dev eth0
            ip addr add 10.1.0.1/30 dev eth1
            ip addr add 10.2.0.1/31 dev eth1
            ip addr add 10.3.0.1/32 dev eth1
            """)
        let kernel = m.routes.filter { $0.table == RouteTableID.main }
        // Secondary 10.0.0.2 and the /32 add no connected route.
        XCTAssertEqual(kernel.map { "\(IPv4Address($0.network))/\($0.length)" }, ["10.0.0.0/24", "10.1.0.0/30", "10.2.0.0/31"])
        XCTAssertTrue(kernel.allSatisfy { $0.scope == RouteScope.link && $0.isKernel })
        XCTAssertTrue(m.interfaces[m.id("eth0")].addresses[1].secondary)
        // The secondary's local route names the primary as source, as the kernel shows it.
        XCTAssertEqual(m.routes.first { $0.type == .local && $0.network == a("10.0.0.2") }?.preferredSource, a("10.0.0.1"))
        // The network address is no longer a broadcast route (Linux >= 5.x); /31 has no broadcast.
        XCTAssertEqual(m.route(destination: a("10.0.0.0")), .unicast(interface: m.id("eth0"), gateway: nil))
        XCTAssertEqual(m.route(destination: a("10.1.0.3")), .local(interface: m.id("eth1")))
        XCTAssertEqual(m.route(destination: a("10.2.0.1")), .local(interface: m.id("eth1")))
        XCTAssertEqual(m.route(destination: a("10.2.0.0")), .unicast(interface: m.id("eth1"), gateway: nil))
        XCTAssertEqual(m.route(destination: a("10.3.0.2")), .noRoute)
    }

    func testRouteCommandForms() {
        let m = parse("""
            ip addr add 192.168.1.1/24 dev eth1
            ip r add 10.0.0.0/8 via 192.168.1.254 metric 7 proto static
            ip ro add to 10.1.0.0/16 dev eth1 src 192.168.1.1 table 100
            ip route append 10.0.0.0/8 via 192.168.1.253 metric 7
            ip route replace 10.1.0.0/16 via 192.168.1.252 table 100
            ip route add local 198.18.0.0/15 dev lo
            ip route add blackhole 10.66.0.0/16
            ip route add unreachable 10.67.0.0/16 table 5
            ip route add prohibit 10.68.0.0/16
            ip route add throw 10.69.0.0/16 table 100
            ip route add 10.70.0.0/16 via 192.168.1.9 dev eth1 onlink scope global
            """)
        let user = m.routes.filter { !$0.isKernel }
        XCTAssertEqual(user.count, 9)
        XCTAssertEqual(user[0].proto, 4)
        XCTAssertEqual(user[1].gateway, a("192.168.1.252"), "replace keeps the slot and its place")
        XCTAssertEqual(user[1].preferredSource, nil)
        XCTAssertEqual(user[3].table, RouteTableID.local, "local routes default to table local")
        XCTAssertTrue(m.isLocal(a("198.19.1.1")))
        XCTAssertEqual(m.route(destination: a("10.9.9.9")), .unicast(interface: m.id("eth1"), gateway: a("192.168.1.254")))
        XCTAssertEqual(m.route(destination: a("10.66.1.1")), .blackhole)
        XCTAssertEqual(m.route(destination: a("10.67.1.1")), .unicast(interface: m.id("eth1"), gateway: a("192.168.1.254")),
                       "table 5 has no rule pointing at it")
        XCTAssertEqual(m.route(destination: a("10.68.1.1")), .prohibit)
    }

    func testRuleForms() {
        let m = parse("""
            ip rule add fwmark 0x10/0xf0 table 100
            ip ru add pref 100 not from 10.0.0.0/8 to 192.0.2.0/24 iif eth0 tos 10 lookup main
            ip rule add priority 200 oif eth1 prohibit
            ip rule add order 300 from all to all fwmark 0 unreachable
            ip rule add blackhole
            """)
        XCTAssertEqual(m.rules.map(\.priority), [0, 99, 100, 200, 300, 32765, 32766, 32767])
        let r = m.rules[2]
        XCTAssertTrue(r.invert)
        XCTAssertEqual(r.tos, 0x10, "tos is read as hex, like iproute2")
        XCTAssertEqual(r.inputInterface, m.id("eth0"))
        XCTAssertEqual(m.rules[4].markMask, 0, "fwmark 0 without mask matches every mark")
        XCTAssertEqual(m.rules[5].markMask, 0xf0)
    }

    func testSysctlAndLexicalForms() {
        XCTAssertFalse(parse("").ipForward, "ip_forward is 0 by default, as in the kernel")
        XCTAssertTrue(parse("sysctl -w net.ipv4.conf.all.forwarding=1").ipForward)
        XCTAssertTrue(parse("sysctl -w net.ipv4.ip_forward = 1").ipForward)
        XCTAssertFalse(parse("sysctl net/ipv4/ip_forward=1\nsysctl -q net.ipv4.ip_forward=0").ipForward)
        let m = parse("# header\r\n\r\nip addr add 10.0.0.1/24 \\\r\n   dev eth0   # trailing\r\nip route add \\\n default via 10.0.0.254\n")
        XCTAssertEqual(m.route(destination: a("1.1.1.1")), .unicast(interface: 1, gateway: a("10.0.0.254")))
    }

    func testLinkUpDown() {
        let m = parse("""
            ip link add eth0 type dummy
            ip addr add 10.0.0.1/24 dev eth0
            ip addr add 10.1.0.1/24 dev eth1
            ip route add 10.20.0.0/16 via 10.1.0.254
            ip link set eth1 down
            ip link set dev eth1 up
            """)
        let eth0 = m.id("eth0"), eth1 = m.id("eth1")
        XCTAssertFalse(m.interfaces[eth0].up, "ip link add leaves the link down")
        XCTAssertEqual(m.route(destination: a("10.0.0.1")), .local(interface: eth0), "local routes survive down")
        XCTAssertEqual(m.route(destination: a("10.0.0.9")), .noRoute, "no connected route while down")
        XCTAssertEqual(m.route(destination: a("10.1.0.9")), .unicast(interface: eth1, gateway: nil), "up restores it")
        XCTAssertEqual(m.route(destination: a("10.20.0.9")), .noRoute, "down flushed the static route for good")
        let up = parse("ip link add eth0 type dummy\nip addr add 10.0.0.1/24 dev eth0\nip link set eth0 up")
        XCTAssertEqual(up.route(destination: a("10.0.0.9")), .unicast(interface: 1, gateway: nil))
    }

    func testRenderRoundTrip() {
        let text = """
            ip link add br0 type bridge
            ip addr add 203.0.113.1/24 dev eth0
            ip addr add 203.0.113.2/24 brd + label eth0:1 dev eth0
            ip addr add 192.168.1.1/24 dev eth1
            ip link set eth2 up
            ip link set eth1 down
            ip route add default via 203.0.113.254
            ip route add 10.0.0.0/8 via 203.0.113.253 metric 5 proto static
            ip route append 10.0.0.0/8 via 203.0.113.252 metric 5
            ip route add blackhole 10.66.0.0/16 table 7
            ip route add local 198.18.0.0/15 dev lo
            ip route add 172.16.0.0/12 dev eth2 scope global
            ip rule add from 192.168.1.0/24 fwmark 0x2/0xff iif eth1 lookup 7
            ip rule add not to 10.0.0.0/8 tos 0x08 pref 10 prohibit
            sysctl net.ipv4.ip_forward=1
            """
        let m = parse(text)
        let again = parse(m.render())
        XCTAssertEqual(again.render(), m.render())
        XCTAssertEqual(again.renderRoutes(), m.renderRoutes())
        XCTAssertEqual(again.interfaces, m.interfaces)
        XCTAssertEqual(again.rules, m.rules)
        XCTAssertEqual("\(m)", m.render())
    }

    /// Found by Fuzz/FuzzNetModel: a quoted interface name with a space parsed, and render()
    /// wrote it unquoted, so its own text did not parse back. The kernel refuses such names
    /// (dev_valid_name), and so does the parser now. The fuzzer's input, as it was.
    func testInterfaceNamesTheKernelRefuses() {
        let fuzzed: [UInt8] = Array("# th\"22 \"22too.\nip link add 203.0.113.ou".utf8) + [0x90]
            + Array("us\"22 \"22too.\nip link add 203.0.113.ou".utf8) + [0x90] + Array("usaee".utf8) + [0x9B, 0x0A]
        XCTAssertEqual(parseError(String(decoding: fuzzed, as: UTF8.self)),
                       "net.conf:2:13: invalid interface name '203.0.113.ou\u{FFFD}us22 22too.' (1 to 15 bytes, no '/', ':' or white space)")
        XCTAssertEqual(parseError("ip link add 'a b' type dummy"),
                       "net.conf:1:13: invalid interface name 'a b' (1 to 15 bytes, no '/', ':' or white space)")
        XCTAssertEqual(parseError("ip addr add 10.0.0.1/24 dev eth0/1"),
                       "net.conf:1:29: invalid interface name 'eth0/1' (1 to 15 bytes, no '/', ':' or white space)")
        XCTAssertEqual(parseError("ip route add 10.0.0.0/8 dev eth0:1"),
                       "net.conf:1:29: invalid interface name 'eth0:1' (1 to 15 bytes, no '/', ':' or white space)")
        XCTAssertEqual(parseError("ip link set 0123456789abcdef up"),
                       "net.conf:1:13: invalid interface name '0123456789abcdef' (1 to 15 bytes, no '/', ':' or white space)")
        XCTAssertEqual(parseError("ip rule add iif '' lookup 7"),
                       "net.conf:1:17: invalid interface name '' (1 to 15 bytes, no '/', ':' or white space)")
        XCTAssertEqual(parseError("ip addr add 10.0.0.1/24 label 'eth0 x' dev eth0"), "net.conf:1:31: invalid label 'eth0 x'")
        XCTAssertEqual(parseError("ip link add br0 type 'a b'"), "net.conf:1:22: invalid link type 'a b'")
        // 15 bytes is the longest name.
        XCTAssertNotNil(parse("ip link set 0123456789abcde up").interfaceIndex(named: "0123456789abcde"))
    }

    /// Names the kernel accepts that are not plain words for the parser (quotes, a leading '#',
    /// an `ip link` keyword) are written so that the rendering parses back to the same model.
    func testRenderQuotesNames() {
        let text = """
            ip link add name '#x' type dummy
            ip link set dev '#x' up
            ip addr add 10.0.0.1/24 dev 'a"b\\c'
            ip route add 10.1.0.0/16 dev up
            ip link add name type type dummy
            ip link set dev down down
            ip rule add iif "it's" lookup 7
            """
        let m = parse(text)
        XCTAssertEqual(m.interfaces.map(\.name), ["lo", "#x", "a\"b\\c", "up", "type", "down", "it's"])
        let again = parse(m.render())
        XCTAssertEqual(again.render(), m.render())
        XCTAssertEqual(again.renderRoutes(), m.renderRoutes())
        XCTAssertEqual(again.interfaces, m.interfaces)
        XCTAssertEqual(again.rules, m.rules)
    }

    /// Found by Fuzz/FuzzNetModel: render() wrote every address before the routes added by
    /// hand, so a route added before an address whose connected route shares its slot came back
    /// as `ip route add` into an occupied slot ("already exists"), and the kernel routes of one
    /// address on two links came back in another order. It now replays addresses and routes in
    /// the order they were added. The first model is the fuzzer's input, cut to what matters.
    func testRenderKeepsTheOrderOfAddressesAndRoutes() {
        for text in [
            """
            # Two ui\u{FFFD}on's mark to uplinser
            ip route add 192.168.1.0/24 dev dthoo.
            ip addr add 203.0.113.1/24 dev eth0
            ip addr add 192.168.1.1/24 dev eth1
            ip addr add 192.0.2.1/27 dev eth2
            ip route add default via 203.0.113.254 # deforward=1
            """,
            """
            ip link add veth9 type dummy
            ip addr add 203.0.113.5/24 dev eth5
            ip addr add 203.0.113.5/24 dev veth9
            ip link set veth9 up
            ip addr add 198.51.100.1/24 dev eth5
            ip route append 198.51.100.0/24 dev veth9
            """,
            // A route that replaced the connected route of an address.
            """
            ip addr add 192.168.1.1/24 dev eth0
            ip route replace 192.168.1.0/24 dev eth1
            ip addr add 203.0.113.1/24 dev eth1
            ip route replace local 203.0.113.1 dev eth0
            """,
        ] {
            let m = parse(text)
            guard let again = try? NetworkModel.parse(m.render(), file: "rendered") else {
                XCTFail("the rendering does not parse:\n\(m.render())")
                continue
            }
            XCTAssertEqual(again.render(), m.render())
            XCTAssertEqual(again.renderRoutes(), m.renderRoutes())
            XCTAssertEqual(again.interfaces, m.interfaces)
            for d in ["192.168.1.7", "203.0.113.5", "198.51.100.9"] {
                XCTAssertEqual(again.route(destination: a(d), inputInterface: 1), m.route(destination: a(d), inputInterface: 1), d)
            }
        }
        // The route added first keeps the slot: 192.168.1.0/24 still leaves by dthoo.
        let m = parse("ip route add 192.168.1.0/24 dev dthoo.\nip addr add 192.168.1.1/24 dev eth1")
        let again = parse(m.render())
        XCTAssertEqual(again.route(destination: a("192.168.1.7")),
                       again.interfaceIndex(named: "dthoo.").map { .unicast(interface: $0, gateway: nil) })
    }

    func testLoadMissingFile() {
        XCTAssertThrowsError(try NetworkModel.load(path: "/nonexistent/net.conf")) { error in
            XCTAssertEqual("\(error)", "/nonexistent/net.conf:0:0: cannot read network model file '/nonexistent/net.conf'")
        }
    }

    func testLoadFile() throws {
        let path = NSTemporaryDirectory() + "netmodel-\(getpid()).conf"
        try Self.designExample.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try NetworkModel.load(path: path).interfaceNames, ["lo", "eth0", "eth1", "ppp1"])
    }
}
