import XCTest
import Wire
@testable import Conntrack

final class TCPTrackingTests: XCTestCase {
    var t = makeTable()

    /// One packet through the table; asserts it hit or created connection `expect` if given.
    @discardableResult
    func send(_ k: FlowKey, _ flags: TCPFlags, seq: UInt32, ack: UInt32 = 0, len: Int = 0, win: UInt16 = 502,
              at now: Int64, file: StaticString = #filePath, line: UInt = #line) -> (index: Int32, result: TrackResult, created: Bool) {
        t.track(k, tcp: TCPSegment(flags: flags, seq: seq, ack: ack, window: win, payloadLength: len,
                                   windowScale: flags.contains(.syn) ? 7 : nil, sackPermitted: flags.contains(.syn)),
                now: now)
    }

    /// Client ISN 1000, server ISN 5000.
    func handshake() -> Int32 {
        let syn = send(c2s, .syn, seq: 1000, win: 64240, at: T0)
        XCTAssertTrue(syn.created)
        XCTAssertEqual(syn.result.state, .new)
        XCTAssertEqual(t[syn.index].tcp.state, .synSent)
        XCTAssertEqual(t[syn.index].deadline, T0 + 120 * S)
        t.confirm(syn.index)
        let sa = send(s2c, [.syn, .ack], seq: 5000, ack: 1001, win: 65160, at: T0 + S)
        XCTAssertEqual(sa.index, syn.index)
        XCTAssertEqual(sa.result, TrackResult(state: .established, reply: true))
        XCTAssertEqual(t[sa.index].tcp.state, .synRecv)
        XCTAssertEqual(t[sa.index].deadline, T0 + S + 60 * S)
        XCTAssertTrue(t[sa.index].status.contains(.seenReply))
        XCTAssertFalse(t[sa.index].status.contains(.assured))
        let a = send(c2s, .ack, seq: 1001, ack: 5001, at: T0 + 2 * S)
        XCTAssertEqual(a.result, TrackResult(state: .established, reply: false))
        XCTAssertEqual(t[a.index].tcp.state, .established)
        XCTAssertTrue(t[a.index].status.contains(.assured))
        XCTAssertEqual(t[a.index].deadline, T0 + 2 * S + 432_000 * S)
        return a.index
    }

    func testHandshakeDataAndTeardown() {
        let i = handshake()
        // Unacknowledged data: the unack timeout (300 s) until it is acknowledged.
        send(c2s, [.psh, .ack], seq: 1001, ack: 5001, len: 100, at: T0 + 3 * S)
        XCTAssertEqual(t[i].deadline, T0 + 3 * S + 300 * S)
        let r = send(s2c, .ack, seq: 5001, ack: 1101, at: T0 + 4 * S)
        XCTAssertEqual(r.result.state, .established)
        XCTAssertEqual(t[i].deadline, T0 + 4 * S + 432_000 * S)
        // FIN, ACK, FIN, ACK.
        send(c2s, [.fin, .ack], seq: 1101, ack: 5001, at: T0 + 5 * S)
        XCTAssertEqual(t[i].tcp.state, .finWait)
        send(s2c, .ack, seq: 5001, ack: 1102, at: T0 + 5 * S)
        XCTAssertEqual(t[i].tcp.state, .closeWait)
        send(s2c, [.fin, .ack], seq: 5001, ack: 1102, at: T0 + 6 * S)
        XCTAssertEqual(t[i].tcp.state, .lastAck)
        XCTAssertEqual(t[i].deadline, T0 + 6 * S + 30 * S)
        send(c2s, .ack, seq: 1102, ack: 5002, at: T0 + 6 * S)
        XCTAssertEqual(t[i].tcp.state, .timeWait)
        XCTAssertEqual(t[i].deadline, T0 + 6 * S + 120 * S)
        // A new SYN on the same tuple reopens: old connection gone, a new one starts.
        let again = send(c2s, .syn, seq: 900_000, win: 64240, at: T0 + 10 * S)
        XCTAssertTrue(again.created)
        XCTAssertEqual(again.result.state, .new)
        XCTAssertEqual(t[again.index].tcp.state, .synSent)
        XCTAssertFalse(t[again.index].status.contains(.assured))
        XCTAssertEqual(t.count, 1)
    }

    func testRSTClosesAndOutOfWindowRSTIsInvalid() {
        let i = handshake()
        let bad = send(s2c, .rst, seq: 5001 &- 200_000, at: T0 + 3 * S)
        XCTAssertEqual(bad.result.state, .invalid)
        XCTAssertEqual(bad.result.reason, .invalidRST)
        XCTAssertEqual(t[i].tcp.state, .established)
        let rst = send(s2c, .rst, seq: 5001, at: T0 + 4 * S)
        XCTAssertEqual(rst.result, TrackResult(state: .established, reply: true))
        XCTAssertEqual(t[i].tcp.state, .close)
        XCTAssertEqual(t[i].deadline, T0 + 4 * S + 10 * S)
        // The shortened deadline is honoured by the wheel.
        XCTAssertEqual(t.expire(now: T0 + 16 * S, budget: 8), 1)
        XCTAssertEqual(t.count, 0)
    }

