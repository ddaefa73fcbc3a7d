import Wire

/// Hash-chain and timer-wheel links of one slot, kept apart from `Connection` so the integrator
/// cannot corrupt them through the subscript. 16 bytes.
@usableFromInline
struct Links: Sendable {
    /// Next node in the hash chain of the original (0) and reply (1) key. A node is
    /// `index << 1 | direction`; -1 ends a chain. For a free slot `next0` chains the free list.
    @usableFromInline var next0: Int32 = -1
    @usableFromInline var next1: Int32 = -1
    /// Timer wheel: previous entry, or `-1 - slot` when this entry heads wheel slot `slot`;
    /// `Links.free` marks a free table slot.
    @usableFromInline var wheelPrev: Int32 = Links.free
    @usableFromInline var wheelNext: Int32 = -1
    @usableFromInline static let free = Int32.min
    @usableFromInline init() {}
}

/// The connection table: one connection, two keys (original and reply tuple), as netfilter.
///
/// Storage is flat and preallocated at init: `conns` and `links` (reserved to `capacity`,
/// grown by append up to it, never reallocated), bucket heads (a power of two >= 2 x capacity,
/// so at most one key per bucket on average), a 4096-slot timer wheel. Nothing allocates after
/// init. Memory per connection: 120 (Connection) + 16 (Links) + 8 (bucket heads) = 144 bytes,
/// so 1M connections take ~150 MB. Keep the table in one place (a stored `var`): it is a value,
/// and a copy would copy the arrays on the next write.
///
/// Time is an Int64 in ns chosen by the caller (capture timestamps in replay, a monotonic clock
/// inline); the table never reads a clock, so replays are deterministic.
public struct ConnTable: Sendable {
    public let capacity: Int
    public var timeouts: Timeouts
    /// nf_conntrack_tcp_loose: pick up mid-stream connections from an ACK.
    public var tcpLoose = true
    /// nf_conntrack_tcp_be_liberal: only out-of-window RSTs are invalid.
    public var tcpBeLiberal = false

    @usableFromInline var conns: [Connection]
    @usableFromInline var links: [Links]
    @usableFromInline var heads: [Int32]
    @usableFromInline let bucketMask: Int
    @usableFromInline let key: SipKey

    // Timer wheel: slot = (deadline >> tickShift) & wheelMask; a tick is 2^30 ns (~1.07 s).
    // Invariant: a live entry sits in the slot of a tick <= its deadline's tick (extending a
    // deadline leaves it where it is; `expire` re-files it when it gets there), so an entry is
    // retired at most one tick late; `find` never returns an expired entry in between.
    @usableFromInline static let tickShift: Int64 = 30
    @usableFromInline static let wheelSlots = 4096
    @usableFromInline var wheel: [Int32]
    @usableFromInline var cursorTick: Int64 = 0      // next tick `expire` processes
    @usableFromInline var cursorSet = false
    @usableFromInline var resume: Int32 = -1         // next entry of the slot being processed
    @usableFromInline var passActive = false

    @usableFromInline var freeHead: Int32 = -1
    @usableFromInline var nextID: UInt32 = 0

    /// Live connections (including expired ones not yet retired).
    public internal(set) var count = 0
    public internal(set) var inserted = 0
    public internal(set) var expired = 0
    /// Early drops: non-assured (or closing TCP) connections evicted to make room.
    public internal(set) var evicted = 0
    /// Inserts refused because the table was full and nothing near could be evicted.
    public internal(set) var insertFailed = 0
    /// Inserts refused because a live connection already has one of the two tuples.
    public internal(set) var insertClash = 0

    /// `secret` nil draws a random 128-bit secret from SystemRandomNumberGenerator; tests pass
    /// a fixed one. `capacity` is clamped to 1...2^29.
    public init(capacity: Int = 262_144, timeouts: Timeouts = .kernelDefaults, secret: (UInt64, UInt64)? = nil) {
        let cap = min(max(capacity, 1), 1 << 29)
        self.capacity = cap
        self.timeouts = timeouts
        var buckets = 1
        while buckets < 2 * cap { buckets <<= 1 }
        bucketMask = buckets - 1
        heads = [Int32](repeating: -1, count: buckets)
        wheel = [Int32](repeating: -1, count: Self.wheelSlots)
        conns = []; conns.reserveCapacity(cap)
        links = []; links.reserveCapacity(cap)
        if let s = secret {
            key = SipKey(s.0, s.1)
        } else {
            var g = SystemRandomNumberGenerator()
            key = SipKey(g.next(), g.next())
        }
    }

