import Diagnostics
import Wire
import XCTest
@testable import Rules

final class RestoreParserTests: XCTestCase {
    func parse(_ s: String) throws -> RuleSet { try RestoreParser.parse(s, file: "t.rules") }

    func expectError(_ s: String, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try RestoreParser.parse(s, file: "t.rules")
            XCTFail("expected error \(message)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.description, message, file: file, line: line)
        }
    }

    func testBasicFilterTable() throws {
        let set = try parse("""
        # comment
        *filter
        :INPUT DROP [12:3456]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :web - [0:0]
        [3:180] -A INPUT -i lo -j ACCEPT
        -A INPUT -s 10.0.0.0/8 ! -d 10.1.2.3 -p tcp -m tcp --sport 1024:65535 --dport 22 -j ACCEPT
        -A INPUT -p udp --dport domain -j ACCEPT
        -A FORWARD -i eth+ -o ! eth1 -j web
        -A FORWARD -g web
        -A FORWARD -p icmp
        -A web -p tcp ! --dport 80 -j RETURN
        -A web -j DROP
        COMMIT
        """)
        let t = try XCTUnwrap(set.table(.filter))
        XCTAssertEqual(t.chains.map(\.name), ["INPUT", "FORWARD", "OUTPUT", "web"])
        XCTAssertEqual(t.chains[0].policy, .drop)
        XCTAssertEqual(t.chains[0].counters, Counters(packets: 12, bytes: 3456))
        XCTAssertEqual(t.chains[0].rules[0].counters, Counters(packets: 3, bytes: 180))
        let r1 = t.chains[0].rules[1].match
        XCTAssertEqual(r1.source, Inverted(IPv4Prefix("10.0.0.0/8")!))
        XCTAssertEqual(r1.destination, Inverted(IPv4Prefix("10.1.2.3/32")!, invert: true))
        XCTAssertEqual(r1.proto, Inverted(IPProtocol.tcp))
        XCTAssertEqual(r1.sourcePort, Inverted(PortRange(1024, 65535)))
        XCTAssertEqual(r1.destinationPort, Inverted(PortRange(22, 22)))
        XCTAssertEqual(t.chains[0].rules[2].match.destinationPort, Inverted(PortRange(53, 53)))
        XCTAssertEqual(t.chains[1].rules[0].match.inInterface, Inverted(InterfaceSpec("eth+")))
        XCTAssertEqual(t.chains[1].rules[0].match.outInterface, Inverted(InterfaceSpec("eth1"), invert: true))
        XCTAssertEqual(t.chains[1].rules[0].target, .jump(3))
        XCTAssertEqual(t.chains[1].rules[1].target, .goto(3))
        XCTAssertEqual(t.chains[1].rules[2].target, RuleTarget.none)
        XCTAssertEqual(t.chains[3].rules[0].match.destinationPort, Inverted(PortRange(80, 80), invert: true))
        XCTAssertEqual(t.chains[3].rules[0].target, .return)
    }

    func testRenderRoundTrip() throws {
        let text = """
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD DROP [0:0]
        :OUTPUT ACCEPT [0:0]
        :u - [0:0]
        -A INPUT -s 10.0.0.0/8 -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT
        -A FORWARD ! -s 192.168.0.0/16 -o eth1 -p udp -m udp ! --sport 53 -j u
        -A FORWARD -m comment --comment "say \\"hi\\"" -j DROP
        -A FORWARD
        -A u -j RETURN
        COMMIT

        """
        let set = try parse(text)
        let out = RuleSetRenderer.render(set, counters: false)
        XCTAssertEqual(out, text)
    }

    func testCRLFAndQuotesAndInsert() throws {
        let set = try parse("*filter\r\n:INPUT ACCEPT [0:0]\r\n-A INPUT -j DROP\r\n-I INPUT -m comment --comment 'first one' -j ACCEPT\r\n-I INPUT 2 -p tcp -j ACCEPT\r\nCOMMIT\r\n")
        let rules = set.table(.filter)!.chains[0].rules
        XCTAssertEqual(rules.map(\.target), [.accept, .accept, .drop])
        XCTAssertEqual(rules[0].match.comment, "first one")
    }

