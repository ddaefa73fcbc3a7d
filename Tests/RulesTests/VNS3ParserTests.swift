import Diagnostics
import Wire
import XCTest
@testable import Rules

final class VNS3ParserTests: XCTestCase {
    let vars = ["plugin_instance_1_ip": "198.51.100.2", "plugin_instance_2_ip": "198.51.100.3", "vns3_public_ip": "203.0.113.1"]

    func parse(_ s: String, _ v: [String: String]? = nil) throws -> RuleSet { try VNS3Parser.parse(s, file: "t.vns3", variables: v ?? vars) }

    /// The `-A` lines of the rendered rule set, as `table:-A CHAIN ...`.
    func rules(_ s: String, _ v: [String: String]? = nil) throws -> [String] {
        var out: [String] = []
        var table = ""
        for l in RuleSetRenderer.render(try parse(s, v), counters: false).split(separator: "\n") {
            if l.hasPrefix("*") { table = String(l.dropFirst()) }
            if l.hasPrefix("-A ") { out.append("\(table):\(l)") }
        }
        return out
    }

    func expectError(_ s: String, _ message: String, _ v: [String: String]? = nil, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try parse(s, v)
            XCTFail("expected error \(message)", file: file, line: line)
        } catch {
            XCTAssertEqual((error as? Diagnostic)?.description, message, file: file, line: line)
        }
    }

    func testDesignExampleLine() throws {
        XCTAssertEqual(try rules("PREROUTING -i eth0 -p tcp --dport 45 -j DNAT --to ${plugin_instance_1_ip}:22"),
                       ["nat:-A PREROUTING -i eth0 -p tcp -m tcp --dport 45 -j DNAT --to-destination 198.51.100.2:22"])
    }

    func testEachFirstWord() throws {
        XCTAssertEqual(try rules("""
        PREROUTING -i eth0 -p udp --dport 53 -j REDIRECT --to-ports 5353
        POSTROUTING -o eth0 -s 10.0.0.0/24 -j SNAT --to ${vns3_public_ip}
        POSTROUTING -o eth0 -j MASQUERADE
        FORWARD -i eth1 -j ACCEPT
        INPUT -p tcp --dport 22 -j DROP
        OUTPUT -d 192.0.2.9 -j REJECT
        """), [
            "nat:-A PREROUTING -i eth0 -p udp -m udp --dport 53 -j REDIRECT --to-ports 5353",
            "nat:-A POSTROUTING -s 10.0.0.0/24 -o eth0 -j SNAT --to-source 203.0.113.1",
            "nat:-A POSTROUTING -o eth0 -j MASQUERADE",
            "filter:-A INPUT -p tcp -m tcp --dport 22 -j DROP",
            "filter:-A FORWARD -i eth1 -j ACCEPT",
            "filter:-A OUTPUT -d 192.0.2.9/32 -j REJECT --reject-with icmp-port-unreachable",
        ])
    }

    func testCustForms() throws {
        XCTAssertEqual(try rules("""
        PREROUTING_CUST -i eth0 -p tcp -s 0.0.0.0/0 --dport 8888 -j DNAT --to 198.51.100.2:8888
        POSTROUTING_CUST -o eth0 -j MASQUERADE
        FORWARD_CUST -o eth1 -j DROP
        INPUT_CUST -s 192.168.10.0/24 -j ACCEPT
        OUTPUT_CUST -o eth9 -j DROP
        ROUTING_CUST -i eth1 -j MARK --set-mark 2
        MACRO_CUST -o eth0 -s 198.51.100.0/28 -j MASQUERADE
        MACRO_CUST -i eth0 -p tcp --dport 2222 -j DNAT --to 198.51.100.2:22
        """), [
            "mangle:-A PREROUTING -i eth1 -j MARK --set-xmark 0x2/0xffffffff",
            "nat:-A PREROUTING -s 0.0.0.0/0 -i eth0 -p tcp -m tcp --dport 8888 -j DNAT --to-destination 198.51.100.2:8888",
            "nat:-A PREROUTING -i eth0 -p tcp -m tcp --dport 2222 -j DNAT --to-destination 198.51.100.2:22",
            "nat:-A POSTROUTING -o eth0 -j MASQUERADE",
            "nat:-A POSTROUTING -s 198.51.100.0/28 -o eth0 -j MASQUERADE",
            "filter:-A INPUT -s 192.168.10.0/24 -j ACCEPT",
            "filter:-A FORWARD -o eth1 -j DROP",
            "filter:-A OUTPUT -o eth9 -j DROP",
        ])
    }

    func testHookRulesPlacedByTarget() throws {
        // A NAT exemption stays in nat, in order with the DNAT; DROP goes to mangle (nat refuses
        // filtering), as the VNS3 variables page's `PREROUTING -s ${fwset_blacklist} -j DROP`.
        XCTAssertEqual(try rules("""
        PREROUTING -d 10.0.0.1 -j ACCEPT
        PREROUTING -i eth0 -j DNAT --to 198.51.100.2
        PREROUTING -s ${blacklist} -j DROP
        """, ["blacklist": "192.0.2.0/24"]), [
            "mangle:-A PREROUTING -s 192.0.2.0/24 -j DROP",
            "nat:-A PREROUTING -d 10.0.0.1/32 -j ACCEPT",
            "nat:-A PREROUTING -i eth0 -j DNAT --to-destination 198.51.100.2",
        ])
    }

    func testVariables() throws {
        XCTAssertEqual(try rules("INPUT_CUST -d ${overlay} -p tcp --dport ${port} -j ACCEPT # ${not_expanded_in_comment}",
                                 ["overlay": "172.31.0.0/16", "port": "443"]),
                       ["filter:-A INPUT -d 172.31.0.0/16 -p tcp -m tcp --dport 443 -j ACCEPT"])
        expectError("PREROUTING -i eth0 -p tcp --dport 45 -j DNAT --to ${plugin_instance_9_ip}:22",
                    "t.vns3:1:51: unbound variable '${plugin_instance_9_ip}' (bind it with --var plugin_instance_9_ip=VALUE or in a --vars file)")
        expectError("INPUT -s ${x", "t.vns3:1:10: unterminated '${'")
        // A column after an expansion points into the line as written.
        expectError("INPUT -s ${vns3_public_ip} -p tcp --dport nope -j ACCEPT", "t.vns3:1:43: bad port or range 'nope'")
        // A bad value reports at the variable.
        expectError("INPUT -s ${v} -j ACCEPT", "t.vns3:1:10: bad address '10.0.0.300' (expected a.b.c.d[/len])", ["v": "10.0.0.300"])
    }

    func testVariablesFile() throws {
        let v = try VNS3Parser.parseVariables("""
        # comment
        plugin_instance_1_ip=198.51.100.2

          quoted="a b"
        """, file: "t.vars")
        XCTAssertEqual(v, ["plugin_instance_1_ip": "198.51.100.2", "quoted": "a b"])
        XCTAssertThrowsError(try VNS3Parser.parseVariables("ok=1\n9bad=2\n", file: "t.vars")) { e in
            XCTAssertEqual((e as? Diagnostic)?.description, "t.vars:2:1: expected NAME=VALUE, got '9bad=2'")
        }
    }

    func testNetmap() throws {
        XCTAssertEqual(try rules("""
        PREROUTING -i tun0 -d 172.16.8.0/24 -j NETMAP --to 10.8.0.0/24
        POSTROUTING_CUST -o tun0 -s 10.9.0.0/24 -j NETMAP --to 172.16.9.0/24
        """), [
            "nat:-A PREROUTING -d 172.16.8.0/24 -i tun0 -j NETMAP --to 10.8.0.0/24",
            "nat:-A POSTROUTING -s 10.9.0.0/24 -o tun0 -j NETMAP --to 172.16.9.0/24",
        ])
        expectError("MACRO_CUST -d 172.16.8.0/24 -j NETMAP --to 10.8.0.0/24",
                    "t.vns3:1:32: MACRO_CUST takes COPY, LOOKUP, MASQUERADE, SNAT, DNAT or REDIRECT, not 'NETMAP' (NETMAP: write it in PREROUTING to map destinations or POSTROUTING to map sources)")
    }

    func testCopyExpansions() throws {
        XCTAssertEqual(try rules("MACRO_CUST -j COPY --from tun0 --to ${plugin_instance_2_ip} --bidirectional"), [
            "mangle:-A PREROUTING -i tun0 -j COPY --to 198.51.100.3 --from tun0 --inbound",
            "mangle:-A POSTROUTING -o tun0 -j COPY --to 198.51.100.3 --from tun0 --outbound",
        ])
        XCTAssertEqual(try rules("MACRO_CUST -p tcp -j COPY --to 198.51.100.3 --from eth0 --inbound"),
                       ["mangle:-A PREROUTING -i eth0 -p tcp -j COPY --to 198.51.100.3 --from eth0 --inbound"])
        XCTAssertEqual(try rules("MACRO_CUST -d 10.0.0.0/8 -j COPY --to 198.51.100.3 --from eth1 --outbound"),
                       ["mangle:-A POSTROUTING -d 10.0.0.0/8 -o eth1 -j COPY --to 198.51.100.3 --from eth1 --outbound"])
        // No direction: both ways; no --from: no interface match.
        XCTAssertEqual(try rules("MACRO_CUST -j COPY --to 198.51.100.3"), [
            "mangle:-A PREROUTING -j COPY --to 198.51.100.3 --inbound",
            "mangle:-A POSTROUTING -j COPY --to 198.51.100.3 --outbound",
        ])
        expectError("MACRO_CUST -i eth0 -j COPY --to 198.51.100.3 --from tun0 --inbound",
                    "t.vns3:1:12: COPY --from tun0 already names the interface; drop '-i'")
        expectError("MACRO_CUST -j COPY --to 198.51.100.3 --inbound --outbound",
                    "t.vns3:1:48: COPY takes one of --inbound, --outbound, --bidirectional")
        expectError("FORWARD -j COPY --to 198.51.100.3", "t.vns3:1:12: COPY belongs in MACRO_CUST (or PREROUTING/POSTROUTING)")
        expectError("PREROUTING -j COPY --to 198.51.100.3 --outbound",
                    "t.vns3:1:38: '--outbound' contradicts PREROUTING (write the COPY in MACRO_CUST to copy both ways)")
    }

    func testLookupWithoutThrough() throws {
        XCTAssertEqual(try rules("""
        ROUTING_CUST -i eth1 -s 10.1.0.0/16 -j LOOKUP --table plugin1
        PREROUTING -i eth2 -j LOOKUP --table plugin2
        MACRO_CUST -d 192.0.2.0/24 -j LOOKUP --table plugin3
        ROUTING_CUST -m mark --mark 7 -j LOOKUP --table plugin4
        """), [
            "mangle:-A PREROUTING -s 10.1.0.0/16 -i eth1 -m mark --mark 0x0 -j LOOKUP --table plugin1",
            "mangle:-A PREROUTING -i eth2 -m mark --mark 0x0 -j LOOKUP --table plugin2",
            "mangle:-A PREROUTING -d 192.0.2.0/24 -m mark --mark 0x0 -j LOOKUP --table plugin3",
            "mangle:-A PREROUTING -m mark --mark 0x7 -j LOOKUP --table plugin4",
        ])
        expectError("POSTROUTING -j LOOKUP --table plugin1",
                    "t.vns3:1:16: LOOKUP routes before the routing decision: write it in PREROUTING, ROUTING_CUST or MACRO_CUST")
    }

    func testLookupThrough() throws {
        XCTAssertEqual(try rules("ROUTING_CUST -i eth1 -s 10.1.0.0/16 -p tcp --dport 80 -j LOOKUP --table plugin1 --through"), [
            "mangle:-A PREROUTING -s 10.1.0.0/16 -i eth1 -p tcp -m tcp --dport 80 -m mark --mark 0x0 -j LOOKUP --table plugin1 --through",
            "mangle:-A PREROUTING -p tcp -m conntrack --ctorigsrc 10.1.0.0/16 --ctorigdstport 80 --ctdir REPLY -m mark --mark 0x0 -j LOOKUP --table plugin1 --through",
        ])
        XCTAssertEqual(try rules("MACRO_CUST ! -d 10.0.0.0/8 -m comment --comment web -j LOOKUP --table waf --through"), [
            "mangle:-A PREROUTING ! -d 10.0.0.0/8 -m comment --comment \"web\" -m mark --mark 0x0 -j LOOKUP --table waf --through",
            "mangle:-A PREROUTING -m conntrack ! --ctorigdst 10.0.0.0/8 --ctdir REPLY -m comment --comment \"web\" -m mark --mark 0x0 -j LOOKUP --table waf --through",
        ])
        expectError("ROUTING_CUST -p tcp -m multiport --dports 80,443 -j LOOKUP --table waf --through",
                    "t.vns3:1:24: LOOKUP --through cannot derive the return path from '-m multiport'; write the return rule yourself")
    }

    func testErrors() throws {
        expectError("-o eth0 -j MASQUERADE",
                    "t.vns3:1:1: expected where the rule goes (FORWARD, FORWARD_CUST, INPUT, INPUT_CUST, MACRO_CUST, OUTPUT, OUTPUT_CUST, POSTROUTING, POSTROUTING_CUST, PREROUTING, PREROUTING_CUST, ROUTING_CUST), got '-o'")
        expectError("PREROUTING -j REJECT", "t.vns3:1:15: target 'REJECT' is only valid in the filter table")
        expectError("POSTROUTING -j DNAT --to 10.0.0.1", "t.vns3:1:16: target 'DNAT' is not valid in POSTROUTING")
        expectError("MACRO_CUST -j ACCEPT", "t.vns3:1:15: MACRO_CUST takes COPY, LOOKUP, MASQUERADE, SNAT, DNAT or REDIRECT, not 'ACCEPT'")
        // Nothing is half-loaded: the second line's error fails the whole file.
        expectError("INPUT -j ACCEPT\nINPUT -j NOPE", "t.vns3:2:10: chain 'NOPE' does not exist (jump target)")
    }

    func testExampleFiles() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/vns3")
        let vars = try RuleLoader.variables(file: dir.appendingPathComponent("edge.vars").path, bindings: [])
        let loaded = try RuleLoader.loadWithNotes(paths: [dir.appendingPathComponent("edge.vns3").path], variables: vars)
        XCTAssertEqual(loaded.dialect, .vns3)
        XCTAssertEqual(loaded.ruleSet.ruleCount, 12)
    }
}
