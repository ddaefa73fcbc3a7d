#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CNetfilterQueue
import Synchronization
import Engine
import Logging
import Wire

/// The engine and what the workers need with it, behind one lock. Workers take the lock once
/// per receive batch (up to 64 packets), so every packet of every queue sees one connection
/// table: a NATed reply that the kernel hashes to another queue still finds its connection.
/// Syscalls (receive, verdicts, injected packets) happen outside the lock.
public struct LiveState: Sendable {
    public var engine: Engine
    /// Kernel ifindex -> engine interface index (-1: unknown to the engine).
    public var ifmap: [Int16]
    public var generation = 0

    public init(engine: Engine) {
        self.engine = engine
        ifmap = []
        if let list = if_nameindex() {
            var i = 0
            while list[i].if_index != 0 {
                let idx = Int(list[i].if_index)
                let name = String(cString: list[i].if_name)
                if ifmap.count <= idx { ifmap += Array(repeating: -1, count: idx + 1 - ifmap.count) }
                ifmap[idx] = engine.interfaceIndex(name) ?? -1
                i += 1
            }
            if_freenameindex(list)
        }
    }
}

/// Per-worker counters, published once per batch (relaxed atomics: the control socket reads them).
public final class WorkerStats: Sendable {
    public let queue: UInt16
    public let received = Atomic<UInt64>(0)
    public let verdicts = Atomic<UInt64>(0)
    public let accepted = Atomic<UInt64>(0)
    public let dropped = Atomic<UInt64>(0)
    public let rewritten = Atomic<UInt64>(0)
    public let batches = Atomic<UInt64>(0)
    public let batchVerdicts = Atomic<UInt64>(0)
    public let injected = Atomic<UInt64>(0)
    public let injectFailed = Atomic<UInt64>(0)
    public let enobufs = Atomic<UInt64>(0)
    public let netlinkErrors = Atomic<UInt64>(0)
    public let unknownInterface = Atomic<UInt64>(0)
    public let acceptedBeforeReady = Atomic<UInt64>(0)
    /// Packets and bytes by the hook the kernel queued them at (0 PREROUTING, 1 OUTPUT, 2
    /// other) and the verdict (0 accept, 1 drop): index hook * 2 + verdict.
    /// [0..<6] packets, [6..<12] bytes.
    public let hookTotals = Mutex<[UInt64]>(Array(repeating: 0, count: 12))
    /// LOG lines written and suppressed by the rate limit.
    public let logLines = Atomic<UInt64>(0)
    public let logSuppressed = Atomic<UInt64>(0)
    init(queue: UInt16) { self.queue = queue }
}

public struct RunOptions: Sendable {
    public var firstQueue: UInt16 = 0
    public var lastQueue: UInt16 = 0
    public var failOpen = false
    public var gso = true
    public var maxLength: UInt32 = 8192
    public var batch = 64
    /// Mark on the packets Sluice sends itself (REJECT answers, COPY clones).
    public var injectMark: UInt32 = 0x2000_0000
    /// What happens to a packet the parser refuses (counted with its reason either way).
    public var acceptMalformed = false
    /// CPUs to pin worker i to (cpus[i % count]); empty: not pinned.
    public var cpus: [Int] = []
    /// LOG target lines per second per worker, and the burst allowed above it.
    public var logRate: Double = 20
    public var logBurst = 100
    public init() {}
}

/// `sluice run`: one worker thread per queue, each with its own netlink socket and receive
/// loop, sharing one engine. Reload swaps the engine (the connection table moves over);
/// stop drains every queue so each packet received gets its verdict before the queues close.
public final class Runner: @unchecked Sendable {
    public let options: RunOptions
    let state: Mutex<LiveState>
    let stopping = Atomic<Bool>(false)
    public private(set) var stats: [WorkerStats] = []
    var sockets: [QueueSocket] = []
    var threads: [Thread] = []
    let injector: Injector
    let finished = Atomic<Int>(0)
    public let started = Date()

    public init(engine: Engine, options: RunOptions) throws(QueueError) {
        self.options = options
        state = Mutex(LiveState(engine: engine))
        injector = try Injector(mark: options.injectMark)
        for q in options.firstQueue ... options.lastQueue {
            var c = QueueConfig(number: q)
            c.failOpen = options.failOpen
            c.gso = options.gso
            c.maxLength = options.maxLength
            c.batch = options.batch
            sockets.append(try QueueSocket(c))
            stats.append(WorkerStats(queue: q))
        }
    }

