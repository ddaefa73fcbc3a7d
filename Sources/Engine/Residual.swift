import Classifier
import NetModel
import Rules
import Wire

/// A match that needs more than the header fields of `CompiledRule`: checked in rule order,
/// after the header part matched. Plain values; state (counters, buckets, lists) lives in
/// `MatchState` arrays indexed by `slot`.
enum ResidualMatch: Sendable {
    /// tcp/udp/icmp/multiport modules need their L4 header: later fragments never match, a
    /// first fragment without it hotdrops (xt_tcpudp, xt_multiport, icmp_mt).
    case needsL4
    case tcpFlags(mask: UInt8, comparison: UInt8, invert: Bool)
    case tcpOption(kind: UInt8, invert: Bool)
    case icmpType(ICMPTypeSpec, invert: Bool)
    case multiport(start: Int32, count: Int16, direction: MultiportDirection, invert: Bool)
    case sourceRange(lo: UInt32, hi: UInt32, invert: Bool)
    case destinationRange(lo: UInt32, hi: UInt32, invert: Bool)
    indirect case addrtype(AddrTypeMatch)
    case mark(MarkMask, invert: Bool)
    case length(lo: UInt16, hi: UInt16, invert: Bool)
    case ttl(TTLComparison, UInt8, invert: Bool)
    case random(threshold: UInt32, invert: Bool)
    case nth(slot: Int32, every: UInt32, invert: Bool)
    case limit(slot: Int32, perNanos: Double, burst: Double)
    // Boxed (indirect): their payloads are large, and every other case would be copied at that size.
    indirect case recent(list: Int32, RecentMatch)
    case mac(UInt64, invert: Bool)
    case pkttype(UInt8, invert: Bool)
    case set(index: Int32, source: Bool, invert: Bool)
    case constant(Bool)
    case ctState(CtState, invert: Bool)
    case connmark(MarkMask, invert: Bool)
    indirect case conntrack(ConntrackMatch)
}

/// Per-rule state of stateful matches, in flat arrays.
struct MatchState: Sendable {
    var nthCounters: [UInt32] = []
    var limitCredit: [Double] = []
    var limitLast: [Int64] = []
    var recent: [RecentList] = []
    var recentNames: [String] = []
    var random = SplitMix64(seed: 0x5EED)
}


/// xt_recent's table: up to `capacity` addresses (ip_list_tot = 100), each with the last
/// `stamps` (ip_pkt_list_tot = 20) times it was seen; the oldest entry is replaced when full.
struct RecentList: Sendable {
    static let capacity = 100
    static let stamps = 20
    var keys: [UInt32] = []
    var ttls: [UInt8] = []
    var times: [Int64] = []      // capacity * stamps
    var counts: [UInt8] = []     // stamps used
    var next: [UInt8] = []       // ring position
    var lastSeen: [Int64] = []

    init() {
        keys.reserveCapacity(Self.capacity)
        times.reserveCapacity(Self.capacity * Self.stamps)
    }

    func find(_ key: UInt32, ttl: UInt8?) -> Int? {
        for i in keys.indices where keys[i] == key && (ttl == nil || ttls[i] == ttl!) { return i }
        return nil
    }

    mutating func add(_ key: UInt32, ttl: UInt8, now: Int64) {
        if keys.count >= Self.capacity {
            // Evict the least recently seen entry.
            var oldest = 0
            for i in keys.indices where lastSeen[i] < lastSeen[oldest] { oldest = i }
            remove(oldest)
        }
        keys.append(key); ttls.append(ttl); counts.append(0); next.append(0); lastSeen.append(now)
        times.append(contentsOf: repeatElement(0, count: Self.stamps))
        touch(keys.count - 1, now: now)
    }

    mutating func touch(_ i: Int, now: Int64) {
        times[i * Self.stamps + Int(next[i])] = now
        next[i] = UInt8((Int(next[i]) + 1) % Self.stamps)
        if counts[i] < Self.stamps { counts[i] += 1 }
        lastSeen[i] = now
    }

    mutating func remove(_ i: Int) {
        keys.remove(at: i); ttls.remove(at: i); counts.remove(at: i); next.remove(at: i); lastSeen.remove(at: i)
        times.removeSubrange(i * Self.stamps ..< (i + 1) * Self.stamps)
    }
}

/// IP sets compiled for lookup: one Set of network addresses per prefix length present.
struct CompiledIPSet: Sendable {
    var byLength: [(mask: UInt32, members: Set<UInt32>)] = []

    init(_ s: IPSetCollection.IPSet) {
        var groups: [UInt8: Set<UInt32>] = [:]
        for m in s.members { groups[m.length, default: []].insert(m.network) }
        for (len, members) in groups.sorted(by: { $0.key > $1.key }) {
            byLength.append((len == 0 ? 0 : ~UInt32(0) << (32 - UInt32(len)), members))
        }
    }

    func contains(_ a: UInt32) -> Bool {
        for g in byLength where g.members.contains(a & g.mask) { return true }
        return false
    }
}
