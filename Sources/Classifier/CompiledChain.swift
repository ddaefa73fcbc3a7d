/// A chain compiled for lookup: answers exactly what `LinearClassifier.firstMatch` answers
/// ("the first rule at or after `start` whose header part matches, or hotdrops"), but looks at
/// few rules instead of all of them. Immutable once built; plain arrays, no classes.
///
/// Structure (see docs/classifier.md): tuple space search with TupleMerge-style merged tuples.
/// Every rule is placed in exactly one hash table keyed on a prefix of its source address, a
/// prefix of its destination address and (optionally) its protocol. A table's prefix lengths
/// are at most the rule's own, so a packet that matches the rule hashes to the rule's bucket:
/// the tables only narrow candidates soundly, and `CompiledRule.matches` decides each candidate
/// (interfaces, inversions, fragments, ports, hotdrop). Buckets hold rule indices in ascending
/// order; tables are probed in order of their smallest rule index, and the probing stops once
/// the best index found so far is below the next table's smallest index.
///
/// Cost per lookup: one multiply-shift hash and a short probe per table visited, plus one
/// `matches` per candidate; no allocation. Chains under `linearThreshold` rules are scanned.
public struct CompiledChain: Sendable {
    /// Chains shorter than this are scanned linearly: a scan of a few rules is cheaper than
    /// hashing into several tables.
    public static let linearThreshold = 16
    /// A rule whose prefix is at most this many bits longer than a table's (per address) may
    /// join that table; larger values mean fewer tables but longer buckets.
    public static let mergeSlack = 8
    /// A merged table whose bucket grows past this splits (see `build`).
    public static let collisionLimit = 16

    @usableFromInline var rules: [CompiledRule]
    @usableFromInline var tables: [TupleTable]
    @usableFromInline var slots: [Slot]
    /// Rule indices, bucket after bucket, each bucket ascending.
    @usableFromInline var indices: [Int32]

    @usableFromInline
    struct TupleTable: Sendable {
        @usableFromInline var srcMask: UInt32
        @usableFromInline var dstMask: UInt32
        @usableFromInline var useProto: Bool
        @usableFromInline var slotBase: Int32
        /// Slot count - 1 (a power of two minus one).
        @usableFromInline var slotMask: UInt32
        @usableFromInline var minIndex: Int32
        @usableFromInline var maxIndex: Int32
        @usableFromInline var srcLen: UInt8
        @usableFromInline var dstLen: UInt8
    }

    /// An open-addressing slot; `count == 0` marks an empty slot.
    @usableFromInline
    struct Slot: Sendable {
        @usableFromInline var key: UInt64
        @usableFromInline var proto: UInt8
        @usableFromInline var start: Int32
        @usableFromInline var count: Int32
    }

    /// `linearBelow`: chains with fewer rules are scanned (tests pass 0 to force tables).
    public init(_ rules: [CompiledRule], linearBelow: Int = CompiledChain.linearThreshold) {
        self.rules = rules
        tables = []
        slots = []
        indices = []
        guard rules.count >= max(linearBelow, 1) else { return }
        build()
    }

    /// Number of hash tables (0 when the chain is scanned linearly).
    public var tableCount: Int { tables.count }
    public var ruleCount: Int { rules.count }
    /// Bytes held by the compiled structure (not counting the rules themselves).
    public var structureBytes: Int {
        tables.count * MemoryLayout<TupleTable>.stride + slots.count * MemoryLayout<Slot>.stride
            + indices.count * MemoryLayout<Int32>.stride
    }
    /// The longest bucket (candidates a lookup may check in one table).
    public var longestBucket: Int { slots.reduce(0) { max($0, Int($1.count)) } }

    @inlinable
    static func prefixMask(_ len: Int) -> UInt32 { len == 0 ? 0 : ~UInt32(0) << UInt32(32 - len) }

    @inlinable
    static func hash(_ key: UInt64, _ proto: UInt8) -> UInt32 {
        let h = (key ^ (UInt64(proto) &* 0xff51_afd7_ed55_8ccd)) &* 0x9e37_79b9_7f4a_7c15
        return UInt32(truncatingIfNeeded: h >> 32)
    }

