import CNetfilterQueue
import XCTest

/// The libnetfilter_queue shim links and the kernel accepts a queue binding through it: open a
/// handle, bind a queue number nobody uses, set packet copy mode, close. No packet is queued
/// (no rule points at the queue), so nothing on the host is affected. The inline engine that
/// serves queues builds on this target.
final class NFQueueLibraryTests: XCTestCase {
    func testOpenBindAndClose() throws {
        guard getuid() == 0 else {
            print("!!!! SKIPPED: NFQueueLibraryTests needs root (CAP_NET_ADMIN) to bind a queue")
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("must run on CI") }
            return
        }
        guard let h = nfq_open() else { return XCTFail("nfq_open failed: errno \(errno)") }
        defer { nfq_close(h) }
        XCTAssertGreaterThanOrEqual(nfq_fd(h), 0)
        let queueNumber = UInt16(40000 + getpid() % 20000)
        guard let q = nfq_create_queue(h, queueNumber, { _, _, _, _ in 0 }, nil) else {
            return XCTFail("nfq_create_queue(\(queueNumber)) failed: errno \(errno)")
        }
        XCTAssertEqual(nfq_set_mode(q, UInt8(NFQNL_COPY_PACKET.rawValue), 0xFFFF), 0)
        XCTAssertEqual(nfq_destroy_queue(q), 0)
    }
}