    // MARK: Hashing

    /// The bucket of a tuple. The direction is not part of the key: a reply packet's tuple is
    /// the connection's reply tuple, found in the same index.
    @inlinable @inline(__always)
    func bucket(_ k: FlowKey) -> Int {
        let m0 = UInt64(k.source) | UInt64(k.destination) << 32
        let m1 = UInt64(k.sourcePort) | UInt64(k.destinationPort) << 16 | UInt64(k.proto) << 32
        return Int(truncatingIfNeeded: key.hash(m0, m1)) & bucketMask
    }

    @inlinable @inline(__always)
    static func same(_ a: FlowKey, _ b: FlowKey) -> Bool {
        a.source == b.source && a.destination == b.destination && a.sourcePort == b.sourcePort
            && a.destinationPort == b.destinationPort && a.proto == b.proto
    }

    @inlinable @inline(__always)
    func keyOf(_ node: Int32) -> FlowKey {
        node & 1 == 0 ? conns[Int(node >> 1)].original : conns[Int(node >> 1)].reply
    }

    @inlinable @inline(__always)
    func nextOf(_ node: Int32) -> Int32 {
        node & 1 == 0 ? links[Int(node >> 1)].next0 : links[Int(node >> 1)].next1
    }

    @inlinable @inline(__always)
    mutating func setNext(_ node: Int32, _ next: Int32) {
        if node & 1 == 0 { links[Int(node >> 1)].next0 = next } else { links[Int(node >> 1)].next1 = next }
    }

    @usableFromInline
    mutating func linkHash(_ node: Int32) {
        let b = bucket(keyOf(node))
        setNext(node, heads[b])
        heads[b] = node
    }

    @usableFromInline
    mutating func unlinkHash(_ node: Int32) {
        let b = bucket(keyOf(node))
        var cur = heads[b]
        if cur == node { heads[b] = nextOf(node); return }
        while cur >= 0 {
            let n = nextOf(cur)
            if n == node { setNext(cur, nextOf(node)); return }
            cur = n
        }
    }

    // MARK: Lookup

    /// The connection one of whose tuples is `key`, and whether it is the reply tuple. An
    /// expired connection is retired here (counted in `expired`) and not returned.
    /// Cost: one SipHash, then on average about one key compare.
    public mutating func find(_ key: FlowKey, now: Int64) -> (index: Int32, reply: Bool)? {
        var node = heads[bucket(key)]
        while node >= 0 {
            if Self.same(keyOf(node), key) {
                let i = node >> 1
                if conns[Int(i)].deadline <= now {
                    retire(i); expired += 1
                    return nil
                }
                return (i, node & 1 != 0)
            }
            node = nextOf(node)
        }
        return nil
    }

    /// Whether a live connection has `key` as either tuple (for NAT's free-tuple search).
    /// Does not retire anything.
    @inlinable
    public func isTaken(_ key: FlowKey, now: Int64) -> Bool {
        var node = heads[bucket(key)]
        while node >= 0 {
            if Self.same(keyOf(node), key) { return conns[Int(node >> 1)].deadline > now }
            node = nextOf(node)
        }
        return false
    }

    public subscript(i: Int32) -> Connection {
        get { conns[Int(i)] }
        // Tuples, deadline and id are `internal(set)`, so a caller's write cannot desync the
        // indexes; the setter still keeps the table's copies to be safe.
        set {
            var c = newValue
            let old = conns[Int(i)]
            c.original = old.original; c.reply = old.reply; c.deadline = old.deadline; c.id = old.id
            conns[Int(i)] = c
        }
    }

    /// Whether slot `i` holds a connection (live or expired-but-not-retired).
    @inlinable
    public func isLive(_ i: Int32) -> Bool {
        i >= 0 && Int(i) < links.count && links[Int(i)].wheelPrev != Links.free
    }

    // MARK: Insert / remove