    func testRSTAnsweringSYNDeletesConnection() {
        let syn = send(c2s, .syn, seq: 1000, at: T0)
        t.confirm(syn.index)
        let r = send(s2c, [.rst, .ack], seq: 0, ack: 1001, at: T0 + S)
        XCTAssertEqual(r.result.state, .established)
        XCTAssertTrue(r.result.removed)
        XCTAssertEqual(t.count, 0)
    }

    func testBadFlagCombinationsAreInvalid() {
        let sf = send(c2s, [.syn, .fin], seq: 1, at: T0)
        XCTAssertEqual(sf.result.state, .invalid)
        XCTAssertEqual(sf.result.reason, .badTCPFlags)
        XCTAssertEqual(sf.index, -1)
        XCTAssertEqual(t.count, 0)
        for f: TCPFlags in [[.syn, .rst], .fin, [], [.fin, .psh, .urg]] {
            XCTAssertFalse(TCPTable.validFlags(f.rawValue), "\(f)")
        }
        for f: TCPFlags in [.syn, [.syn, .ack, .ece, .cwr], [.fin, .ack, .psh], .rst, [.rst, .ack], [.ack, .urg]] {
            XCTAssertTrue(TCPTable.validFlags(f.rawValue), "\(f)")
        }
        // On a live connection too, without changing it.
        let i = handshake()
        let r = send(c2s, [.syn, .fin, .ack], seq: 1001, ack: 5001, at: T0 + 5 * S)
        XCTAssertEqual(r.result.reason, .badTCPFlags)
        XCTAssertEqual(t[i].tcp.state, .established)
        // A bad checksum (verification on) is INVALID and changes nothing.
        let before = t[i]
        let c = t.track(c2s, tcp: TCPSegment(flags: [.fin, .ack], seq: 1001, ack: 5001), now: T0 + 6 * S, checksumValid: false)
        XCTAssertEqual(c.result.reason, .badChecksum)
        XCTAssertEqual(t[i], before)
    }

    func testRetransmittedSYNAndInvalidStates() {
        let a = send(c2s, .syn, seq: 1000, at: T0)
        let b = send(c2s, .syn, seq: 1000, at: T0 + 3 * S)
        XCTAssertEqual(a.index, b.index)
        XCTAssertFalse(b.created)
        XCTAssertEqual(b.result.state, .new)
        XCTAssertEqual(t[a.index].tcp.state, .synSent)
        XCTAssertEqual(t[a.index].deadline, T0 + 3 * S + 120 * S)
        // The client may not ACK before a SYN/ACK: INVALID (SYN_SENT + ack, original).
        let ack = send(c2s, .ack, seq: 1001, ack: 5001, at: T0 + 4 * S)
        XCTAssertEqual(ack.result.state, .invalid)
        XCTAssertEqual(ack.result.reason, .tcpState)
        // SYN/ACK without a connection cannot create one.
        let stray = send(key(client, 1, server, 2), [.syn, .ack], seq: 1, ack: 1, at: T0)
        XCTAssertEqual(stray.result.reason, .cannotCreate)
        XCTAssertEqual(t.count, 1)
    }

    func testSimultaneousOpen() {
        let a = send(c2s, .syn, seq: 1000, at: T0)
        t.confirm(a.index)
        send(s2c, .syn, seq: 5000, at: T0 + S)
        XCTAssertEqual(t[a.index].tcp.state, .synSent2)
        XCTAssertEqual(t[a.index].deadline, T0 + S + 120 * S)
        send(c2s, [.syn, .ack], seq: 1000, ack: 5001, at: T0 + 2 * S)
        XCTAssertEqual(t[a.index].tcp.state, .synRecv)
        let r = send(s2c, .ack, seq: 5001, ack: 1001, at: T0 + 3 * S)
        XCTAssertEqual(r.result.state, .established)
        XCTAssertEqual(t[a.index].tcp.state, .established)
        XCTAssertTrue(t[a.index].status.contains(.assured))
    }

    func testMidStreamPickUp() {
        let a = send(c2s, [.psh, .ack], seq: 77_000, ack: 99_000, len: 10, at: T0)
        XCTAssertTrue(a.created)
        XCTAssertEqual(a.result.state, .new)
        XCTAssertEqual(t[a.index].tcp.state, .established)
        XCTAssertEqual(t[a.index].deadline, T0 + 300 * S, "no 5-day timeout before a reply")
        let b = send(s2c, .ack, seq: 99_000, ack: 77_010, at: T0 + S)
        XCTAssertEqual(b.result, TrackResult(state: .established, reply: true))
        XCTAssertFalse(t[a.index].status.contains(.assured))
        send(c2s, .ack, seq: 77_010, ack: 99_000, at: T0 + 2 * S)
        XCTAssertTrue(t[a.index].status.contains(.assured))
        XCTAssertEqual(t[a.index].deadline, T0 + 2 * S + 432_000 * S)
        // Without tcp_loose an ACK creates nothing.
        t.tcpLoose = false
        let c = send(key(client, 5, server, 6), .ack, seq: 1, ack: 1, at: T0)
        XCTAssertEqual(c.result.state, .invalid)
        XCTAssertEqual(c.result.reason, .cannotCreate)
    }

