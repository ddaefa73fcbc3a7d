import XCTest
import Wire
@testable import Conntrack

final class ConnTableTests: XCTestCase {
    func testSizes() {
        XCTAssertLessThanOrEqual(MemoryLayout<Connection>.stride, 128)
        XCTAssertEqual(MemoryLayout<Connection>.stride, 120)
        XCTAssertEqual(MemoryLayout<Links>.stride, 16)
        XCTAssertEqual(MemoryLayout<FlowKey>.size, 16)
    }

    /// SipHash-2-4 reference vector (Aumasson & Bernstein): key 00..0f, message 00..0f.
    func testSipHashReferenceVector() {
        let k = SipKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)
        XCTAssertEqual(k.hash(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908, c: 2, d: 4), 0x3f2a_cc7f_57c2_9bdb)
    }

    func testInsertFindBothTuples() throws {
        var t = makeTable()
        let i = try XCTUnwrap(t.insert(original: c2s, reply: s2c, now: T0))
        XCTAssertEqual(t.find(c2s, now: T0)?.index, i)
        XCTAssertEqual(t.find(c2s, now: T0)?.reply, false)
        XCTAssertEqual(t.find(s2c, now: T0)?.index, i)
        XCTAssertEqual(t.find(s2c, now: T0)?.reply, true)
        XCTAssertNil(t.find(key(client, 40001, server, 80), now: T0))
        XCTAssertEqual(t.count, 1)
        XCTAssertEqual(t.inserted, 1)
        XCTAssertEqual(t[i].deadline, T0 + 120 * S)   // TCP before its first packet: syn_sent
        // Either tuple already held: refused.
        XCTAssertNil(t.insert(original: s2c, reply: c2s, now: T0))
        XCTAssertEqual(t.insertClash, 1)
        XCTAssertEqual(t.count, 1)
    }

    func testNATReplyTupleRekey() throws {
        var t = makeTable()
        let outside = ip(203, 0, 113, 9), public_ = ip(203, 0, 113, 1), inside = ip(192, 168, 1, 5)
        // DNAT: outside -> public:8080 goes to inside:22; replies come from inside:22.
        let orig = key(outside, 50000, public_, 8080)
        let i = try XCTUnwrap(t.insert(original: orig, reply: orig.reversed, now: T0))
        let natted = key(inside, 22, outside, 50000)
        XCTAssertTrue(t.setReplyTuple(i, natted, now: T0))
        XCTAssertNil(t.find(orig.reversed, now: T0))
        XCTAssertEqual(t.find(natted, now: T0)?.index, i)
        XCTAssertEqual(t.find(natted, now: T0)?.reply, true)
        XCTAssertEqual(t.find(orig, now: T0)?.reply, false)
        XCTAssertTrue(t[i].status.contains(.dstNAT))
        XCTAssertFalse(t[i].status.contains(.srcNAT))
        XCTAssertTrue(t.isTaken(natted, now: T0))
        // A tuple another connection holds cannot be taken.
        let other = key(outside, 50001, public_, 8080)
        let j = try XCTUnwrap(t.insert(original: other, reply: other.reversed, now: T0))
        XCTAssertFalse(t.setReplyTuple(j, natted, now: T0))
        XCTAssertEqual(t.find(other.reversed, now: T0)?.index, j)
    }

    func testRemoveAndSlotReuseKeepInsertionOrder() throws {
        var t = makeTable()
        let a = try XCTUnwrap(t.insert(original: key(client, 1, server, 80), reply: key(server, 80, client, 1), now: T0))
        let b = try XCTUnwrap(t.insert(original: key(client, 2, server, 80), reply: key(server, 80, client, 2), now: T0))
        let c = try XCTUnwrap(t.insert(original: key(client, 3, server, 80), reply: key(server, 80, client, 3), now: T0))
        t.remove(b)
        XCTAssertNil(t.find(key(client, 2, server, 80), now: T0))
        XCTAssertNil(t.find(key(server, 80, client, 2), now: T0))
        XCTAssertEqual(t.count, 2)
        let d = try XCTUnwrap(t.insert(original: key(client, 4, server, 80), reply: key(server, 80, client, 4), now: T0))
        XCTAssertEqual(d, b, "freed slot reused")
        XCTAssertEqual(t.liveIndices(now: T0), [a, c, d])
        XCTAssertEqual(t.find(key(client, 3, server, 80), now: T0)?.index, c)
        t.remove(b)   // removing twice is harmless
        t.remove(b)
        XCTAssertEqual(t.count, 2)
    }

    func testLazyExpiryOnFind() throws {
        var t = makeTable()
        let k = key(client, 5353, server, 53, 17)
        let i = try XCTUnwrap(t.insert(original: k, reply: k.reversed, now: T0))
        XCTAssertEqual(t[i].deadline, T0 + 30 * S)
        XCTAssertNotNil(t.find(k, now: T0 + 30 * S - 1))
        XCTAssertNil(t.find(k.reversed, now: T0 + 30 * S))
        XCTAssertEqual(t.expired, 1)
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(t.expire(now: T0 + 100 * S, budget: 10), 0, "already retired")
    }

    func testExpiryWithBudget() throws {
        var t = makeTable()
        for p in 0..<100 {
            let k = key(client, UInt16(1000 + p), server, 53, 17)
            _ = try XCTUnwrap(t.insert(original: k, reply: k.reversed, now: T0))
        }
        // One long-lived connection, refreshed at +20 s: must survive the sweep at +40 s.
        let keep = key(client, 9, server, 53, 17)
        let ki = try XCTUnwrap(t.insert(original: keep, reply: keep.reversed, now: T0))
        _ = t.update(ki, reply: false, now: T0 + 20 * S)
        XCTAssertEqual(t.expire(now: T0 + 10 * S, budget: 50), 0)
        XCTAssertEqual(t.count, 101)
        let now = T0 + 40 * S
        XCTAssertEqual(t.expire(now: now, budget: 30), 30)
        XCTAssertEqual(t.count, 71)
        XCTAssertEqual(t.expire(now: now, budget: 30), 30)
        XCTAssertEqual(t.expire(now: now, budget: 1000), 40)
        XCTAssertEqual(t.expire(now: now, budget: 1000), 0)
        XCTAssertEqual(t.count, 1)
        XCTAssertEqual(t.expired, 100)
        XCTAssertNotNil(t.find(keep, now: now))
        XCTAssertEqual(t.expire(now: T0 + 52 * S, budget: 10), 1)
        XCTAssertEqual(t.count, 0)
        // A jump of days sweeps the whole wheel once, within one call's bound.
        let k = key(client, 7, server, 53, 17)
        _ = try XCTUnwrap(t.insert(original: k, reply: k.reversed, now: T0 + 60 * S))
        XCTAssertEqual(t.expire(now: T0 + 86_400 * 3 * S, budget: 10), 1)
    }

    func testShortenedDeadlineIsRetiredOnTime() throws {
        var t = makeTable()
        let k = key(client, 7, server, 99, 47)    // GRE: generic, 600 s
        let i = try XCTUnwrap(t.insert(original: k, reply: k.reversed, now: T0))
        _ = t.update(i, reply: false, now: T0)
        XCTAssertEqual(t[i].deadline, T0 + 600 * S)
        t.setTimeout(i, deadline: T0 + 5 * S)
        XCTAssertEqual(t.expire(now: T0 + 8 * S, budget: 10), 1)
    }

    func testEarlyDropEvictsNonAssuredAndRefusesWhenAllAssured() throws {
        var t = makeTable(capacity: 8)
        var idx: [Int32] = []
        for p in 0..<8 {
            let k = key(client, UInt16(2000 + p), server, 53, 17)
            idx.append(try XCTUnwrap(t.insert(original: k, reply: k.reversed, now: T0)))
        }
        XCTAssertEqual(t.count, 8)
        let k9 = key(client, 3000, server, 53, 17)
        XCTAssertNotNil(t.insert(original: k9, reply: k9.reversed, now: T0))
        XCTAssertEqual(t.evicted, 1)
        XCTAssertEqual(t.count, 8)
        // Make every live connection ASSURED: nothing may go, the insert is refused.
        for i in t.liveIndices(now: T0) {
            var c = t[i]; c.status.insert(.assured); t[i] = c
        }
        let k10 = key(client, 3001, server, 53, 17)
        XCTAssertNil(t.insert(original: k10, reply: k10.reversed, now: T0))
        XCTAssertEqual(t.insertFailed, 1)
        XCTAssertEqual(t.count, 8)
        XCTAssertEqual(t.evicted, 1)
        // Expired entries near the key are reclaimed before anything is refused.
        XCTAssertNotNil(t.insert(original: k10, reply: k10.reversed, now: T0 + 31 * S))
        XCTAssertEqual(t.count, 8)
        XCTAssertGreaterThan(t.expired, 0)
    }

    /// With a fixed secret, 100k connections whose tuples differ in a few low bits (one client,
    /// sequential ports, a handful of servers) still spread: the longest chain stays short.
    func testHashSpreadsAdversarialTuples() throws {
        var t = makeTable(capacity: 131_072)      // 262,144 buckets for 200k keys
        for n in 0..<100_000 {
            let k = key(ip(10, 0, 0, 1), UInt16(truncatingIfNeeded: n), ip(10, 0, 1, UInt8(n >> 16)), 443)
            XCTAssertNotNil(t.insert(original: k, reply: k.reversed, now: T0))
        }
        XCTAssertEqual(t.count, 100_000)
        let s = t.chainStats()
        XCTAssertLessThanOrEqual(s.maxChain, 12, "max chain \(s.maxChain)")
        // Poisson(0.76): about 53% of buckets non-empty.
        XCTAssertGreaterThan(Double(s.usedBuckets) / Double(s.buckets), 0.45)
        XCTAssertEqual(t.find(key(ip(10, 0, 0, 1), 777, ip(10, 0, 1, 0), 443), now: T0)?.reply, false)
    }

    func testRandomSecretsDiffer() {
        let a = ConnTable(capacity: 16), b = ConnTable(capacity: 16)
        XCTAssertNotEqual(a.key.hash(1, 2), b.key.hash(1, 2))
    }
}