    func testOldStyleNegation() throws {
        let set = try parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s ! 10.0.0.1 -j DROP\nCOMMIT\n")
        XCTAssertEqual(set.table(.filter)!.chains[0].rules[0].match.source, Inverted(IPv4Prefix("10.0.0.1")!, invert: true))
    }

    func testErrorsNameFileLineColumn() {
        let head = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        expectError(head + "-A INPUT -m state --state NEW -j ACCEPT\nCOMMIT\n", "t.rules:5:13: unsupported match 'state'")
        expectError(head + "-A INPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n", "t.rules:5:20: unsupported target 'REJECT'")
        expectError(head + "-A INPUT -s 10.0.0.300 -j DROP\nCOMMIT\n", "t.rules:5:13: bad address '10.0.0.300' (expected a.b.c.d[/len])")
        expectError(head + "-A INPUT --dport 22 -j DROP\nCOMMIT\n", "t.rules:5:10: unknown option '--dport' (port matches need '-p tcp' or '-p udp')")
        expectError(head + "-A INPUT -j nowhere\nCOMMIT\n", "t.rules:5:13: chain 'nowhere' does not exist (jump target)")
        expectError(head + "-A NOPE -j DROP\nCOMMIT\n", "t.rules:5:4: chain 'NOPE' does not exist in table 'filter'")
        expectError(head + "-A OUTPUT -i eth0 -j DROP\nCOMMIT\n", "t.rules:5:11: can't use -i with OUTPUT")
        expectError(head + "-A INPUT -o eth0 -j DROP\nCOMMIT\n", "t.rules:5:10: can't use -o with INPUT")
        expectError(head + "-A INPUT --something-else 1 -j DROP\nCOMMIT\n", "t.rules:5:10: unsupported option '--something-else'")
        expectError(head + "-A INPUT -p tcp --dport 99999 -j DROP\nCOMMIT\n", "t.rules:5:25: bad port or range '99999'")
        expectError(head + "-A INPUT -m comment --comment \"open -j DROP\nCOMMIT\n", "t.rules:5:31: unterminated quote")
        expectError(head + "-A INPUT -j DROP\n", "t.rules:1:1: table 'filter' has no COMMIT")
        expectError("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", "t.rules:1:2: unsupported table 'nat' (this version implements the filter table)")
        expectError("*filter\n:a - [0:0]\n:b - [0:0]\n-A a -j b\n-A b -j a\nCOMMIT\n", "t.rules:5:1: jump creates a loop through chain 'a'")
        expectError(head + "-A INPUT -j ACCEPT !\nCOMMIT\n", "t.rules:5:20: '!' at the end of the rule negates nothing")
        expectError("-A INPUT -j DROP\n", "t.rules:1:1: expected '*table' before this line")
    }

    /// Every rule set in ../shared/rulesets either parses or is refused with a file:line:column
    /// message; no crash. Which files this version accepts is asserted, so a change shows here.
    func testSharedRulesetsParseOrRefuseCleanly() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/rulesets").standardized
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else {
            print("SKIPPED: ../shared/rulesets not found; shared rule-set checks did not run")
            return
        }
        var accepted: [String] = []
        for n in names.sorted() where n.hasSuffix(".rules") {
            do {
                _ = try RestoreParser.load(path: dir.appendingPathComponent(n).path)
                accepted.append(n)
            } catch {
                XCTAssertTrue(error.description.hasPrefix(dir.appendingPathComponent(n).path + ":"), error.description)
                let parts = error.description.dropFirst(dir.appendingPathComponent(n).path.count + 1).split(separator: ":")
                XCTAssertNotNil(Int(parts[0]), error.description)
                XCTAssertNotNil(Int(parts[1]), error.description)
            }
        }
        // Filter-only rule sets that use only what this version implements.
        XCTAssertEqual(accepted, ["ufw-user.ip6.rules"])  // chain declarations only: nothing IPv6-specific to refuse
        XCTAssertFalse(accepted.contains("parser-torture-iptables-semantics.rules"))
    }
}

