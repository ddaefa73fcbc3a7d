import Diagnostics
import Foundation
import Wire
import XCTest
@testable import Rules

final class CommandScriptParserTests: XCTestCase {
    func parse(_ s: String) throws -> CommandScriptResult { try CommandScriptParser.parse(s, file: "t.sh") }

    /// The `-A` lines of the rendered rule set, as `table:-A CHAIN ...`.
    func rules(_ set: RuleSet) -> [String] {
        var out: [String] = []
        var table = ""
        for l in RuleSetRenderer.render(set, counters: false).split(separator: "\n") {
            if l.hasPrefix("*") { table = String(l.dropFirst()) }
            if l.hasPrefix("-A ") { out.append("\(table):\(l)") }
        }
        return out
    }
    func rules(_ s: String) throws -> [String] { rules(try parse(s).ruleSet) }

    func expectError(_ s: String, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try parse(s)
            XCTFail("expected error \(message)", file: file, line: line)
        } catch {
            XCTAssertEqual((error as? Diagnostic)?.description, message, file: file, line: line)
        }
    }

    func testEachCommandForm() throws {
        let set = try parse("""
        #!/bin/sh
        set -e
        # a comment, then a blank line

        iptables -N web
        iptables --new-chain tmp
        iptables -A INPUT -i lo -j ACCEPT
        iptables --append INPUT -p tcp --dport 22 -j web
        iptables -I INPUT -s 10.0.0.0/8 -j DROP
        iptables --insert INPUT 2 -p icmp -j ACCEPT
        iptables -R INPUT 3 -i lo -j DROP
        iptables -A web -j ACCEPT
        iptables -A web -j DROP
        iptables -D web 2
        iptables --delete INPUT -s 10.0.0.0/8 -j DROP
        iptables -P FORWARD DROP
        iptables --policy OUTPUT ACCEPT
        iptables -F tmp
        iptables -X tmp
        iptables -Z
        iptables -L INPUT -n -v
        iptables -S
        iptables -C INPUT -i lo -j ACCEPT
        """).ruleSet
        let t = try XCTUnwrap(set.table(.filter))
        XCTAssertEqual(t.chains.map(\.name), ["INPUT", "FORWARD", "OUTPUT", "web"])
        XCTAssertEqual(t.chains[1].policy, .drop)
        XCTAssertEqual(rules(set), [
            "filter:-A INPUT -p icmp -j ACCEPT",
            "filter:-A INPUT -i lo -j DROP",
            "filter:-A INPUT -p tcp -m tcp --dport 22 -j web",
            "filter:-A web -j ACCEPT",
        ])
        XCTAssertEqual(t.chains[0].rules[0].origin, SourceLine(file: "t.sh", line: 10))
    }

    func testProgramNamesAndGlobalOptions() throws {
        XCTAssertEqual(try rules("""
        /sbin/iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
        iptables-legacy -A POSTROUTING -t nat -s 10.0.0.0/8 -j MASQUERADE
        iptables-nft -w -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2 --table nat
        /usr/sbin/iptables -w 5 -W 100000 --table=mangle -A PREROUTING -j MARK --set-mark 1
        iptables -s 192.0.2.1 -A INPUT -j DROP
        """), [
            "mangle:-A PREROUTING -j MARK --set-xmark 0x1/0xffffffff",
            "nat:-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2",
            "nat:-A POSTROUTING -o eth0 -j MASQUERADE",
            "nat:-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE",
            "filter:-A INPUT -s 192.0.2.1/32 -j DROP",
        ])
        expectError("iptables -t nope -A INPUT -j ACCEPT", "t.sh:1:13: unknown table 'nope'")
        expectError("iptables -t nat -A POSTROUTING -t mangle -j ACCEPT", "t.sh:1:32: the table is given twice")
        expectError("iptables -t nat", "t.sh:1:1: no command in this iptables line (expected -A, -I, -D, -R, -N, -X, -F, -P, -Z, -L or -S)")
        expectError("iptables -A INPUT -F INPUT", "t.sh:1:19: only one command per line ('-A' and '-F')")
    }

    func testContinuationLinesAndQuotedBang() throws {
        let text = "iptables \\\n-w \\\n--table nat \\\n--insert POSTROUTING \\\n--source 192.168.122.0/24 '!' \\\n--destination 192.168.122.0/24 \\\n--jump MASQUERADE\r\niptables -A INPUT -m comment --comment 'a -t b' -j ACCEPT\n"
        let set = try parse(text).ruleSet
        XCTAssertEqual(rules(set), [
            "nat:-A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE",
            "filter:-A INPUT -m comment --comment \"a -t b\" -j ACCEPT",
        ])
        XCTAssertEqual(set.table(.nat)?.chains[3].rules[0].origin.line, 1)
        XCTAssertEqual(set.table(.filter)?.chains[0].rules[0].origin.line, 8)
        // An error on a continued line points at the physical line and column of its token.
        expectError("iptables \\\n  -A INPUT \\\n  -p tcp --dport 99999 \\\n  -j ACCEPT", "t.sh:3:18: bad port or range '99999'")
    }

    func testIp6tablesSkippedWithNote() throws {
        let r = try parse("""
        ip6tables -A INPUT -p ipv6-icmp -j ACCEPT
        iptables -A INPUT -j ACCEPT
        /sbin/ip6tables \\
          -P INPUT DROP
        """)
        XCTAssertEqual(r.notes, ["t.sh:1: note: skipped an ip6tables command (Sluice handles IPv4)",
                                 "t.sh:3: note: skipped an ip6tables command (Sluice handles IPv4)"])
        XCTAssertEqual(r.ruleSet.ruleCount, 1)
    }

    func testOtherShellCommandsRefused() {
        expectError("set -e\necho hello\niptables -A INPUT -j ACCEPT",
                    "t.sh:2:1: 'echo' is not an iptables command (a command script holds iptables commands, 'set' and comments; ip6tables lines are skipped)")
        expectError("WAN=eth0", "t.sh:1:1: 'WAN=eth0' is not an iptables command (a command script holds iptables commands, 'set' and comments; ip6tables lines are skipped)")
        expectError("iptables -A INPUT -i $WAN -j ACCEPT",
                    "t.sh:1:22: shell variable in '$WAN' is not expanded (a command script must be literal; for ${variables} use the vns3 dialect)")
    }

    func testJumpToMissingChainRefusedAtItsLine() {
        // In a restore file this would be fine (chains are resolved at COMMIT); the kernel
        // applies each command at once.
        expectError("iptables -A INPUT -j later\niptables -N later",
                    "t.sh:1:22: chain 'later' does not exist in table 'filter' (jump target; the kernel applies each command at once, so '-N later' must come first)")
        expectError("iptables -N x\niptables -t nat -A POSTROUTING -j x",
                    "t.sh:2:35: chain 'x' does not exist in table 'nat' (jump target; the kernel applies each command at once, so '-N x' must come first)")
        expectError("iptables -A nochain -j ACCEPT", "t.sh:1:13: chain 'nochain' does not exist in table 'filter'")
        expectError("iptables -L nochain", "t.sh:1:13: chain 'nochain' does not exist in table 'filter'")
        expectError("iptables -N a\niptables -A a -j ACCEPT\niptables -X a", "t.sh:3:13: chain 'a' is not empty")
        expectError("iptables -D INPUT -j ACCEPT", "t.sh:1:13: bad rule (does a matching rule exist in that chain?)")
    }

    func testSeveralFilesInOrder() throws {
        let r = try CommandScriptParser.parse(files: [(text: "iptables -N base\niptables -A INPUT -j base", file: "a.sh"),
                                                      (text: "iptables -A base -s 10.0.0.0/8 -j DROP", file: "b.sh")])
        XCTAssertEqual(rules(r.ruleSet), ["filter:-A INPUT -j base", "filter:-A base -s 10.0.0.0/8 -j DROP"])
        XCTAssertEqual(r.ruleSet.table(.filter)?.chains[3].rules[0].origin, SourceLine(file: "b.sh", line: 1))
        XCTAssertThrowsError(try CommandScriptParser.parse(files: [(text: "iptables -N base", file: "a.sh"),
                                                                   (text: "iptables -A INPUT -j other", file: "b.sh")])) { e in
            XCTAssertEqual((e as? Diagnostic)?.description,
                           "b.sh:1:22: chain 'other' does not exist in table 'filter' (jump target; the kernel applies each command at once, so '-N other' must come first)")
        }
        // An error found when the whole set is built names the file and line of its rule.
        XCTAssertThrowsError(try CommandScriptParser.parse(files: [(text: "iptables -N a\niptables -N b\niptables -A a -j b", file: "a.sh"),
                                                                   (text: "iptables \\\n -A b \\\n -j a", file: "b.sh")])) { e in
            XCTAssertEqual((e as? Diagnostic)?.description, "b.sh:1:1: jump creates a loop (chain 'a' reaches itself)")
        }
    }

    /// The libvirt command lines from ../shared (verbatim upstream test data): the base file
    /// creates the LIBVIRT_* chains the second one fills.
    func testLibvirtFilesInOrder() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/rulesets")
        let base = dir.appendingPathComponent("libvirt-base.iptables-cmds").path
        let many = dir.appendingPathComponent("libvirt-nat-many-ips.iptables-cmds").path
        guard FileManager.default.fileExists(atPath: base), FileManager.default.fileExists(atPath: many) else {
            print("SKIPPED: \(dir.path) is missing; the libvirt command-line corpus was not read")
            return
        }
        let r = try CommandScriptParser.load(paths: [base, many])
        XCTAssertEqual(r.notes.count, 17)  // the ip6tables half of the base file
        XCTAssertTrue(r.notes.allSatisfy { $0.hasPrefix(base + ":") })
        let filter = try XCTUnwrap(r.ruleSet.table(.filter))
        XCTAssertEqual(filter.chains.map(\.name), ["INPUT", "FORWARD", "OUTPUT", "LIBVIRT_INP", "LIBVIRT_OUT", "LIBVIRT_FWO", "LIBVIRT_FWI", "LIBVIRT_FWX"])
        // -I prepends: FORWARD ends up FWX, FWI, FWO as libvirt intends.
        let all = rules(r.ruleSet)
        XCTAssertEqual(all.filter { $0.hasPrefix("filter:-A FORWARD") }, ["filter:-A FORWARD -j LIBVIRT_FWX", "filter:-A FORWARD -j LIBVIRT_FWI", "filter:-A FORWARD -j LIBVIRT_FWO"])
        XCTAssertEqual(all.filter { $0.hasPrefix("nat:-A LIBVIRT_PRT") }.count, 15)
        XCTAssertTrue(all.contains("nat:-A LIBVIRT_PRT -s 192.168.150.0/24 ! -d 192.168.150.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535"), all.joined(separator: "\n"))
        XCTAssertTrue(all.contains("mangle:-A LIBVIRT_PRT -o virbr0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"))
        XCTAssertTrue(all.contains("filter:-A LIBVIRT_FWI -d 192.168.122.0/24 -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"), all.joined(separator: "\n"))
        // The second file alone fails where it first uses a chain the first one creates.
        XCTAssertThrowsError(try CommandScriptParser.load(paths: [many])) { e in
            XCTAssertEqual((e as? Diagnostic)?.description, "\(many):4:10: chain 'LIBVIRT_INP' does not exist in table 'filter'")
        }
    }
}