    /// Starts the workers (the queues are already bound).
    public func start() {
        for (i, s) in sockets.enumerated() {
            let st = stats[i]
            let cpu = options.cpus.isEmpty ? nil : options.cpus[i % options.cpus.count]
            let t = Thread { [self] in
                if let cpu { Self.pin(cpu) }
                self.serve(s, st)
                self.finished.add(1, ordering: .releasing)
            }
            t.name = "sluice-q\(s.config.number)"
            t.stackSize = 1 << 20
            threads.append(t)
            t.start()
        }
    }

    /// Asks the workers to drain and stop; returns when all have given their last verdicts
    /// and unbound their queues.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        while finished.load(ordering: .acquiring) < threads.count { usleep(10_000) }
    }

    /// Compiles beside the running engine, then swaps under the lock; the connection table moves.
    public func swap(_ new: Engine) {
        let next = LiveState(engine: new)
        state.withLock { s in
            var n = next
            n.engine.adoptConnections(from: &s.engine)
            n.generation = s.generation + 1
            s = n
        }
    }

    public func withState<R>(_ body: (inout LiveState) -> R) -> R {
        state.withLock { body(&$0) }
    }

    static func pin(_ cpu: Int) {
        if sluice_pin_cpu(Int32(cpu)) != 0 { writeErr("sluice run: cannot pin a worker to CPU \(cpu)\n") }
    }

    /// The receive loop of one queue.
    func serve(_ sock: QueueSocket, _ st: WorkerStats) {
        let cap = max(1, sock.config.batch) * 8
        let pkts = UnsafeMutablePointer<QueuedPacket>.allocate(capacity: cap)
        pkts.initialize(repeating: QueuedPacket(), count: cap)
        // Per packet: 0 plain accept, 1 accept with changes, 2 drop.
        let action = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
        let newMark = UnsafeMutablePointer<UInt32>.allocate(capacity: cap)
        let sendLength = UnsafeMutablePointer<Int>.allocate(capacity: cap)
        let hasMark = UnsafeMutablePointer<Bool>.allocate(capacity: cap)
        let hookCounts = UnsafeMutablePointer<UInt64>.allocate(capacity: 12)
        hookCounts.initialize(repeating: 0, count: 12)
        // Packets the box sends (REJECT answers, COPY clones), sent after the lock is released.
        let injectCapacity = 1 << 20
        let injectBytes = UnsafeMutableRawPointer.allocate(byteCount: injectCapacity, alignment: 16)
        var injects: [(offset: Int, count: Int, nextHop: UInt32)] = []
        injects.reserveCapacity(cap * 2)
        var saved = [UInt8](repeating: 0, count: 256)
        var parsed = ParsedPacket()
        var trace = HitTrace(logging: true)
        trace.recordNAT = false
        trace.recordHits = false
        // LOG lines: a token bucket per worker (logRate per second, burst logBurst); the lines
        // are copied out under the engine lock (only when a LOG rule hit) and written after.
        var logTokens = Double(options.logBurst)
        var logStamp: Int64 = 0
        var pendingLogs: [String] = []
        var suppressed: UInt64 = 0
        let logger = Logger(label: "sluice.log")
        var emitted = Emitted()
        emitted.copyBytes.reserveCapacity(65536)
        emitted.copies.reserveCapacity(16)
        var quiet = 0
        var published = (enobufs: UInt64(0), errors: UInt64(0), early: UInt64(0))
        let acceptMalformed = options.acceptMalformed
        st.acceptedBeforeReady.store(sock.acceptedBeforeReady, ordering: .relaxed)

        while true {
            let stop = stopping.load(ordering: .relaxed)
            let n = sock.receive(into: pkts, capacity: cap, wait: !stop)
            if sock.enobufs != published.enobufs || sock.netlinkErrors != published.errors {
                st.enobufs.store(sock.enobufs, ordering: .relaxed)
                st.netlinkErrors.store(sock.netlinkErrors, ordering: .relaxed)
                published = (sock.enobufs, sock.netlinkErrors, 0)
            }
            if n == 0 {
                if stop {
                    // Draining: the hooks are gone (or bypass); stop after the queue stayed
                    // empty for a while.
                    quiet += 1
                    if quiet >= 5 { break }
                    usleep(20_000)
                }
                continue
            }
            quiet = 0
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let now = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
            injects.removeAll(keepingCapacity: true)
            var injectUsed = 0
            var unknown: UInt64 = 0
            var rewrittenCount: UInt64 = 0

            state.withLock { s in
                for i in 0 ..< n {
                    let pk = pkts[i]
                    guard let base = pk.payload, pk.length > 0 else { action[i] = 0; continue }
                    let keep = min(pk.length, saved.count)
                    saved.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: base, byteCount: keep) }
                    var inIf: Int16? = nil
                    if pk.hook != 3 {  // not NF_INET_LOCAL_OUT: it arrived on an interface
                        let k = Int(pk.inIfindex)
                        inIf = k < s.ifmap.count ? s.ifmap[k] : -1
                        if inIf == -1 { unknown &+= 1 }
                    }
                    let frame = UnsafeMutableRawBufferPointer(start: base, count: pk.length)
                    let d = s.engine.process(frame: frame, capacity: pk.capacity, linkType: .raw, inInterface: inIf,
                                             timestampNanos: now, mark: pk.mark, checksumVerified: !pk.checksumNotVerified,
                                             parsed: &parsed, trace: &trace, emitted: &emitted)
                    if !trace.logs.isEmpty {
                        if logStamp != 0 { logTokens = min(Double(options.logBurst), logTokens + Double(now - logStamp) / 1e9 * options.logRate) }
                        logStamp = now
                        for line in trace.logs {
                            if logTokens >= 1 { logTokens -= 1; pendingLogs.append(line) } else { suppressed &+= 1 }
                        }
                    }
                    var accept: Bool
                    switch d.kind {
                    case .forwarded, .local, .sent, .passed: accept = true
                    case .rejected: accept = false
                    case .dropped:
                        switch d.reason {
                        case .rule, .policy, .hotdrop, .martianSource, .martianDestination: accept = false
                        case .malformed: accept = acceptMalformed
                        // Decisions the kernel takes itself after the verdict (and answers, as
                        // for TTL exceeded): hand the packet back as it is now.
                        default: accept = true
                        }
                    }
                    if d.kind == .rejected, d.generatedOut >= 0, !emitted.reply.isEmpty {
                        emitted.reply.withUnsafeBytes { r in
                            if injectUsed + r.count <= injectCapacity {
                                (injectBytes + injectUsed).copyMemory(from: r.baseAddress!, byteCount: r.count)
                                injects.append((injectUsed, r.count, r.loadBE32(16)))
                                injectUsed += r.count
                            }
                        }
                    }
                    for c in emitted.copies.indices {
                        let (start, count, _, to) = emitted.copies[c]
                        if injectUsed + count <= injectCapacity {
                            emitted.copyBytes.withUnsafeBytes { b in
                                (injectBytes + injectUsed).copyMemory(from: b.baseAddress! + start, byteCount: count)
                            }
                            injects.append((injectUsed, count, to))
                            injectUsed += count
                        }
                    }
                    guard accept else { action[i] = 2; continue }
                    let length = pk.length + d.grown
                    let changed = d.grown > 0 || saved.withUnsafeBytes { memcmp($0.baseAddress!, base, keep) != 0 }
                    let markChanged = (d.kind != .dropped) && d.mark != pk.mark
                    if changed && pk.checksumNotReady {
                        Self.completeChecksum(UnsafeMutableRawBufferPointer(start: base, count: length))
                    }
                    if changed { rewrittenCount &+= 1 }
                    sendLength[i] = changed ? length : 0
                    hasMark[i] = markChanged
                    newMark[i] = d.mark
                    action[i] = changed || markChanged ? 1 : 0
                }
            }

            // Verdicts: the per-packet ones first, then one batch verdict for the plain accepts.
            var maxPlain: UInt32? = nil
            var accepted: UInt64 = 0, dropped: UInt64 = 0
            hookCounts.update(repeating: 0, count: 12)
            for i in 0 ..< n {
                let pk = pkts[i]
                let slot = (pk.hook == 0 ? 0 : pk.hook == 3 ? 2 : 4) + (action[i] == 2 ? 1 : 0)
                hookCounts[slot] &+= 1
                hookCounts[6 + slot] &+= UInt64(pk.length)
                switch action[i] {
                case 0:
                    accepted &+= 1
                    if maxPlain == nil || pk.id > maxPlain! { maxPlain = pk.id }
                case 1:
                    accepted &+= 1
                    let payload = sendLength[i] > 0 ? UnsafeRawBufferPointer(start: pk.payload, count: sendLength[i]) : nil
                    sock.verdict(id: pk.id, .accept, mark: hasMark[i] ? newMark[i] : nil, payload: payload)
                default:
                    dropped &+= 1
                    sock.verdict(id: pk.id, .drop)
                }
            }
            if let m = maxPlain {
                if Int(accepted) == n && n == 1 { sock.verdict(id: m, .accept) } else { sock.batchVerdict(upTo: m, .accept) }
                st.batchVerdicts.add(1, ordering: .relaxed)
            }
            sock.flush()
            if !pendingLogs.isEmpty {
                for line in pendingLogs { logger.notice("\(line)", metadata: ["queue": "\(sock.config.number)"]) }
                st.logLines.add(UInt64(pendingLogs.count), ordering: .relaxed)
                pendingLogs.removeAll(keepingCapacity: true)
            }
            if suppressed > 0 { st.logSuppressed.add(suppressed, ordering: .relaxed); suppressed = 0 }
            for inj in injects {
                injector.send(UnsafeRawBufferPointer(start: injectBytes + inj.offset, count: inj.count), nextHop: inj.nextHop)
            }
            st.received.add(UInt64(n), ordering: .relaxed)
            st.verdicts.add(UInt64(n), ordering: .relaxed)
            st.accepted.add(accepted, ordering: .relaxed)
            st.dropped.add(dropped, ordering: .relaxed)
            st.rewritten.add(rewrittenCount, ordering: .relaxed)
            st.batches.add(1, ordering: .relaxed)
            st.hookTotals.withLock { t in for k in 0 ..< 12 { t[k] &+= hookCounts[k] } }
            if !injects.isEmpty { st.injected.add(UInt64(injects.count), ordering: .relaxed) }
            if unknown > 0 { st.unknownInterface.add(unknown, ordering: .relaxed) }
        }
        sock.unbind()
        st.injectFailed.store(injector.failed, ordering: .relaxed)
        pkts.deallocate(); hookCounts.deallocate(); action.deallocate(); newMark.deallocate(); sendLength.deallocate(); hasMark.deallocate()
        injectBytes.deallocate()
    }

    /// A packet whose L4 checksum the kernel left for the NIC (CHECKSUM_PARTIAL, the field holds
    /// the pseudo-header sum) and that Sluice rewrote: the kernel takes the written-back packet
    /// as CHECKSUM_NONE, so the full checksum is computed here.
    static func completeChecksum(_ ip: UnsafeMutableRawBufferPointer) {
        guard ip.count >= 20, ip[0] >> 4 == 4 else { return }
        let hl = Int(ip[0] & 0x0F) * 4
        let total = min(Int(ip.loadBE16(2)), ip.count)
        guard total > hl, ip.loadBE16(6) & 0x3FFF == 0 else { return }
        let proto = ip[9]
        let l4 = hl
        let field: Int
        switch proto {
        case 6: field = l4 + 16
        case 17: field = l4 + 6
        default: return
        }
        guard field + 2 <= total else { return }
        ip.storeBytes(of: UInt16(0), toByteOffset: field, as: UInt16.self)
        let seg = UnsafeRawBufferPointer(rebasing: ip[l4 ..< total])
        let pseudo = Checksum.pseudoHeaderSum(src: ip.loadBE32(12), dst: ip.loadBE32(16), proto: proto, length: UInt16(total - l4))
        var c = Checksum.fold(Checksum.sum(seg, initial: pseudo))
        if proto == 17 && c == 0 { c = 0xFFFF }
        ip.storeBytes(of: c.bigEndian, toByteOffset: field, as: UInt16.self)
    }

    /// Per-queue lines of /proc/net/netfilter/nfnetlink_queue: queue, portid, waiting, copy
    /// mode, copy range, queue_dropped, user_dropped, last id.
    public static func kernelQueueLines() -> [String] {
        // thread-self: /proc/net follows the process's first thread, not this one's namespace.
        ((try? String(contentsOfFile: "/proc/thread-self/net/netfilter/nfnetlink_queue", encoding: .utf8))
            ?? (try? String(contentsOfFile: "/proc/net/netfilter/nfnetlink_queue", encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always) func loadBE32(_ o: Int) -> UInt32 { UInt32(bigEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func loadBE16(_ o: Int) -> UInt16 { UInt16(bigEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) func loadBE32(_ o: Int) -> UInt32 { UInt32(bigEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
}

func writeErr(_ s: String) {
    var s = s
    s.withUTF8 { b in _ = write(2, b.baseAddress, b.count) }
}