    /// The lengths a rule can be hashed on: an inverted or non-prefix part only contributes the
    /// prefix it surely fixes (a packet matching the rule agrees with `net` on those bits).
    static func tuple(of r: CompiledRule) -> (src: Int, dst: Int, proto: Bool) {
        let s = r.srcInvert ? 0 : (~r.srcMask).leadingZeroBitCount
        let d = r.dstInvert ? 0 : (~r.dstMask).leadingZeroBitCount
        return (s, d, r.proto != 0 && !r.protoInvert)
    }

    private mutating func build() {
        // 1. Assign each rule to a table (TupleMerge): a table with lengths <= the rule's, within
        //    `mergeSlack` bits on each address and the same protocol use; else a new table whose
        //    lengths are the rule's rounded down to a multiple of `mergeSlack`. Rules are taken by
        //    descending specificity of their exact tuple, most common tuple first, so the big
        //    groups create the tables.
        var tupleCount: [Int: Int] = [:]
        let ruleTuples = rules.map(Self.tuple(of:))
        func code(_ t: (src: Int, dst: Int, proto: Bool)) -> Int { t.src << 8 | t.dst << 1 | (t.proto ? 1 : 0) }
        for t in ruleTuples { tupleCount[code(t), default: 0] += 1 }
        let order = tupleCount.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key > $1.key }.map(\.key)
        var tableOf: [Int: Int] = [:]   // exact tuple code -> table number
        var specs: [(src: Int, dst: Int, proto: Bool)] = []
        var specIndex: [Int: Int] = [:]  // spec code -> table number
        func table(_ t: (src: Int, dst: Int, proto: Bool)) -> Int {
            if let i = specIndex[code(t)] { return i }
            specs.append(t)
            specIndex[code(t)] = specs.count - 1
            return specs.count - 1
        }
        for c in order {
            let s = c >> 8, d = (c >> 1) & 0x7f, p = c & 1 == 1
            var best = -1, bestScore = -1
            for (ti, t) in specs.enumerated() where t.proto == p && t.src <= s && t.dst <= d
                && s - t.src <= Self.mergeSlack && d - t.dst <= Self.mergeSlack {
                let score = t.src + t.dst
                if score > bestScore { best = ti; bestScore = score }
            }
            tableOf[c] = best >= 0 ? best : table((s - s % Self.mergeSlack, d - d % Self.mergeSlack, p))
        }
        // Collision limit (TupleMerge): a bucket longer than `collisionLimit` in a merged table
        // sends the exact tuples that were rounded into it to tables of their own lengths. A
        // few passes, each linear in the rules.
        struct BucketKey: Hashable { var table: Int; var key: UInt64; var proto: UInt8 }
        func bucketKey(_ i: Int) -> BucketKey {
            let ti = tableOf[code(ruleTuples[i])]!, t = specs[ti], r = rules[i]
            return BucketKey(table: ti, key: UInt64(r.srcNet & Self.prefixMask(t.src)) << 32 | UInt64(r.dstNet & Self.prefixMask(t.dst)),
                             proto: t.proto ? r.proto : 0)
        }
        for _ in 0..<3 {
            var sizes: [BucketKey: Int] = [:]
            for i in rules.indices { sizes[bucketKey(i), default: 0] += 1 }
            var split = Set<Int>()
            for i in rules.indices {
                let c = code(ruleTuples[i])
                if specs[tableOf[c]!] != ruleTuples[i] && sizes[bucketKey(i)]! > Self.collisionLimit { split.insert(c) }
            }
            if split.isEmpty { break }
            for c in split { tableOf[c] = table((c >> 8, (c >> 1) & 0x7f, c & 1 == 1)) }
        }

