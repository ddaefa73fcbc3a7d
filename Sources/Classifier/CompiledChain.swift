import Wire

/// A chain compiled for lookup: answers exactly what `LinearClassifier.firstMatch` answers
/// ("the first rule at or after `start` whose header part matches, or hotdrops"), but looks at
/// few rules instead of all of them. Immutable once built; plain arrays, no classes.
///
/// Two structures (see docs/classifier.md), each sound alone: bit vectors (`BitVectors`, chains
/// of up to `bitVectorRules` rules whose `estimatedCosts` favour them) or a cut tree (`CutTree`,
/// the others), which answer every packet but a first fragment too short for its ports, and
/// tuple tables, which answer those and every packet of a chain whose tree would pass its budget.
///
/// The tuple tables: tuple space search with TupleMerge-style merged tuples.
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
    /// Packets staged together by `firstMatches`.
    public static let burstStage = 16
    /// Packets `firstMatches` walks down the cut tree together.
    public static let treeBurst = 16
    /// Chains with at least this many rules stage `firstMatches` bursts. Below it the chain's
    /// arrays sit in L2/L3 and the staging loads only add work (acl1_10k: 287-295 ns per packet
    /// staged against 247-259 unstaged; acl1_100k: 364 against 530-535, same processes).
    public static let burstStageRules = 32_768
    /// Chains with fewer tables than this get no prefilter (see `buildPrefilter`).
    public static let filterTables = 4
    /// Chains with more hash keys than this get no pair filters (see `buildPrefilter`).
    public static let pairFilterKeys = 32_768

    @usableFromInline var rules: [CompiledRule]
    @usableFromInline var tables: [TupleTable]
    @usableFromInline var slots: [Slot]
    /// Bucket entries (rule index and a port box), bucket after bucket, each bucket ascending.
    @usableFromInline var entries: [Entry]
    /// The prefilter (see `buildPrefilter`): rows of `words` words, bit t of word t/64 = table
    /// t (tables in order of smallest index). All rows live in `filter`, region after region.
    @usableFromInline var filter: [UInt64] = []
    @usableFromInline var layout = FilterLayout()
    /// `firstMatches` stages its bursts (big chains only, see `burstStageRules`).
    @usableFromInline var stagedBursts = false
    /// The cut tree (see `CutTree`), answering for every packet but a truncated first fragment;
    /// empty (`hasTree` false) for scanned chains and when its build exceeds the budget.
    @usableFromInline var tree = CutTree()
    @usableFromInline var hasTree = false
    /// Chains of at most `bitVectorRules` rules: aggregated bit vectors (see `BitVectors`)
    /// instead of the cut tree, answering for the same packets.
    @usableFromInline var vectors = BitVectors()
    @usableFromInline var hasVectors = false
    /// For chains that could have either: the estimated ns per lookup of bit vectors and of
    /// the cut tree (`estimatedCosts`); the cheaper one was kept.
    public private(set) var structureCosts: (vectors: Double, tree: Double)?

    /// Where each region of `filter` starts (in words) and how it is indexed.
    @usableFromInline
    struct FilterLayout: Sendable {
        /// 0: no prefilter (every table is a candidate).
        @usableFromInline var words = 0
        /// Top `cellBits` bits of source and of destination, joint: cell = s << cellBits | d.
        @usableFromInline var cellBits: UInt32 = 0
        @usableFromInline var cell = 0
        /// Top `sideBits` bits of the source; of the destination.
        @usableFromInline var sideBits: UInt32 = 0
        @usableFromInline var src = 0, dst = 0
        /// Protocol value (256 rows).
        @usableFromInline var proto = 0
        /// Hashed joint top 16 bits (and top 24 bits) of both addresses; `mask` is rows - 1.
        @usableFromInline var pair16 = 0, pair16Mask: UInt32 = 0
        @usableFromInline var pair24 = 0, pair24Mask: UInt32 = 0
        /// One row each: the tables the pair16 / pair24 filters cannot speak for (a length
        /// under 16 / under 24); they always pass that filter.
        @usableFromInline var pass16 = 0, pass24 = 0
        init() {}
    }

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

    /// A rule in a bucket: its index and a box (source and destination prefix, port ranges)
    /// that holds every packet the rule matches. Inverted parts and non-contiguous masks get
    /// the whole range, so the box is a superset of the rule; `matches` decides the candidates
    /// inside it. The box is what a bucket scan compares, so the 88-byte rule is only loaded for
    /// rules that are nearly certain to match: rules sharing a bucket mostly differ in ports or
    /// in prefix bits below the table's lengths.
    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var index: Int32
        @usableFromInline var sportLo: UInt16, sportSpan: UInt16
        @usableFromInline var dportLo: UInt16, dportSpan: UInt16
        @usableFromInline var srcNet: UInt32, srcMask: UInt32
        @usableFromInline var dstNet: UInt32, dstMask: UInt32

        init(_ i: Int, _ r: CompiledRule) {
            index = Int32(i)
            (sportLo, sportSpan, dportLo, dportSpan) = r.portBox
            srcMask = r.srcInvert ? 0 : r.srcMask
            srcNet = r.srcNet & srcMask
            dstMask = r.dstInvert ? 0 : r.dstMask
            dstNet = r.dstNet & dstMask
        }

        /// The packet is in the box (ports only when it has them: without an L4 header a port
        /// rule may still hotdrop, so `anyPorts` is then true). Branch-free.
        @inlinable
        func contains(_ f: PacketFields, anyPorts: Bool) -> Bool {
            @inline(__always) func bit(_ b: Bool) -> UInt8 { unsafeBitCast(b, to: UInt8.self) }
            let ports = bit(f.sourcePort &- sportLo <= sportSpan) & bit(f.destinationPort &- dportLo <= dportSpan)
            return (bit((f.source & srcMask) == srcNet) & bit((f.destination & dstMask) == dstNet) & (ports | bit(anyPorts))) != 0
        }
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
        self.init(rules, linearBelow: linearBelow, mergeSlack: Self.mergeSlack, collisionLimit: Self.collisionLimit,
                  pairFilterKeys: Self.pairFilterKeys)
    }

    /// The tuning knobs, for tests and experiments (`mergeSlack` 0: one table per exact tuple).
    /// `tree` false: tuple tables only; `treeBudget`: nodes + entries the cut tree may use;
    /// `treeLeafLimit`: rules per leaf its build stops at (default by size, see `CutTree`);
    /// `treeSeparate`: a forest even when one tree would fit the budget; `bitVectorRules`:
    /// chains of at most this many rules may get bit vectors instead of a tree (0: never);
    /// `byCost`: they get whichever of the two `estimatedCosts` finds cheaper (false: bit
    /// vectors whenever allowed); `vectorOrder`: where the vectors put the rules' bits (nil: the
    /// order the fewest blocks pass, see `BitVectors`); `vectorBlocksInPairs`: whether their
    /// lookups take blocks two at a time (nil: by the sample, see `BitVectors.pairs`);
    /// `treeCompact`: whether the tree's leaves are `CutTree.CompactGroup`s (nil: as
    /// `CutTree.compactLayout` decides); `treeLongLeafBytes`: past this size one tree is built
    /// again with long leaves (`CutTree.longLeaf`).
    public init(_ rules: [CompiledRule], linearBelow: Int, mergeSlack: Int, collisionLimit: Int, pairFilterKeys: Int,
                burstStageRules: Int = CompiledChain.burstStageRules, tree useTree: Bool = true,
                treeBudget: Int? = nil, treeLeafLimit: Int? = nil, treeSeparate: Bool = false,
                bitVectorRules: Int = CompiledChain.bitVectorRules, byCost: Bool = true, vectorOrder: BitVectorOrder? = nil,
                vectorBlocksInPairs: Bool? = nil, treeCompact: Bool? = nil, treeLongLeafBytes: Int = CutTree.longLeafBytes) {
        self.rules = rules
        tables = []
        slots = []
        entries = []
        guard rules.count >= max(linearBelow, 1) else { return }
        build(mergeSlack: mergeSlack, collisionLimit: collisionLimit)
        buildPrefilter(pairFilterKeys: pairFilterKeys)
        // Packets drawn from the rules: the vectors pick their order by them, and the choice
        // between vectors and tree is estimated on them. One per rule up to 1,024 (with 256,
        // one per four rules at 1k, the order chosen was not the one the traces bear out on
        // ClassBench acl2/acl3/acl4/ipc1_1k; docs/classifier.md, "Ninth pass").
        let samples = rules.count <= bitVectorRules ? Self.samplePackets(rules, count: 1024) : []
        var v = rules.count <= bitVectorRules
            ? BitVectors(rules, samples: samples, order: vectorOrder, inPairs: vectorBlocksInPairs) : nil
        var t = useTree && (v == nil || byCost)
            ? CutTree(rules, budget: treeBudget ?? Self.treeBudget(rules.count), leafLimit: treeLeafLimit, separate: treeSeparate,
                      compact: treeCompact, longLeafBytes: treeLongLeafBytes)
            : nil
        if byCost, let vv = v, let tt = t {
            let costs = Self.estimatedCosts(samples, vv, tt)
            structureCosts = costs
            if costs.vectors <= costs.tree { t = nil } else { v = nil }
        }
        if let v {
            vectors = v
            hasVectors = true
        } else if let t {
            tree = t
            hasTree = true
        }
        stagedBursts = !hasTree && !hasVectors && layout.words > 0 && rules.count >= burstStageRules
    }

    /// Chains of at most this many rules get bit vectors instead of a cut tree when
    /// `estimatedCosts` finds them cheaper.
    public static let bitVectorRules = 2048

    /// Estimated ns per lookup of bit vectors and of a cut tree (or forest) for the same chain,
    /// over packets drawn from the chain's own rules (`samplePackets`): the vectors cost a fixed
    /// part plus each 64-rule block whose words they AND (7 independent loads); the tree a fixed
    /// part plus each node it descends (a load that waits for the one before) and each leaf
    /// entry it looks at. The constants are a least-squares fit over the 11 ClassBench sets of up
    /// to 1k rules that load (acl1_100, acl1-5_1k, fw1/3/5_1k, ipc1-2_1k), each measured both
    /// ways on the 2-core test machine (docs/classifier.md, "Eighth pass"): vectors 14 + 8 per block,
    /// tree 17.5 + 4.1 per node + 1 per entry. A build-time estimate, not a measurement: the
    /// same rules always get the same structure.
    static func estimatedCosts(_ samples: [PacketFields], _ vectors: BitVectors, _ tree: CutTree) -> (vectors: Double, tree: Double) {
        guard !samples.isEmpty else { return (0, 0) }
        var blocks = 0, nodes = 0, entries = 0
        for f in samples {
            blocks += vectors.walk(f).blocks
            let w = tree.walk(f)
            nodes += w.depth
            entries += w.scanned
        }
        let n = Double(samples.count)
        return (14 + 8 * Double(blocks) / n, 17.5 + 4.1 * Double(nodes) / n + Double(entries) / n)
    }

    /// Up to `count` packets, each inside the box of a rule (rules evenly spaced over the
    /// chain): every field a pseudo-random value in the rule's range (a fixed sequence, so the
    /// same rules give the same packets), TCP where the rule leaves the protocol open.
    static func samplePackets(_ rules: [CompiledRule], count: Int) -> [PacketFields] {
        guard !rules.isEmpty, count > 0 else { return [] }
        var g = SplitMix64(seed: 0x9e37_79b9_7f4a_7c15)
        func pick(_ r: (lo: UInt32, hi: UInt32)) -> UInt32 {
            r.lo &+ UInt32(truncatingIfNeeded: g.next() % (UInt64(r.hi) - UInt64(r.lo) + 1))
        }
        let step = max(1, rules.count / count)
        return stride(from: 0, to: rules.count, by: step).prefix(count).map { i in
            let box = CutTree.TreeEntry(rules[i])
            var f = PacketFields()
            f.source = pick(box.range(0))
            f.destination = pick(box.range(1))
            f.sourcePort = UInt16(truncatingIfNeeded: pick(box.range(2)))
            f.destinationPort = UInt16(truncatingIfNeeded: pick(box.range(3)))
            f.proto = box.protoMask == 0 ? 6 : box.proto
            f.hasL4 = true
            return f
        }
    }

    /// Nodes + leaf entries a cut tree may take: 16 per rule plus a floor for small chains.
    public static func treeBudget(_ rules: Int) -> Int { 16 * rules + 65_536 }

    /// Whether the cut tree can answer for the packet: all but a first fragment too short for
    /// its ports (a port rule may hotdrop it; the tree descends by ports it does not have).
    @inlinable @inline(__always)
    static func treeUsable(_ f: PacketFields) -> Bool { f.hasL4 || !f.l4Truncated || f.laterFragment }

    /// Diagnostics: the cut tree's walk for `f` (nodes descended, leaf entries looked at, trees
    /// whose descent knew where it stops before the leaf's load; see `CutTree.walk`).
    public func treeWalk(_ f: PacketFields) -> (depth: Int, scanned: Int, early: Int)? { hasTree ? tree.walk(f) : nil }

    /// Diagnostics: the bit vectors' lookup for `f` (blocks ANDed, boxes holding the packet).
    public func vectorWalk(_ f: PacketFields) -> (blocks: Int, boxes: Int)? { hasVectors ? vectors.walk(f) : nil }

    /// Whether the chain has bit vectors (see `BitVectors`), and their size: classes (bit
    /// vectors of the rules), chunks looked up per packet (of 7), bytes.
    public var vectorSummary: (classes: Int, chunks: Int, bytes: Int)? {
        hasVectors ? (vectors.classes, vectors.chunks, vectors.bytes) : nil
    }

    /// The order the bit vectors put the rules' bits in (`BitVectorOrder`), if the chain has them.
    public var vectorOrder: BitVectorOrder? { hasVectors ? vectors.chosenOrder : nil }

    /// Diagnostics: over the packets drawn from the rules (`samplePackets`), the bit vectors'
    /// blocks passed per lookup and the share of lookups passing more than one.
    public var vectorSampleBlocks: (perLookup: Double, multi: Double)? {
        guard hasVectors, vectors.sampleCounts.samples > 0 else { return nil }
        let c = vectors.sampleCounts, n = Double(c.samples)
        return (Double(c.passed) / n, Double(c.multi) / n)
    }

    /// Diagnostics: whether the bit vectors take blocks two at a time (see `BitVectors.pairs`).
    public var vectorPairs: Bool { hasVectors && vectors.pairs }

    /// Whether the chain has a cut tree (see `CutTree`), and its shape (`trees` > 1: a forest,
    /// the rules separated by which addresses they leave wide).
    public var treeSummary: (nodes: Int, entries: Int, leaves: Int, depth: Int, largestLeaf: Int, trees: Int, compact: Bool)? {
        hasTree ? (tree.nodes.count, tree.leafEntries, tree.leaves, tree.depth, tree.largestLeaf, tree.roots.count, tree.compact) : nil
    }

    /// Number of hash tables (0 when the chain is scanned linearly).
    public var tableCount: Int { tables.count }
    public var ruleCount: Int { rules.count }
    /// Bytes held by the compiled structure (not counting the rules themselves).
    public var structureBytes: Int {
        tables.count * MemoryLayout<TupleTable>.stride + slots.count * MemoryLayout<Slot>.stride
            + entries.count * MemoryLayout<Entry>.stride + filter.count * MemoryLayout<UInt64>.stride + tree.bytes
            + vectors.bytes
    }
    /// The longest bucket (candidates a lookup may check in one table).
    public var longestBucket: Int { slots.reduce(0) { max($0, Int($1.count)) } }

    @inlinable
    static func prefixMask(_ len: Int) -> UInt32 { len == 0 ? 0 : ~UInt32(0) << UInt32(32 - len) }

    @inlinable
    static func hash(_ key: UInt64, _ proto: UInt8) -> UInt32 {
        // Fold the source half (key bits 32..63) onto the destination half before the
        // multiply: bits 32.. of a product depend only on the factor's bits below them, and a
        // masked destination leaves those low bits zero, so without the fold every key with
        // the same destination prefix landed on one slot run (linear probing then walked it).
        var h = key ^ UInt64(proto) << 40
        h ^= h >> 29
        h &*= 0x9e37_79b9_7f4a_7c15
        return UInt32(truncatingIfNeeded: h >> 32)
    }

    /// Hash of (source part << 24 | destination part) for the pair filters.
    @inlinable
    static func pairHash(_ parts: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((parts ^ parts >> 29) &* 0x9e37_79b9_7f4a_7c15) >> 32)
    }

    /// The lengths a rule can be hashed on: an inverted or non-prefix part only contributes the
    /// prefix it surely fixes (a packet matching the rule agrees with `net` on those bits).
    static func tuple(of r: CompiledRule) -> (src: Int, dst: Int, proto: Bool) {
        let s = r.srcInvert ? 0 : (~r.srcMask).leadingZeroBitCount
        let d = r.dstInvert ? 0 : (~r.dstMask).leadingZeroBitCount
        return (s, d, r.proto != 0 && !r.protoInvert)
    }

    private mutating func build(mergeSlack: Int, collisionLimit: Int) {
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
                && s - t.src <= mergeSlack && d - t.dst <= mergeSlack {
                let score = t.src + t.dst
                if score > bestScore { best = ti; bestScore = score }
            }
            tableOf[c] = best >= 0 ? best : table(mergeSlack == 0 ? (s, d, p) : (s - s % mergeSlack, d - d % mergeSlack, p))
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
                if specs[tableOf[c]!] != ruleTuples[i] && sizes[bucketKey(i)]! > collisionLimit { split.insert(c) }
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
                slots[base + s] = Slot(key: k.key, proto: k.proto, start: Int32(entries.count), count: Int32(list.count))
                entries.append(contentsOf: list.map { Entry(Int($0), rules[Int($0)]) })
            }
            let t = specs[ti]
            tables.append(TupleTable(srcMask: Self.prefixMask(t.src), dstMask: Self.prefixMask(t.dst), useProto: t.proto,
                                     slotBase: Int32(base), slotMask: UInt32(size - 1),
                                     minIndex: minIdx[ti], maxIndex: maxIdx[ti], srcLen: UInt8(t.src), dstLen: UInt8(t.dst)))
        }
        tables.sort { $0.minIndex < $1.minIndex }
    }

    /// The prefilter: per packet, a few row loads ANDed give the tables worth probing. Each
    /// row is a set of tables; a table's bit is set in every row a packet that hits one of its
    /// keys can select, so the filter never drops a table that holds a matching rule (a key
    /// fixes the top `min(len, bits)` bits of an address, i.e. a run of rows). Rows:
    /// - cell: top `cellBits` of source and destination jointly;
    /// - src, dst: top `sideBits` of each address alone;
    /// - proto: the protocol (tables that do not key on it: every row);
    /// - pair16, pair24: a hash of the top 16 (24) bits of both addresses, for tables whose
    ///   lengths are both at least 16 (24); collisions only add tables; the other tables are
    ///   in the `pass` row and always pass.
    /// Sizes grow with the chain (`cellBits`, `sideBits`, pair rows ~ 4 per key), so a
    /// 20-rule chain carries a few kB, not the megabytes a 100k-rule chain uses.
    private mutating func buildPrefilter(pairFilterKeys: Int) {
        // A chain of a few tables probes them all for less than the filter's row loads cost
        // (acl1's first 100 rules: one table).
        guard tables.count >= Self.filterTables else { return }
        var l = FilterLayout()
        let words = (tables.count + 63) / 64
        l.words = words
        let lg = Int.bitWidth - rules.count.leadingZeroBitCount   // bits in the rule count
        l.sideBits = UInt32(min(16, max(8, lg + 1)))
        l.cellBits = UInt32(min(8, max(4, (lg + 1) / 2)))
        struct Key { var src: UInt32; var dst: UInt32; var proto: UInt8 }
        var keys = [[Key]](repeating: [], count: tables.count)
        for (ti, t) in tables.enumerated() {
            for s in Int(t.slotBase)..<(Int(t.slotBase) + Int(t.slotMask) + 1) where slots[s].count != 0 {
                keys[ti].append(Key(src: UInt32(truncatingIfNeeded: slots[s].key >> 32),
                                    dst: UInt32(truncatingIfNeeded: slots[s].key), proto: slots[s].proto))
            }
        }
        var pairs16 = Set<UInt64>(), pairs24 = Set<UInt64>()   // table << 48 | src part << 24 | dst part
        // The pair filters pay while the slots they save probing are cache-resident; on big
        // chains (over `pairFilterKeys` keys) every row is itself a cache miss, and the 16-bit
        // side rows already leave about one table to probe (acl1_100k: 1.2 probes without them,
        // 1.0 with, and slower). Then they are one always-pass row each.
        let usePairs = keys.reduce(0) { $0 + $1.count } <= pairFilterKeys
        for (ti, t) in tables.enumerated() where usePairs {
            if t.srcLen >= 16 && t.dstLen >= 16 {
                for k in keys[ti] { pairs16.insert(UInt64(ti) << 48 | UInt64(k.src >> 16) << 24 | UInt64(k.dst >> 16)) }
            }
            if t.srcLen >= 24 && t.dstLen >= 24 {
                for k in keys[ti] { pairs24.insert(UInt64(ti) << 48 | UInt64(k.src >> 8) << 24 | UInt64(k.dst >> 8)) }
            }
        }
        func rows(_ n: Int) -> Int { var r = 256; while r < 4 * n { r <<= 1 }; return r }
        let p16 = rows(pairs16.count), p24 = rows(pairs24.count)
        l.pair16Mask = UInt32(p16 - 1)
        l.pair24Mask = UInt32(p24 - 1)
        var at = 0
        func region(_ rows: Int) -> Int { defer { at += rows * words }; return at }
        l.cell = region(1 << (2 * l.cellBits))
        l.src = region(1 << l.sideBits)
        l.dst = region(1 << l.sideBits)
        l.proto = region(256)
        l.pair16 = region(p16)
        l.pair24 = region(p24)
        l.pass16 = region(1)
        l.pass24 = region(1)
        var fl = [UInt64](repeating: 0, count: at)
        for (ti, t) in tables.enumerated() {
            let w = ti >> 6, bit = UInt64(1) << UInt64(ti & 63)
            // Rows a key covers on one address: its top `bits` bits, then every value of the
            // bits below the table's length.
            func span(_ len: UInt8, _ bits: UInt32) -> UInt32 { UInt32(1) << (bits - min(UInt32(len), bits)) }
            let cs = span(t.srcLen, l.cellBits), cd = span(t.dstLen, l.cellBits)
            let ss = span(t.srcLen, l.sideBits), sd = span(t.dstLen, l.sideBits)
            var cells = Set<UInt32>(), srcs = Set<UInt32>(), dsts = Set<UInt32>(), protos = Set<UInt8>()
            for k in keys[ti] {
                cells.insert((k.src >> (32 - l.cellBits)) << l.cellBits | k.dst >> (32 - l.cellBits))
                srcs.insert(k.src >> (32 - l.sideBits))
                dsts.insert(k.dst >> (32 - l.sideBits))
                protos.insert(k.proto)
            }
            for c in cells {
                let a0 = c >> l.cellBits, b0 = c & ((1 << l.cellBits) - 1)
                for a in a0..<(a0 + cs) { for b in b0..<(b0 + cd) { fl[l.cell + Int(a << l.cellBits | b) * words + w] |= bit } }
            }
            for a in srcs { for v in a..<(a + ss) { fl[l.src + Int(v) * words + w] |= bit } }
            for a in dsts { for v in a..<(a + sd) { fl[l.dst + Int(v) * words + w] |= bit } }
            for p in 0..<256 where !t.useProto || protos.contains(UInt8(p)) { fl[l.proto + p * words + w] |= bit }
            if !usePairs || t.srcLen < 16 || t.dstLen < 16 { fl[l.pass16 + w] |= bit }
            if !usePairs || t.srcLen < 24 || t.dstLen < 24 { fl[l.pass24 + w] |= bit }
        }
        for p in pairs16 {
            let ti = Int(p >> 48)
            fl[l.pair16 + Int(Self.pairHash(p & 0xffff_ffff_ffff) & l.pair16Mask) * words + ti >> 6] |= 1 << UInt64(ti & 63)
        }
        for p in pairs24 {
            let ti = Int(p >> 48)
            fl[l.pair24 + Int(Self.pairHash(p & 0xffff_ffff_ffff) & l.pair24Mask) * words + ti >> 6] |= 1 << UInt64(ti & 63)
        }
        filter = fl
        layout = l
    }

    /// The first rule at or after `start` whose header part matches (or hotdrops): the same
    /// answer as `LinearClassifier.firstMatch(rules, from: start, f)`.
    @inlinable
    public func firstMatch(from start: Int, _ f: PacketFields) -> (index: Int, result: MatchResult)? {
        inlinedFirstMatch(from: start, f)
    }

    /// `firstMatch`, always inlined into its caller. For a caller that holds the chain in a
    /// class's `let` property (the engine's chain boxes): a call there passed the method a
    /// bitwise copy of this whole struct (353 bytes, a `memcpy` per lookup, 10% of `sluice bench
    /// --stage classify` at acl1_100), inlined it reads the fields in place. Not the default:
    /// forced into `classbench`'s loops it made acl1_100 lookups 0.5-1.5 ns slower.
    @inlinable @inline(__always)
    public func inlinedFirstMatch(from start: Int, _ f: PacketFields) -> (index: Int, result: MatchResult)? {
        if tables.isEmpty { return LinearClassifier.firstMatch(rules, from: start, f) }
        if start >= rules.count { return nil }
        let from = Int32(clamping: max(start, 0))
        // The tree descends by the ports: only a first fragment too short to hold them (a port
        // rule may hotdrop it) needs the tables.
        if hasVectors && Self.treeUsable(f) {
            return rules.withUnsafeBufferPointer { vectors.firstMatch(from: from, f, $0) }
        }
        if hasTree && Self.treeUsable(f) {
            return rules.withUnsafeBufferPointer { tree.firstMatch(from: from, f, $0) }
        }
        let l = layout
        let words = l.words
        // The packet's rows, computed once.
        let cb = l.cellBits, sb = l.sideBits
        let cellRow = l.cell &+ Int((f.source >> (32 &- cb)) << cb | f.destination >> (32 &- cb)) &* words
        let srcRow = l.src &+ Int(f.source >> (32 &- sb)) &* words
        let dstRow = l.dst &+ Int(f.destination >> (32 &- sb)) &* words
        let protoRow = l.proto &+ Int(f.proto) &* words
        let p16 = l.pair16 &+ Int(Self.pairHash(UInt64(f.source >> 16) << 24 | UInt64(f.destination >> 16)) & l.pair16Mask) &* words
        let p24 = l.pair24 &+ Int(Self.pairHash(UInt64(f.source >> 8) << 24 | UInt64(f.destination >> 8)) & l.pair24Mask) &* words
        // Without an L4 header a port rule can still hotdrop: the entries' port boxes do not apply.
        let anyPorts = !f.hasL4
        var best = Int32.max
        var bestResult = MatchResult.noMatch
        return filter.withUnsafeBufferPointer { fl in
            tables.withUnsafeBufferPointer { tables in
                slots.withUnsafeBufferPointer { slots in
                    entries.withUnsafeBufferPointer { entries in
                        rules.withUnsafeBufferPointer { rules in
                            for w in 0..<((tables.count &+ 63) >> 6) {
                                var set: UInt64
                                if words == 0 {   // no prefilter: the tables of this word, all
                                    let n = tables.count &- w << 6
                                    set = n >= 64 ? ~0 : (1 << UInt64(n)) &- 1
                                } else {
                                    set = fl[cellRow &+ w] & fl[srcRow &+ w] & fl[dstRow &+ w] & fl[protoRow &+ w]
                                        & (fl[p16 &+ w] | fl[l.pass16 &+ w]) & (fl[p24 &+ w] | fl[l.pass24 &+ w])
                                }
                                while set != 0 {
                                    let t = tables[w << 6 | set.trailingZeroBitCount]
                                    set &= set &- 1
                                    // Tables are sorted by smallest index: none after this one can win.
                                    if t.minIndex >= best { return (Int(best), bestResult) }
                                    if t.maxIndex < from { continue }
                                    let key = UInt64(f.source & t.srcMask) << 32 | UInt64(f.destination & t.dstMask)
                                    let proto = t.useProto ? f.proto : 0
                                    var s = Self.hash(key, proto) & t.slotMask
                                    while true {
                                        let slot = slots[Int(t.slotBase) &+ Int(s)]
                                        if slot.count == 0 { break }
                                        if slot.key == key && slot.proto == proto {
                                            var lo = Int(slot.start)
                                            let hi = lo &+ Int(slot.count)
                                            if slot.count > 8 && entries[lo].index < from {
                                                // First position with index >= from.
                                                var a = lo, b = hi
                                                while a < b {
                                                    let m = (a &+ b) >> 1
                                                    if entries[m].index < from { a = m &+ 1 } else { b = m }
                                                }
                                                lo = a
                                            }
                                            while lo < hi {
                                                let e = entries[lo]
                                                if e.index >= best { break }
                                                if e.index >= from && e.contains(f, anyPorts: anyPorts) {
                                                    let r = rules[Int(e.index)].matchesBranchFree(f)
                                                    if r != .noMatch { best = e.index; bestResult = r; break }
                                                }
                                                lo &+= 1
                                            }
                                            break
                                        }
                                        s = (s &+ 1) & t.slotMask
                                    }
                                }
                            }
                            return best == .max ? nil : (Int(best), bestResult)
                        }
                    }
                }
            }
        }
    }

    /// `firstMatch(from: 0, _)` for a burst of packets: `results[i]` is the answer for
    /// `packets[i]` (index -1 and `.noMatch` when nothing matches). The same answers as one
    /// `firstMatch` per packet; faster on big chains because the burst is walked in stages
    /// (filter rows and first slot, then bucket entry, then rule) that only load, so the cache
    /// misses of different packets overlap instead of being paid one after another, as DPDK's
    /// ACL does with its bursts. `results` must hold at least `packets.count` elements.
    @inlinable
    public func firstMatches(_ packets: UnsafeBufferPointer<PacketFields>,
                             into results: UnsafeMutableBufferPointer<(index: Int32, result: MatchResult)>) {
        precondition(results.count >= packets.count)
        if hasVectors {
            // One packet at a time: a lookup has no walk whose misses a burst could overlap.
            rules.withUnsafeBufferPointer { rules in
                for i in packets.indices {
                    let f = packets[i]
                    if let m = Self.treeUsable(f) ? vectors.firstMatch(from: 0, f, rules) : firstMatch(from: 0, f) {
                        results[i] = (Int32(truncatingIfNeeded: m.index), m.result)
                    } else {
                        results[i] = (-1, .noMatch)
                    }
                }
            }
            return
        }
        if hasTree {
            rules.withUnsafeBufferPointer { rules in
                var base = 0
                while base < packets.count {
                    let end = min(base &+ min(Self.treeBurst, 64), packets.count)
                    tree.firstMatches(packets, base, end, results, rules, usable: Self.treeUsable)
                    for i in base..<end where results[i].index == -2 {
                        if let m = firstMatch(from: 0, packets[i]) {
                            results[i] = (Int32(m.index), m.result)
                        } else {
                            results[i] = (-1, .noMatch)
                        }
                    }
                    base = end
                }
            }
            return
        }
        var sink: UInt64 = 0
        var base = 0
        while base < packets.count {
            let end = min(base &+ Self.burstStage, packets.count)
            if stagedBursts {
                // Stage 1: filter rows and the home slot of the first candidate table. Stage 2:
                // the first entry of that slot's bucket; stage 3: its rule. Loads only; no
                // decisions. Between stages `results[i].index` holds the slot, then the rule
                // index (nothing is allocated); the answers overwrite them below.
                filter.withUnsafeBufferPointer { fl in
                    tables.withUnsafeBufferPointer { tables in
                        slots.withUnsafeBufferPointer { slots in
                            let l = layout, cb = l.cellBits, sb = l.sideBits
                            for i in base..<end {
                                let f = packets[i]
                                let cellIndex = Int((f.source >> (32 &- cb)) << cb | f.destination >> (32 &- cb))
                                let srcIndex = Int(f.source >> (32 &- sb)), dstIndex = Int(f.destination >> (32 &- sb))
                                var set = fl[l.cell &+ cellIndex &* l.words]
                                set &= fl[l.src &+ srcIndex &* l.words]
                                set &= fl[l.dst &+ dstIndex &* l.words]
                                set &= fl[l.proto &+ Int(f.proto) &* l.words]
                                let t = tables[set == 0 ? 0 : set.trailingZeroBitCount]
                                let key = UInt64(f.source & t.srcMask) << 32 | UInt64(f.destination & t.dstMask)
                                let s = Int(t.slotBase) &+ Int(Self.hash(key, t.useProto ? f.proto : 0) & t.slotMask)
                                results[i] = (Int32(truncatingIfNeeded: s), .noMatch)
                                sink &+= slots[s].key
                            }
                            entries.withUnsafeBufferPointer { entries in
                                rules.withUnsafeBufferPointer { rules in
                                    for i in base..<end {
                                        let slot = slots[Int(results[i].index)]
                                        let e = entries[slot.count != 0 ? Int(slot.start) : 0]
                                        results[i].index = e.index
                                        sink &+= UInt64(e.srcNet)
                                    }
                                    for i in base..<end { sink &+= UInt64(rules[Int(results[i].index)].dstNet) }
                                }
                            }
                        }
                    }
                }
            }
            for i in base..<end {
                if let m = firstMatch(from: 0, packets[i]) {
                    results[i] = (Int32(m.index), m.result)
                } else {
                    results[i] = (-1, .noMatch)
                }
            }
            base = end
        }
        // Keeps the staging loads: the compiler cannot prove this never happens.
        if sink == 0x5eed_5eed_5eed_5eed, !results.isEmpty { results[0].result = results[0].result }
    }

    /// Diagnostics for `classbench` (not the lookup path): per packet, the tables the
    /// prefilter leaves, the tables probed (smallest index below the answer), buckets found,
    /// slots read and bucket entries looked at.
    public func probeStats(_ f: PacketFields) -> (candidates: Int, probed: Int, hits: Int, steps: Int, checked: Int) {
        guard !tables.isEmpty else { return (0, 0, 0, 0, 0) }
        let l = layout, words = l.words, cb = l.cellBits, sb = l.sideBits
        var cand = 0, probed = 0, hits = 0, steps = 0, checked = 0
        let best = Int32(firstMatch(from: 0, f)?.index ?? Int(Int32.max))
        for w in 0..<((tables.count + 63) >> 6) {
            let n = tables.count - w << 6
            var set = words == 0 ? (n >= 64 ? ~0 : (1 << UInt64(n)) - 1) : filter[l.cell + Int((f.source >> (32 - cb)) << cb | f.destination >> (32 - cb)) * words + w]
                & filter[l.src + Int(f.source >> (32 - sb)) * words + w] & filter[l.dst + Int(f.destination >> (32 - sb)) * words + w]
                & filter[l.proto + Int(f.proto) * words + w]
                & (filter[l.pair16 + Int(Self.pairHash(UInt64(f.source >> 16) << 24 | UInt64(f.destination >> 16)) & l.pair16Mask) * words + w]
                   | filter[l.pass16 + w])
                & (filter[l.pair24 + Int(Self.pairHash(UInt64(f.source >> 8) << 24 | UInt64(f.destination >> 8)) & l.pair24Mask) * words + w]
                   | filter[l.pass24 + w])
            cand += set.nonzeroBitCount
            while set != 0 {
                let t = tables[w << 6 | set.trailingZeroBitCount]
                set &= set - 1
                if t.minIndex > best { continue }
                probed += 1
                let key = UInt64(f.source & t.srcMask) << 32 | UInt64(f.destination & t.dstMask)
                let proto = t.useProto ? f.proto : 0
                var s = Self.hash(key, proto) & t.slotMask
                while slots[Int(t.slotBase) + Int(s)].count != 0 {
                    steps += 1
                    let slot = slots[Int(t.slotBase) + Int(s)]
                    if slot.key == key && slot.proto == proto {
                        hits += 1
                        for j in Int(slot.start)..<Int(slot.start + slot.count) where entries[j].index <= best {
                            checked += 1
                            if entries[j].contains(f, anyPorts: !f.hasL4) && rules[Int(entries[j].index)].matches(f) != .noMatch { break }
                        }
                        break
                    }
                    s = (s + 1) & t.slotMask
                }
            }
        }
        return (cand, probed, hits, steps, checked)
    }

    /// One line per table (lengths, protocol use, keys, rules, index range), for `classbench`.
    public var tableSummary: [String] {
        tables.map { t in
            let used = (Int(t.slotBase)..<(Int(t.slotBase) + Int(t.slotMask) + 1)).filter { slots[$0].count != 0 }
            let n = used.reduce(0) { $0 + Int(slots[$1].count) }
            return "/\(t.srcLen) /\(t.dstLen) proto \(t.useProto) keys \(used.count) rules \(n) index \(t.minIndex)...\(t.maxIndex)"
        }
    }

}
