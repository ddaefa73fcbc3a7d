import NetModel
import XCTest

/// One test per kind of error, checking the exact `file:line:column: message`.
final class DiagnosticTests: XCTestCase {
    let base = "ip addr add 10.0.0.1/24 dev eth0\n"

    func testUnknownCommand() {
        XCTAssertEqual(parseError("\n  iptables -A FORWARD"), "net.conf:2:3: unknown command 'iptables' (expected 'ip' or 'sysctl')")
    }
    func testUnknownObjectAndVerb() {
        XCTAssertEqual(parseError("ip neigh add 10.0.0.2 dev eth0"), "net.conf:1:4: unsupported ip object 'neigh' (address, route, rule or link)")
        XCTAssertEqual(parseError("ip route del 10.0.0.0/8"), "net.conf:1:10: unsupported ip route command 'del'")
        XCTAssertEqual(parseError("ip -6 route add ::/0 dev eth0"), "net.conf:1:4: IPv6 is not modeled ('-6')")
        XCTAssertEqual(parseError("ip -s link set eth0 up"), "net.conf:1:4: unsupported ip option '-s'")
        XCTAssertEqual(parseError("ip link set eth0 mtu 9000"), "net.conf:1:18: unsupported ip link set option 'mtu' (only up and down)")
    }
    func testUnknownOptions() {
        XCTAssertEqual(parseError(base + "ip route add 10.1.0.0/16 dev eth0 mtu 1400"), "net.conf:2:35: unknown ip route option 'mtu'")
        XCTAssertEqual(parseError("ip addr add 10.0.0.1/24 dev eth0 valid_lft 10"), "net.conf:1:34: unknown ip address option 'valid_lft'")
        XCTAssertEqual(parseError("ip rule add ipproto tcp lookup 5"), "net.conf:1:13: unknown ip rule option 'ipproto'")
    }
    func testBadAddresses() {
        XCTAssertEqual(parseError("ip addr add 10.0.0.300/24 dev eth0"), "net.conf:1:13: invalid address '10.0.0.300/24'")
        XCTAssertEqual(parseError(base + "ip route add 10.0.0.0/8 via 10.0.0.x"), "net.conf:2:29: invalid address '10.0.0.x'")
        XCTAssertEqual(parseError(base + "ip route add 10.1.0.1/16 dev eth0"), "net.conf:2:14: invalid prefix '10.1.0.1/16': host bits are set")
        XCTAssertEqual(parseError("ip rule add from 10.0.0.0/33 lookup 5"), "net.conf:1:18: invalid address '10.0.0.0/33'")
    }
    func testMissingValues() {
        XCTAssertEqual(parseError("ip route add default via"), "net.conf:1:22: missing value after 'via'")
        XCTAssertEqual(parseError("ip addr add 10.0.0.1/24"), "net.conf:1:9: ip address add needs 'dev IFACE'")
        XCTAssertEqual(parseError("ip route add 10.1.0.0/16"), "net.conf:1:14: unicast route needs 'dev IFACE' or 'via GATEWAY'")
        XCTAssertEqual(parseError("ip rule add from 10.0.0.0/8"), "net.conf:1:9: ip rule add needs an action (lookup TABLE, blackhole, unreachable or prohibit)")
    }
    func testGatewayNotReachable() {
        XCTAssertEqual(parseError(base + "ip route add 10.7.0.0/16 via 10.5.0.9"),
                       "net.conf:2:30: gateway 10.5.0.9 is not directly reachable (no connected route); add 'dev IFACE'")
        // A gateway behind another gateway is not directly reachable either (kernel: scope check).
        XCTAssertEqual(parseError(base + "ip route add 10.8.0.0/16 via 10.0.0.9\nip route add 10.9.0.0/16 via 10.8.0.1"),
                       "net.conf:3:30: gateway 10.8.0.1 is not directly reachable (no connected route); add 'dev IFACE'")
    }
    func testDuplicates() {
        XCTAssertEqual(parseError(base + "ip route add 10.0.0.0/24 dev eth1"), "net.conf:2:14: route 10.0.0.0/24 metric 0 already exists in table main")
        XCTAssertEqual(parseError(base + "ip addr add 10.0.0.1/24 dev eth0"), "net.conf:2:29: address 10.0.0.1/24 already exists on 'eth0'")
        XCTAssertEqual(parseError("ip link add eth0 type dummy\nip link add eth0 type dummy"), "net.conf:2:13: interface 'eth0' already exists")
    }
    func testTablesAndValues() {
        XCTAssertEqual(parseError("ip rule add lookup isp2"), "net.conf:1:20: unknown table 'isp2' (use a number, main, local or default)")
        XCTAssertEqual(parseError("ip rule add tos 0x03 lookup 5"), "net.conf:1:17: invalid tos '0x03': ECN bits must be 0")
        XCTAssertEqual(parseError("ip rule add fwmark 0x1/zz lookup 5"), "net.conf:1:20: invalid fwmark '0x1/zz'")
        XCTAssertEqual(parseError(base + "ip route add 10.1.0.0/16 dev eth0 metric x"), "net.conf:2:42: invalid metric 'x'")
        XCTAssertEqual(parseError(base + "ip route add 10.1.0.0/16 dev eth0 src 10.0.0.7"), "net.conf:2:39: src 10.0.0.7 is not an address of this box")
    }
    func testDownInterface() {
        XCTAssertEqual(parseError("ip link add eth0 type dummy\nip route add 10.0.0.0/8 dev eth0"), "net.conf:2:29: interface 'eth0' is down")
    }
    func testSysctl() {
        XCTAssertEqual(parseError("sysctl -w net.ipv4.conf.all.rp_filter=1"), "net.conf:1:11: unsupported sysctl 'net.ipv4.conf.all.rp_filter'")
        XCTAssertEqual(parseError("sysctl net.ipv4.ip_forward=yes"), "net.conf:1:28: invalid value 'yes' for net.ipv4.ip_forward (0 or 1)")
        XCTAssertEqual(parseError("sysctl net.ipv4.ip_forward"), "net.conf:1:8: expected KEY=VALUE, got 'net.ipv4.ip_forward'")
    }
    func testLexical() {
        XCTAssertEqual(parseError("ip addr add 10.0.0.1/24 dev \"eth0"), "net.conf:1:29: unterminated quote")
        // Errors on a continued line name that line.
        XCTAssertEqual(parseError("ip route add \\\n   10.1.0.0/16 \\\n   dev eth0 bogus", file: "r.net"), "r.net:3:13: unknown ip route option 'bogus'")
    }
}