    func testSegmentFromView() throws {
        // SYN with MSS, SACK-permitted, window scale 7 (20 + 12 bytes of options... 32 bytes).
        var b: [UInt8] = [0x9c, 0x40, 0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x80, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
                          2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 1, 0]
        b[12] = 8 << 4
        let seg = try b.withUnsafeBytes { raw -> TCPSegment in
            let v = try XCTUnwrap(TCPView(raw))
            return TCPSegment(v, payloadLength: 0)
        }
        XCTAssertEqual(seg.seq, 1000)
        XCTAssertEqual(seg.windowScale, 7)
        XCTAssertTrue(seg.sackPermitted)
        XCTAssertTrue(seg.hasOptions)
        XCTAssertEqual(seg.end, 1001)
    }
}

final class UDPICMPTrackingTests: XCTestCase {
    func testUDPNewEstablishedAssured() throws {
        var t = makeTable()
        let q = key(client, 5353, server, 53, 17)
        let a = t.track(q, now: T0)
        XCTAssertTrue(a.created)
        XCTAssertEqual(a.result.state, .new)
        XCTAssertEqual(t.track(q, now: T0 + S / 10).result.state, .new, "no reply yet")
        let r = t.track(q.reversed, now: T0 + S / 2)
        XCTAssertEqual(r.result, TrackResult(state: .established, reply: true))
        XCTAssertTrue(t[a.index].status.contains(.seenReply))
        XCTAssertFalse(t[a.index].status.contains(.assured))
        XCTAssertEqual(t[a.index].deadline, T0 + S / 2 + 30 * S)
        // Within 2 s of the first packet: still not a stream (kernel stream_ts).
        XCTAssertEqual(t.track(q, now: T0 + S).result.state, .established)
        XCTAssertFalse(t[a.index].status.contains(.assured))
        XCTAssertEqual(t[a.index].deadline, T0 + S + 30 * S)
        // Still active after 2 s: ASSURED, stream timeout.
        t.track(q.reversed, now: T0 + 3 * S)
        XCTAssertTrue(t[a.index].status.contains(.assured))
        XCTAssertEqual(t[a.index].deadline, T0 + 3 * S + 120 * S)
    }

    func testUDPAssuredOnNextPacketWithoutStreamDelay() {
        var to = Timeouts.kernelDefaults
        to.udpStreamDelay = 0
        var t = makeTable(timeouts: to)
        let q = key(client, 5353, server, 53, 17)
        let a = t.track(q, now: T0)
        t.track(q.reversed, now: T0 + 1)
        XCTAssertFalse(t[a.index].status.contains(.assured))
        t.track(q, now: T0 + 2)
        XCTAssertTrue(t[a.index].status.contains(.assured))
    }

    func testICMPEchoByIdentifier() throws {
        var t = makeTable()
        let req = key(client, 77, server, 8 << 8, 1)           // echo request, id 77
        let rep = key(server, 77, client, 0 << 8, 1)           // echo reply, id 77
        XCTAssertEqual(ConnTable.replyTuple(for: req), rep)
        let a = t.track(req, now: T0)
        XCTAssertTrue(a.created)
        XCTAssertEqual(a.result.state, .new)
        XCTAssertEqual(t[a.index].deadline, T0 + 30 * S)
        let b = t.track(rep, now: T0 + S)
        XCTAssertEqual(b.index, a.index)
        XCTAssertEqual(b.result, TrackResult(state: .established, reply: true))
        XCTAssertFalse(t[a.index].status.contains(.assured))
        // Another identifier is another connection; a reply with no request creates nothing.
        XCTAssertTrue(t.track(key(client, 78, server, 8 << 8, 1), now: T0).created)
        let stray = t.track(key(server, 99, client, 0, 1), now: T0)
        XCTAssertEqual(stray.result.reason, .cannotCreate)
        // Errors never create (RELATED is the caller's lookup of the embedded tuple).
        XCTAssertFalse(t.canCreate(proto: 1, icmpType: 3))
        XCTAssertNil(ConnTable.replyTuple(for: key(server, 0, client, 3 << 8 | 3, 1)))
        XCTAssertTrue(t.canCreate(proto: 1, icmpType: 13))
        XCTAssertEqual(t.count, 2)
    }

    func testTableFullIsInvalidNotACrash() {
        var t = makeTable(capacity: 2)
        for p in 0..<2 {
            let i = t.track(key(client, UInt16(p), server, 53, 17), now: T0).index
            var c = t[i]; c.status.insert(.assured); t[i] = c
        }
        let r = t.track(key(client, 9, server, 53, 17), now: T0)
        XCTAssertEqual(r.result.reason, .tableFull)
        XCTAssertEqual(r.index, -1)
    }
}
