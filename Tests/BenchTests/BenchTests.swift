import Bench
import CMallocCounter
import Foundation
import XCTest

/// `sluice bench`: the command's JSON on the repo's captures, and the pieces it is built from.
/// No timing assertions: the figures depend on the machine; what is checked is that the run
/// happened, counted what it says, and reported it in the documented form.
final class BenchTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func repo(_ p: String) -> String { Self.repoRoot.appendingPathComponent(p).path }

    func sluice() throws -> String {
        let candidates = [".build/debug/sluice", ".build/x86_64-unknown-linux-gnu/debug/sluice"].map(repo)
        guard let exe = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("sluice not built (swift build --build-tests builds it)")
        }
        return exe
    }

    /// Runs `sluice bench ... --json`; returns the parsed object and the exit status.
    func bench(_ args: [String]) throws -> (json: [String: Any]?, status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try sluice())
        p.arguments = ["bench"] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        return (obj, p.terminationStatus, String(decoding: errData, as: UTF8.self))
    }

    func testEdgeJSONHasTheContractFields() throws {
        let r = try bench(["--rules", repo("examples/edge/edge.rules"), "--network", repo("examples/edge/network"),
                           "--capture", "eth0=" + repo("captures/edge-eth0.pcap"), "--capture", "eth1=" + repo("captures/edge-eth1.pcap"),
                           "--min-seconds", "0.1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try XCTUnwrap(r.json, "stdout is not one JSON object")
        // DESIGN.md's list.
        for key in ["packets", "seconds", "mpps", "ns_per_packet", "mallocs_per_packet", "connections", "rules", "classifier"] {
            XCTAssertNotNil(j[key], "missing \(key)")
        }
        let packets = try XCTUnwrap(j["packets"] as? Int)
        XCTAssertGreaterThan(packets, 0)
        XCTAssertTrue(j["mallocs_per_packet"] is NSNumber, "mallocs_per_packet is not a number: \(String(describing: j["mallocs_per_packet"]))")
        XCTAssertGreaterThan(try XCTUnwrap(j["seconds"] as? Double), 0.1 - 1e-9)
        XCTAssertEqual(j["rules"] as? Int, 14)
        XCTAssertEqual(j["classifier"] as? String, "compiled")  // the default
        XCTAssertEqual(j["stage"] as? String, "full")
        // Every timed packet got exactly one verdict, and the passes cover the capture whole.
        let verdicts = try XCTUnwrap(j["verdicts"] as? [String: Int])
        XCTAssertEqual(verdicts.values.reduce(0, +), packets)
        let perPass = try XCTUnwrap(j["capture_packets"] as? Int)
        XCTAssertEqual(perPass, 42)  // 27 frames on eth0 + 15 on eth1 (captures/README.md)
        XCTAssertEqual(packets % perPass, 0)
        XCTAssertEqual(packets / perPass, j["passes"] as? Int)
        // The demo's rule set needs conntrack: its connections are counted.
        XCTAssertGreaterThan(try XCTUnwrap(j["connections"] as? Int), 0)
        XCTAssertGreaterThan(try XCTUnwrap(j["peak_rss_bytes"] as? Int), 0)
    }

    /// The verdicts of a pass are those of a replay: the demo's per-pass counts, per verdict.
    func testEdgeVerdictsPerPassMatchTheDemo() throws {
        let r = try bench(["--rules", repo("examples/edge/edge.rules"), "--network", repo("examples/edge/network"),
                           "--capture", "eth0=" + repo("captures/edge-eth0.pcap"), "--capture", "eth1=" + repo("captures/edge-eth1.pcap"),
                           "--min-seconds", "0", "--warmup", "0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try XCTUnwrap(r.json)
        XCTAssertEqual(j["passes"] as? Int, 1)
        let v = try XCTUnwrap(j["verdicts"] as? [String: Int])
        // The first pass is a plain replay of the demo (`make demo` prints the same counts).
        XCTAssertEqual(v["forwarded"], 28)
        XCTAssertEqual(v["local"], 1)
        XCTAssertEqual(v["dropped"], 11)
        XCTAssertEqual(v["passed"], 2)
    }

    func testStagesAndClassifiers() throws {
        for (stage, classifier) in [("parse", "linear"), ("classify", "compiled"), ("full", "compiled")] {
            let r = try bench(["--rules", repo("examples/bench/accept-all.rules"), "--network", repo("examples/bench/network"),
                               "--capture", repo("captures/edge-eth0.pcap"), "--stage", stage, "--classifier", classifier,
                               "--min-seconds", "0.1", "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let j = try XCTUnwrap(r.json, stage)
            XCTAssertEqual(j["stage"] as? String, stage)
            XCTAssertEqual(j["classifier"] as? String, classifier)
            XCTAssertGreaterThan(try XCTUnwrap(j["packets"] as? Int), 0, stage)
            XCTAssertTrue(j["mallocs_per_packet"] is NSNumber, stage)
            // accept-all needs no conntrack.
            XCTAssertTrue(j["connections"] is NSNull, stage)
            let inputs = try XCTUnwrap(j["inputs"] as? [[String: String]])
            // A plain --capture FILE arrives on the network model's first interface.
            XCTAssertEqual(inputs.first?["in"], "eth0", stage)
        }
    }

    func testBadArgumentsFail() throws {
        let r = try bench(["--rules", repo("examples/bench/accept-all.rules"), "--json"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--capture"), r.stderr)
        let missing = try bench(["--rules", repo("examples/bench/accept-all.rules"), "--capture", "/nonexistent.pcap", "--json"])
        XCTAssertNotEqual(missing.status, 0)
    }

    /// The bulk capture from the shared corpus, when it is there.
    func testSharedBulkCapture() throws {
        let emix = repo("../shared/captures/bulk/emix.pcap")
        guard FileManager.default.fileExists(atPath: emix) else {
            print("SKIPPED BenchTests.testSharedBulkCapture: \(emix) not found (shared corpus missing)")
            return
        }
        let r = try bench(["--rules", repo("examples/bench/stateful.rules"), "--network", repo("examples/bench/network"),
                           "--capture", emix, "--min-seconds", "0.1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try XCTUnwrap(r.json)
        XCTAssertEqual(j["capture_packets"] as? Int, 7133)  // ../shared/captures/MANIFEST.md
        XCTAssertGreaterThan(try XCTUnwrap(j["connections"] as? Int), 0)
    }

    // MARK: - Pieces

    /// In the test process (which links CMallocCounter), allocations are seen and counted.
    func testMallocCounterCountsSwiftAllocations() {
        guard sluice_malloc_counter_compiled() == 1 else {
            // Only `make sanitize` builds without it (the sanitizer owns malloc there).
            print("!!!! SKIPPED \(name): the malloc counter is compiled out (sanitizer build)")
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("must run on CI") }
            return
        }
        XCTAssertTrue(Bencher.mallocCountingWorks())
        sluice_malloc_counting(1)
        let before = sluice_malloc_count()
        var arrays: [[Int]] = []
        for k in 0 ..< 10 { arrays.append([Int](repeating: k, count: 100 + k)) }
        let after = sluice_malloc_count()
        sluice_malloc_counting(0)
        XCTAssertGreaterThanOrEqual(after - before, 10)
        XCTAssertEqual(arrays.count, 10)
        // Off: nothing counted.
        let off0 = sluice_malloc_count()
        let more = [Int](repeating: 1, count: 1000)
        XCTAssertEqual(sluice_malloc_count(), off0)
        XCTAssertEqual(more.count, 1000)
    }

    func testProcStatus() {
        let s = ProcStatus.read()
        XCTAssertNotNil(s.hwm)
        XCTAssertNotNil(s.rss)
        XCTAssertGreaterThanOrEqual(s.hwm ?? 0, s.rss ?? 1)
    }
}