    /// Adds a connection under both tuples, unconfirmed (call `confirm` when its first packet
    /// is accepted, `remove` when it is dropped). `reply` may differ from the inverted
    /// `original` (NAT decided up front). Returns nil when a live connection already holds one
    /// of the tuples (`insertClash`) or when the table is full and no connection near the new
    /// key's bucket can be evicted (`insertFailed`). Deadline: `timeouts.initial(proto:)`.
    public mutating func insert(original: FlowKey, reply: FlowKey, now: Int64) -> Int32? {
        if !cursorSet { cursorTick = now >> Self.tickShift; cursorSet = true }
        if find(original, now: now) != nil || find(reply, now: now) != nil {
            insertClash += 1
            return nil
        }
        if count >= capacity && !earlyDrop(near: original, now: now) {
            insertFailed += 1
            return nil
        }
        var c = Connection(original: original, reply: reply,
                           deadline: now &+ timeouts.initial(proto: original.proto), id: nextID)
        nextID &+= 1
        if original.proto == 17 || original.proto == 136 { c.udpStreamAt = now &+ timeouts.udpStreamDelay }
        let i: Int32
        if freeHead >= 0 {
            i = freeHead
            freeHead = links[Int(i)].next0
            conns[Int(i)] = c
            links[Int(i)] = Links()
        } else {
            i = Int32(conns.count)
            conns.append(c)          // within reserved capacity: no reallocation
            links.append(Links())
        }
        linkHash(i << 1)
        linkHash(i << 1 | 1)
        linkWheel(i, deadline: c.deadline)
        count += 1
        inserted += 1
        return i
    }

    /// Marks the connection confirmed (its first packet was accepted).
    public mutating func confirm(_ i: Int32) { conns[Int(i)].status.insert(.confirmed) }

    /// Re-keys the reply side (NAT decided after insert). Returns false, changing nothing, if
    /// another live connection already holds `reply`. Sets SRC_NAT / DST_NAT as the kernel
    /// does (reply source != original destination → DNAT; reply destination != original
    /// source → SNAT).
    @discardableResult
    public mutating func setReplyTuple(_ i: Int32, _ reply: FlowKey, now: Int64) -> Bool {
        if let hit = find(reply, now: now), hit.index != i { return false }
        unlinkHash(i << 1 | 1)
        conns[Int(i)].reply = reply
        linkHash(i << 1 | 1)
        let o = conns[Int(i)].original
        if reply.source != o.destination || (o.proto != 1 && reply.sourcePort != o.destinationPort) {
            conns[Int(i)].status.insert(.dstNAT)
        }
        if reply.destination != o.source || (o.proto != 1 && reply.destinationPort != o.sourcePort) {
            conns[Int(i)].status.insert(.srcNAT)
        }
        return true
    }

    /// Removes a connection from both indexes and the wheel; the slot is reused.
    public mutating func remove(_ i: Int32) {
        guard isLive(i) else { return }
        retire(i)
    }

    @usableFromInline
    mutating func retire(_ i: Int32) {
        unlinkHash(i << 1)
        unlinkHash(i << 1 | 1)
        unlinkWheel(i)
        links[Int(i)].wheelPrev = Links.free
        links[Int(i)].next0 = freeHead
        freeHead = i
        count -= 1
    }

    /// Sets the deadline to `now + timeout`-style absolute `deadline`.
    public mutating func setTimeout(_ i: Int32, deadline: Int64) { setDeadline(i, deadline) }

    @usableFromInline
    mutating func setDeadline(_ i: Int32, _ d: Int64) {
        let old = conns[Int(i)].deadline
        conns[Int(i)].deadline = d
        // Earlier tick: move it, or it would be retired late. Later: leave it (O(1) per packet).
        if d >> Self.tickShift < old >> Self.tickShift {
            unlinkWheel(i)
            linkWheel(i, deadline: d)
        }
    }

    // MARK: Early drop

    /// The kernel's early_drop: look at up to 8 buckets from the new key's, up to 8 nodes per
    /// chain (at most 64 entries), for an expired entry (retired at once) or an evictable one:
    /// not ASSURED, or a TCP connection already closing (the kernel's gc drops those, via
    /// tcp_can_early_drop, when the table is nearly full). Takes the oldest in the first bucket
    /// that has one. Bounded work; false when nothing there can go.
    @usableFromInline
    mutating func earlyDrop(near k: FlowKey, now: Int64) -> Bool {
        var b = bucket(k)
        for _ in 0..<8 {
            var node = heads[b]
            var best: Int32 = -1
            var seen = 0
            while node >= 0 && seen < 8 {
                let i = node >> 1
                let c = conns[Int(i)]
                if c.deadline <= now { retire(i); expired += 1; return true }
                if Self.canEarlyDrop(c) && (best < 0 || Int32(bitPattern: c.id &- conns[Int(best)].id) < 0) {
                    best = i
                }
                seen += 1
                node = nextOf(node)
            }
            if best >= 0 { retire(best); evicted += 1; return true }
            b = (b + 1) & bucketMask
        }
        return false
    }