        // 2. Per table, group rules by key; buckets keep rule order (ascending index).
        struct Key: Hashable { var key: UInt64; var proto: UInt8 }
        var buckets = [[Key: [Int32]]](repeating: [:], count: specs.count)
        var keyOrder = [[Key]](repeating: [], count: specs.count)
        var minIdx = [Int32](repeating: .max, count: specs.count)
        var maxIdx = [Int32](repeating: -1, count: specs.count)
        for (i, r) in rules.enumerated() {
            let ti = tableOf[code(ruleTuples[i])]!
            let t = specs[ti]
            let k = Key(key: UInt64(r.srcNet & Self.prefixMask(t.src)) << 32 | UInt64(r.dstNet & Self.prefixMask(t.dst)),
                        proto: t.proto ? r.proto : 0)
            if buckets[ti][k] == nil { keyOrder[ti].append(k) }
            buckets[ti][k, default: []].append(Int32(i))
            minIdx[ti] = min(minIdx[ti], Int32(i))
            maxIdx[ti] = max(maxIdx[ti], Int32(i))
        }

        // 3. Lay the tables out: open addressing, load factor <= 1/2, linear probing.
        for ti in specs.indices where !keyOrder[ti].isEmpty {
            let n = keyOrder[ti].count
            var size = 2
            while size < 2 * n { size <<= 1 }
            let base = slots.count
            slots.append(contentsOf: repeatElement(Slot(key: 0, proto: 0, start: 0, count: 0), count: size))
            for k in keyOrder[ti] {
                let list = buckets[ti][k]!
                var s = Int(Self.hash(k.key, k.proto)) & (size - 1)
                while slots[base + s].count != 0 { s = (s + 1) & (size - 1) }
                slots[base + s] = Slot(key: k.key, proto: k.proto, start: Int32(indices.count), count: Int32(list.count))
                indices.append(contentsOf: list)
            }
            let t = specs[ti]
            tables.append(TupleTable(srcMask: Self.prefixMask(t.src), dstMask: Self.prefixMask(t.dst), useProto: t.proto,
                                     slotBase: Int32(base), slotMask: UInt32(size - 1),
                                     minIndex: minIdx[ti], maxIndex: maxIdx[ti], srcLen: UInt8(t.src), dstLen: UInt8(t.dst)))
        }
        tables.sort { $0.minIndex < $1.minIndex }
    }

    /// The first rule at or after `start` whose header part matches (or hotdrops): the same
    /// answer as `LinearClassifier.firstMatch(rules, from: start, f)`.
    @inlinable
    public func firstMatch(from start: Int, _ f: PacketFields) -> (index: Int, result: MatchResult)? {
        if tables.isEmpty { return LinearClassifier.firstMatch(rules, from: start, f) }
        if start >= rules.count { return nil }
        var best = Int32.max
        var bestResult = MatchResult.noMatch
        let from = Int32(clamping: max(start, 0))
        return rules.withUnsafeBufferPointer { rules in
            tables.withUnsafeBufferPointer { tables in
                slots.withUnsafeBufferPointer { slots in
                    indices.withUnsafeBufferPointer { indices in
                        for t in tables {
                            // Tables are sorted by smallest index: none after this one can win.
                            if t.minIndex >= best { break }
                            if t.maxIndex < from { continue }
                            let key = UInt64(f.source & t.srcMask) << 32 | UInt64(f.destination & t.dstMask)
                            let proto = t.useProto ? f.proto : 0
                            var s = Self.hash(key, proto) & t.slotMask
                            while true {
                                let slot = slots[Int(t.slotBase) + Int(s)]
                                if slot.count == 0 { break }
                                if slot.key == key && slot.proto == proto {
                                    var lo = Int(slot.start)
                                    let hi = lo + Int(slot.count)
                                    if slot.count > 8 && indices[lo] < from {
                                        // First position with index >= from.
                                        var a = lo, b = hi
                                        while a < b {
                                            let m = (a + b) >> 1
                                            if indices[m] < from { a = m + 1 } else { b = m }
                                        }
                                        lo = a
                                    }
                                    while lo < hi {
                                        let i = indices[lo]
                                        if i >= best { break }
                                        if i >= from {
                                            let r = rules[Int(i)].matches(f)
                                            if r != .noMatch { best = i; bestResult = r; break }
                                        }
                                        lo += 1
                                    }
                                    break
                                }
                                s = (s + 1) & t.slotMask
                            }
                        }
                        return best == .max ? nil : (Int(best), bestResult)
                    }
                }
            }
        }
    }
}
