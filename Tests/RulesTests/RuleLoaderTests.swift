import Diagnostics
import Foundation
import XCTest
@testable import Rules

final class RuleLoaderTests: XCTestCase {
    func testDetect() {
        XCTAssertEqual(RuleLoader.detect("# x\n\n*filter\nCOMMIT\n").dialect, .restore)
        XCTAssertEqual(RuleLoader.detect("#!/bin/sh\nset -e\niptables -A INPUT -j ACCEPT\n").dialect, .cmds)
        XCTAssertEqual(RuleLoader.detect("/sbin/iptables -F\n").dialect, .cmds)
        XCTAssertEqual(RuleLoader.detect("ip6tables -F\niptables -F\n").dialect, .cmds)
        XCTAssertEqual(RuleLoader.detect("  # c\nPREROUTING_CUST -j ACCEPT\n").dialect, .vns3)
        XCTAssertEqual(RuleLoader.detect("MACRO_CUST -o eth0 -j MASQUERADE\n").dialect, .vns3)
        XCTAssertEqual(RuleLoader.detect("").dialect, .restore)
        let d = RuleLoader.detect("# c\necho hi\n")
        XCTAssertNil(d.dialect)
        XCTAssertEqual(d.line, 2)
        XCTAssertEqual(d.word, "echo")
    }

    func testLoadPicksDialectAndVariables() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-loader-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = dir.appendingPathComponent("r.vns3").path
        try "PREROUTING -i eth0 -p tcp --dport 45 -j DNAT --to ${plugin_instance_1_ip}:22\n".write(toFile: v, atomically: true, encoding: .utf8)
        let vars = dir.appendingPathComponent("v.vars").path
        try "plugin_instance_1_ip=198.51.100.9\n".write(toFile: vars, atomically: true, encoding: .utf8)
        let bound = try RuleLoader.variables(file: vars, bindings: ["plugin_instance_1_ip=198.51.100.2"])
        XCTAssertEqual(bound, ["plugin_instance_1_ip": "198.51.100.2"])  // --var wins over --vars
        let set = try RuleLoader.load(path: v, variables: bound)
        XCTAssertEqual(set.table(.nat)?.chains[0].rules.count, 1)
        XCTAssertThrowsError(try RuleLoader.load(path: v)) { e in
            XCTAssertEqual((e as? Diagnostic)?.description,
                           "\(v):1:51: unbound variable '${plugin_instance_1_ip}' (bind it with --var plugin_instance_1_ip=VALUE or in a --vars file)")
        }
        // Forcing a dialect: the same text as restore is refused at its first line.
        XCTAssertThrowsError(try RuleLoader.load(path: v, dialect: .restore))
        let odd = dir.appendingPathComponent("odd").path
        try "echo hi\n".write(toFile: odd, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RuleLoader.load(path: odd)) { e in
            XCTAssertEqual((e as? Diagnostic)?.description,
                           "\(odd):1:1: cannot tell the rule dialect from 'echo' (expected '*table', an iptables command or a VNS3 chain name such as PREROUTING); give --dialect restore|cmds|vns3")
        }
        XCTAssertThrowsError(try RuleLoader.variables(file: nil, bindings: ["nope"])) { e in
            XCTAssertEqual((e as? Diagnostic)?.description, "--var:0:0: expected NAME=VALUE, got 'nope'")
        }
    }
}