    @inlinable
    static func canEarlyDrop(_ c: Connection) -> Bool {
        if !c.status.contains(.assured) { return true }
        guard c.proto == 6 else { return false }
        switch c.tcp.state {
        case .finWait, .closeWait, .lastAck, .timeWait, .close: return true
        default: return false
        }
    }

    // MARK: Timer wheel and expiry

    @usableFromInline
    mutating func linkWheel(_ i: Int32, deadline: Int64) {
        var t = max(deadline >> Self.tickShift, cursorTick)
        // Never file into the slot being walked: the walk has passed its head.
        if passActive && t == cursorTick { t += 1 }
        let s = Int(t & Int64(Self.wheelSlots - 1))
        let h = wheel[s]
        links[Int(i)].wheelNext = h
        links[Int(i)].wheelPrev = -1 - Int32(s)
        if h >= 0 { links[Int(h)].wheelPrev = i }
        wheel[s] = i
    }

    @usableFromInline
    mutating func unlinkWheel(_ i: Int32) {
        let p = links[Int(i)].wheelPrev, n = links[Int(i)].wheelNext
        if passActive && resume == i { resume = n }
        if p >= 0 { links[Int(p)].wheelNext = n } else { wheel[Int(-1 - p)] = n }
        if n >= 0 { links[Int(n)].wheelPrev = p }
    }

    /// Retires at most `budget` expired connections and returns how many. Walks the wheel
    /// slots of the ticks that have fully passed, re-filing live entries whose deadline moved
    /// later. Work per call is bounded by 4 x budget + 4096 steps (no full-table scan); call it
    /// once per batch. Entries are retired at most one tick (~1.07 s) after their deadline,
    /// later if the budget is too small for the churn; `find` hides them meanwhile.
    @discardableResult
    public mutating func expire(now: Int64, budget: Int) -> Int {
        guard cursorSet, budget > 0 else { return 0 }
        let nowTick = now >> Self.tickShift
        if !passActive && nowTick - cursorTick > Int64(Self.wheelSlots) {
            cursorTick = nowTick - Int64(Self.wheelSlots)   // one visit to every slot suffices
        }
        var retired = 0, steps = 0
        let limit = budget * 4 + Self.wheelSlots
        while cursorTick < nowTick && retired < budget && steps < limit {
            let s = Int(cursorTick & Int64(Self.wheelSlots - 1))
            var node = passActive ? resume : wheel[s]
            passActive = true
            while node >= 0 && retired < budget && steps < limit {
                steps += 1
                let next = links[Int(node)].wheelNext
                let d = conns[Int(node)].deadline
                if d <= now {
                    retire(node); expired += 1; retired += 1
                } else {
                    // d's tick >= nowTick > cursorTick: re-filed ahead (same slot only for a
                    // later revolution, at its head, which this walk has passed).
                    unlinkWheel(node)
                    linkWheel(node, deadline: d)
                }
                node = next
            }
            steps += 1
            if node >= 0 { resume = node; break }
            passActive = false; resume = -1
            cursorTick += 1
        }
        return retired
    }

    // MARK: Iteration and diagnostics

    /// Calls `body` for every live, unexpired connection, in slot order (deterministic for a
    /// given sequence of operations). Does not allocate.
    public func forEach(now: Int64, _ body: (Int32, Connection) throws -> Void) rethrows {
        for i in 0..<conns.count where links[i].wheelPrev != Links.free && conns[i].deadline > now {
            try body(Int32(i), conns[i])
        }
    }

    /// Live, unexpired connections in insertion order (for `conntrack -L`-style dumps).
    /// Allocates; not for the packet path.
    public func liveIndices(now: Int64) -> [Int32] {
        var out: [Int32] = []
        forEach(now: now) { i, _ in out.append(i) }
        let base = nextID
        out.sort { (conns[Int($0)].id &- base) < (conns[Int($1)].id &- base) }
        return out
    }

    /// Longest hash chain and number of non-empty buckets (hash-quality tests, benchmarks).
    public func chainStats() -> (maxChain: Int, usedBuckets: Int, buckets: Int) {
        var maxChain = 0, used = 0
        for h in heads where h >= 0 {
            used += 1
            var n = 0, node = h
            while node >= 0 { n += 1; node = nextOf(node) }
            maxChain = max(maxChain, n)
        }
        return (maxChain, used, heads.count)
    }
}
