/// Aggregated bit vectors (Lakshman and Stiliadis' bit-vector scheme, with Baboescu and
/// Varghese's aggregation) for chains of up to `maxRules` rules: the cut tree's boxes
/// (`CutTree.TreeEntry`), cut into chunks of the two key words (`CutTree.keys`), each chunk a
/// table from the packet's value to the set of rules whose box admits it.
///
/// Chunks: the high and the low 16 bits of the source and of the destination (a box's address
/// mask is a prefix, so it admits a range of each half), the source port and the destination
/// port (ranges), the protocol. A chunk's value selects a class (`classOf`; the protocol: 256
/// entries of 16 bits; a 16-bit chunk: 256 by its high byte in `portBlocks`, then 256 by its
/// low byte, equal runs stored once); a class is a bit vector
/// of the rules (`words`, bit r%64 of word r/64 = rule r) and its summary (`summary`, bit b set
/// when word b is not zero). A lookup is one class per chunk, the AND of their summaries, then
/// the AND of their words block by block, lowest first: no walk from node to node, and the
/// loads of the chunks do not depend on each other, so their latencies overlap. The set bits
/// are the rules whose box holds the packet, in rule order, and they are decided as the cut
/// tree's leaves decide them (an exact box is the answer, others are checked on the rule).
///
/// Chunks in which every value admits every rule are left out: their table is the class of
/// every rule at every value, so the lookup still loads it (no branch per chunk), from one
/// line that stays in cache. The cost grows with the rules
/// (a class is N bits), so this is for small chains; the cut tree takes the bigger ones.
@usableFromInline
struct BitVectors: Sendable {
    /// Rules at most: 64 blocks of 64, so that a summary is one word.
    static let maxRules = 4096

    /// The chunks' tables sit at fixed places, so a lookup loads no offset or mask per chunk:
    /// the protocol's at 0 in `classOf`; the 16-bit chunks' first levels (source high, source
    /// low, destination high, destination low, source port, destination port) at `c << 8` in
    /// `portBlocks`, each entry saying where the 256 classes of the low bytes under that high
    /// byte start in `classOf` (equal runs of 256 are stored once: such a table is a few
    /// kilobytes, not 128). A chunk left out is the class that admits every rule everywhere.
    @usableFromInline var portBlocks: [UInt32] = []
    /// Chunks left out.
    private(set) var skipped = 0
    /// Per chunk, per value: the class (global: an index into `summary`).
    @usableFromInline var classOf: [UInt16] = []
    /// Per class: bit b set when the class has a rule in block b (rules 64b..<64b+64).
    @usableFromInline var summary: [UInt64] = []
    /// Per class: `blocks` words, bit r%64 of word r/64 set when rule r's box admits the value.
    @usableFromInline var words: [UInt64] = []
    @usableFromInline var blocks = 0
    /// Per position: the rule's index in the chain (`order`), and whether that is the position
    /// itself for every rule (`identity`).
    @usableFromInline var order: [Int32] = []
    @usableFromInline var identity = true
    /// The order that gave the positions, and what its sample packets passed.
    private(set) var chosenOrder = BitVectorOrder.chain
    private(set) var sampleCounts = SampleCounts()
    /// Whether a lookup takes the blocks two at a time (`firstMatch`): when at least a fifth
    /// of the sample packets pass more than one block (ClassBench fw1_1k 0.83, ipc1_1k 0.28;
    /// acl1_1k 0.14, acl1_100 0, where pairs cost more than they save).
    @usableFromInline var pairs = false
    /// Per position: the box's flags (bit 0: exact, bit 1: has ports; `CutTree.TreeEntry`).
    @usableFromInline var flags: [UInt8] = []

    init() {}

    /// nil when there are more than `maxRules` rules, or more than 65,536 classes in all.
    /// `samples`: packets drawn from the rules (`CompiledChain.samplePackets`).
    /// `order`: where the rules' bits go (nil: the order of `BitVectorOrder.allCases` that the fewest
    /// blocks pass for packets drawn from the rules, `chosenOrder`).
    /// `inPairs`: whether lookups take blocks two at a time (nil: by the sample, `pairs`).
    init?(_ rules: [CompiledRule], samples: [PacketFields], order wanted: BitVectorOrder? = nil, inPairs: Bool? = nil) {
        guard rules.count <= Self.maxRules, !rules.isEmpty else { return nil }
        let inChain = rules.map { CutTree.TreeEntry($0) }
        let n = rules.count
        let (chosen, positions, counts) = Self.cheapestOrder(inChain, samples,
                                                             among: wanted.map { [$0] } ?? BitVectorOrder.allCases)
        chosenOrder = chosen
        sampleCounts = counts
        pairs = inPairs ?? (counts.multi * 5 >= counts.samples && counts.samples > 0)
        let boxes = positions.map { inChain[$0] }
        order = positions.map { Int32($0) }
        identity = positions == Array(0..<n)
        blocks = (n + 63) / 64
        flags = boxes.map { UInt8(truncatingIfNeeded: $0.mask[3] >> 8) }
        var full = [UInt64](repeating: ~0, count: blocks)
        if n % 64 != 0 { full[blocks - 1] = (1 << UInt64(n % 64)) - 1 }
        var ids: [[UInt64]: UInt16] = [:]
        var overflow = false
        func id(_ v: [UInt64]) -> UInt16 {
            if let known = ids[v] { return known }
            if summary.count == 1 << 16 { overflow = true; return 0 }
            let id = UInt16(summary.count)
            ids[v] = id
            var s: UInt64 = 0
            for (b, w) in v.enumerated() where w != 0 { s |= 1 << UInt64(b) }
            summary.append(s)
            words += v
            return id
        }
        let all = id(full)
        // The protocol's byte chunk at place 0: 256 entries, filled in `add`.
        classOf = [UInt16](repeating: all, count: 1 << 8)
        /// The next chunk from its vectors, value by value (`upTo`: the end of a run of values
        /// with one vector); `at`: a byte chunk's place (`classOf`), nil for a port chunk.
        var runs: [[UInt16]: UInt32] = [:]
        func add(width: Int, at: Int?, _ vectors: [(upTo: Int, vector: [UInt64])]) {
            var table: [UInt16] = []
            table.reserveCapacity(1 << width)
            if vectors.count == 1 && vectors[0].vector == full {
                skipped += 1
                table = [UInt16](repeating: all, count: 1 << width)
            } else {
                for (upTo, v) in vectors {
                    table += repeatElement(id(v), count: upTo - table.count)
                }
            }
            if let at {
                classOf.replaceSubrange((at << 8)..<((at + 1) << 8), with: table)
                return
            }
            for hi in 0..<256 {
                let run = Array(table[(hi << 8)..<((hi + 1) << 8)])
                if let at = runs[run] {
                    portBlocks.append(at)
                } else {
                    let at = UInt32(classOf.count)
                    runs[run] = at
                    portBlocks.append(at)
                    classOf += run
                }
            }
        }
        /// A byte chunk: rule r admits value v when v & mask == net (bytes of its box).
        func byteChunk(_ at: Int, lane: Int, shift: UInt32) {
            var vectors: [(upTo: Int, vector: [UInt64])] = []
            for v in 0..<256 {
                var vector = [UInt64](repeating: 0, count: blocks)
                for (r, e) in boxes.enumerated() {
                    let m = (e.mask[lane] >> shift) & 0xff, t = (e.net[lane] >> shift) & 0xff
                    if UInt32(v) & m == t { vector[r >> 6] |= 1 << UInt64(r & 63) }
                }
                if let last = vectors.last, last.vector == vector {
                    vectors[vectors.count - 1].upTo = v + 1
                } else {
                    vectors.append((v + 1, vector))
                }
            }
            add(width: 8, at: at, vectors)
        }
        /// A 16-bit chunk: rule r admits the values of a range (a port range, or the half of an
        /// address its prefix fixes); one vector per run of values between two range ends (a
        /// sweep over the ends).
        func rangeChunk(_ range: (CutTree.TreeEntry) -> (lo: Int, hi: Int)) {
            var starts = [[Int]](repeating: [], count: 65_537), ends = starts
            for (r, e) in boxes.enumerated() {
                let (lo, hi) = range(e)
                starts[lo].append(r)
                ends[hi + 1].append(r)
            }
            var vector = [UInt64](repeating: 0, count: blocks)
            var vectors: [(upTo: Int, vector: [UInt64])] = []
            for p in 0..<65_536 {
                if p > 0 && starts[p].isEmpty && ends[p].isEmpty { vectors[vectors.count - 1].upTo = p + 1; continue }
                for r in ends[p] { vector[r >> 6] &= ~(1 << UInt64(r & 63)) }
                for r in starts[p] { vector[r >> 6] |= 1 << UInt64(r & 63) }
                if let last = vectors.last, last.vector == vector {
                    vectors[vectors.count - 1].upTo = p + 1
                } else {
                    vectors.append((p + 1, vector))
                }
            }
            add(width: 16, at: nil, vectors)
        }
        byteChunk(0, lane: 3, shift: 0)
        for c in 1..<Self.slots {
            rangeChunk { e in let (lo, hi) = Self.chunkRanges(e)[c]; return (Int(lo), Int(hi)) }
        }
        if overflow { return nil }
    }

    /// The rules' positions (position -> index in the chain) in an order the chain's answer does
    /// not depend on. Two rules whose boxes do not intersect hold no packet in common, so their
    /// order is free; rules whose boxes intersect keep theirs. The rules whose boxes hold a
    /// packet pairwise intersect, so they come in chain order in any such order, and the first
    /// of them to match is the chain's answer (`firstMatch` compares each candidate's index with
    /// `from`). Among the rules whose intersecting predecessors are placed, the next is the
    /// least by `order`'s key, then by index (Kahn's topological sort; the chain's own order
    /// is the identity). O(rules^2): chains of up to `maxRules`.
    static func positions(_ boxes: [CutTree.TreeEntry], _ order: BitVectorOrder) -> [Int] {
        order == .chain ? Array(boxes.indices) : positions(boxes, order, Intersections(boxes))
    }

    /// Which rules' boxes intersect: per rule, how many earlier ones (`before`) and which later
    /// ones (`after`).
    struct Intersections {
        var before: [Int]
        var after: [[Int32]]

        init(_ boxes: [CutTree.TreeEntry]) {
            let n = boxes.count
            // Five ranges per rule (source, destination, ports, protocol), flat.
            let ranges = boxes.flatMap { e in (0..<5).map { e.range($0) } }
            before = [Int](repeating: 0, count: n)
            after = [[Int32]](repeating: [], count: n)
            for j in 0..<n {
                for i in 0..<j where (0..<5).allSatisfy({ d in
                    ranges[i * 5 + d].lo <= ranges[j * 5 + d].hi && ranges[j * 5 + d].lo <= ranges[i * 5 + d].hi
                }) {
                    after[i].append(Int32(j))
                    before[j] += 1
                }
            }
        }
    }

    static func positions(_ boxes: [CutTree.TreeEntry], _ order: BitVectorOrder, _ graph: Intersections) -> [Int] {
        let n = boxes.count
        if order == .chain { return Array(0..<n) }
        var before = graph.before
        // The index last: ties go to the chain's order.
        let keys = boxes.indices.map { var k = order.key(boxes[$0]); k.4 = $0; return k }
        var ready = (0..<n).filter { before[$0] == 0 }
        var out: [Int] = []
        out.reserveCapacity(n)
        while !ready.isEmpty {
            var k = 0
            for i in 1..<ready.count where keys[ready[i]] < keys[ready[k]] { k = i }
            let r = ready[k]
            ready[k] = ready[ready.count - 1]
            ready.removeLast()
            out.append(r)
            for j in graph.after[r] {
                before[Int(j)] -= 1
                if before[Int(j)] == 0 { ready.append(Int(j)) }
            }
        }
        return out
    }

    /// The order under which the fewest blocks pass for `samples` (among `candidates`), its
    /// positions, and its counts, taken from the boxes without building the tables: per packet,
    /// the blocks in which every chunk has a rule admitting the packet's value, up to the first
    /// block with a box holding the packet. Ties go to the earlier candidate (the chain's order
    /// first in `BitVectorOrder.allCases`).
    static func cheapestOrder(_ boxes: [CutTree.TreeEntry], _ samples: [PacketFields],
                              among candidates: [BitVectorOrder] = BitVectorOrder.allCases) -> (BitVectorOrder, [Int], SampleCounts) {
        let n = boxes.count
        // Per sample, per rule: bit c set when the box admits chunk c's value.
        var admits = [UInt8](repeating: 0, count: samples.count * n)
        let chunkRanges = boxes.flatMap { Self.chunkRanges($0) }
        for (i, f) in samples.enumerated() {
            let words = Self.chunkValues(f)
            for r in 0..<n {
                var bits: UInt8 = 0
                for c in 0..<7 where chunkRanges[r * 7 + c].lo <= words[c] && words[c] <= chunkRanges[r * 7 + c].hi { bits |= 1 << UInt8(c) }
                admits[i * n + r] = bits
            }
        }
        let graph = candidates.allSatisfy { $0 == .chain } ? nil : Intersections(boxes)
        var best = (BitVectorOrder.chain, Array(0..<n), SampleCounts()), fewest = Int.max
        for order in candidates {
            let positions = graph.map { Self.positions(boxes, order, $0) } ?? Array(0..<n)
            var counts = SampleCounts(samples: samples.count)
            for i in samples.indices {
                var chunks: UInt8 = 0, holds = false, passed = 0
                for (p, r) in positions.enumerated() {
                    let bits = admits[i * n + r]
                    chunks |= bits
                    holds = holds || bits == 0x7f
                    if p & 63 == 63 || p == n - 1 {
                        if chunks == 0x7f { passed += 1 }
                        if holds { break }
                        chunks = 0
                    }
                }
                counts.passed += passed
                if passed > 1 { counts.multi += 1 }
            }
            if counts.passed < fewest { best = (order, positions, counts); fewest = counts.passed }
        }
        return best
    }

    /// What `cheapestOrder` counted for the order it chose: blocks passed over all samples, and
    /// samples that passed more than one block.
    struct SampleCounts: Sendable {
        var samples = 0, passed = 0, multi = 0
    }

    /// The values a box admits in each chunk, in the chunks' order (protocol, source high and
    /// low halves, destination high and low halves, source port, destination port: `slots`).
    /// The build's tables, the diagnostic walk and `cheapestOrder` all cut by these; the
    /// lookup (`firstMatch`) cuts its key words the same way, inline.
    static func chunkRanges(_ e: CutTree.TreeEntry) -> [(lo: UInt32, hi: UInt32)] {
        [e.range(4), half(e, 0, 16), half(e, 0, 0), half(e, 1, 16), half(e, 1, 0), e.range(2), e.range(3)]
    }

    /// A packet's value in each chunk, in the order of `chunkRanges`.
    static func chunkValues(_ f: PacketFields) -> [UInt64] {
        let (k0, k1) = CutTree.keys(f)
        return [k1 & 0xff, k0 >> 48, k0 >> 32 & 0xffff, k0 >> 16 & 0xffff, k0 & 0xffff, k1 >> 32, k1 >> 16 & 0xffff]
    }

    /// The values a box admits in half of an address (lane 0 source, 1 destination; `shift` 16
    /// the high half, 0 the low): its mask is a prefix, so they are a range.
    static func half(_ e: CutTree.TreeEntry, _ lane: Int, _ shift: UInt32) -> (lo: UInt32, hi: UInt32) {
        let m = (e.mask[lane] >> shift) & 0xffff, t = (e.net[lane] >> shift) & 0xffff
        return (t, t | ~m & 0xffff)
    }

    var bytes: Int {
        classOf.count * MemoryLayout<UInt16>.stride + (summary.count + words.count) * MemoryLayout<UInt64>.stride
            + flags.count + portBlocks.count * 4
    }
    var classes: Int { summary.count }
    /// Chunks looked up (the others admit every rule with every value).
    var chunks: Int { Self.slots - skipped }

    /// The chunks: protocol, source high and low halves, destination high and low halves,
    /// source port, destination port.
    @usableFromInline static let slots = 7

    /// Diagnostics (not the lookup path): blocks whose words a lookup of `f` from 0 ANDs, and
    /// boxes it finds the packet in, until the first exact box holding it (or all of them).
    func walk(_ f: PacketFields) -> (blocks: Int, boxes: Int) {
        let values = Self.chunkValues(f).map { Int($0) }
        var rows = [Int(classOf[values[0]])]
        for c in 1..<Self.slots {
            rows.append(Int(classOf[Int(portBlocks[(c - 1) << 8 | values[c] >> 8]) + values[c] & 0xff]))
        }
        var s = rows.reduce(~UInt64(0)) { $0 & summary[$1] }
        var blocksSeen = 0, boxes = 0
        while s != 0 {
            let b = s.trailingZeroBitCount
            s &= s - 1
            blocksSeen += 1
            var m = rows.reduce(~UInt64(0)) { $0 & words[$1 * blocks + b] }
            while m != 0 {
                boxes += 1
                if flags[b << 6 | m.trailingZeroBitCount] & 1 == 1 { return (blocksSeen, boxes) }
                m &= m - 1
            }
        }
        return (blocksSeen, boxes)
    }

    /// The first rule at or after `from` whose box holds the packet and which matches (or
    /// hotdrops): `LinearClassifier.firstMatch`'s answer for a packet whose ports are known or
    /// irrelevant (as the cut tree's, `CompiledChain.treeUsable`).
    @inlinable
    func firstMatch(from: Int32, _ f: PacketFields, _ rules: UnsafeBufferPointer<CompiledRule>) -> (index: Int, result: MatchResult)? {
        let (k0, k1) = CutTree.keys(f)
        let from = Int(from)
        // Exact boxes answer alone, except a port rule for a packet without ports.
        let need: UInt8 = f.hasL4 && !f.laterFragment ? 1 : 3
        return portBlocks.withUnsafeBufferPointer { portBlocks in
                classOf.withUnsafeBufferPointer { classOf in
                    summary.withUnsafeBufferPointer { summary in
                        words.withUnsafeBufferPointer { words in
                            flags.withUnsafeBufferPointer { flags in
                              order.withUnsafeBufferPointer { order in
                                // Positions below `lowest` cannot answer (in chain order: those
                                // before `from`; otherwise each candidate's index is compared).
                                let lowest = identity ? from : 0
                                var s: UInt64 = ~0 &<< UInt64(lowest &>> 6)
                                /// Byte chunk `c`'s row (word offset of its class), its summary
                                /// ANDed into `s`.
                                @inline(__always) func row(_ c: Int, _ value: UInt64) -> Int {
                                    let id = Int(classOf[c &<< 8 | Int(truncatingIfNeeded: value & 0xff)])
                                    s &= summary[id]
                                    return id &* blocks
                                }
                                /// A port chunk's row: two levels (`portBlocks`).
                                @inline(__always) func portRow(_ c: Int, _ value: UInt64) -> Int {
                                    let v = Int(truncatingIfNeeded: value & 0xffff)
                                    let id = Int(classOf[Int(portBlocks[c &<< 8 | v &>> 8]) &+ v & 0xff])
                                    s &= summary[id]
                                    return id &* blocks
                                }
                                // Every chunk, left out or not: a fixed sequence of independent
                                // loads at fixed places, no branch.
                                let r0 = row(0, k1), r1 = portRow(0, k0 &>> 48), r2 = portRow(1, k0 &>> 32)
                                let r3 = portRow(2, k0 &>> 16), r4 = portRow(3, k0), r5 = portRow(4, k1 &>> 32)
                                let r6 = portRow(5, k1 &>> 16)
                                /// Block `b`'s words ANDed (`m`: the rules the block may answer with).
                                @inline(__always) func hits(_ b: Int, _ m: UInt64) -> UInt64 {
                                    m & words[r0 &+ b] & words[r1 &+ b] & words[r2 &+ b] & words[r3 &+ b]
                                        & words[r4 &+ b] & words[r5 &+ b] & words[r6 &+ b]
                                }
                                /// The first of block `b`'s hits `m` that answers.
                                @inline(__always) func scan(_ b: Int, _ m: UInt64) -> (index: Int, result: MatchResult)? {
                                    var m = m
                                    while m != 0 {
                                        let p = b &<< 6 | m.trailingZeroBitCount
                                        m &= m &- 1
                                        let r = Int(order[p])
                                        if r < from { continue }
                                        if flags[p] & need == 1 { return (r, .match) }
                                        let res = rules[r].matchesBranchFree(f)
                                        if res != .noMatch { return (r, res) }
                                    }
                                    return nil
                                }
                                if !pairs {
                                    while s != 0 {
                                        let b = s.trailingZeroBitCount
                                        s &= s &- 1
                                        if let answer = scan(b, hits(b, b == lowest &>> 6 ? ~0 &<< UInt64(lowest & 63) : ~0)) {
                                            return answer
                                        }
                                    }
                                    return nil
                                }
                                // Blocks two at a time (`pairs`): whether a block that passed its
                                // summaries has a hit is what the branch predictor cannot learn
                                // where packets often pass more than one (ipc1_1k: 1.02
                                // mispredictions per lookup, all there), so both blocks' words
                                // are ANDed (the second's masked to nothing when there is none)
                                // and the first with a hit is chosen by a select; the second
                                // block is looked at apart only when the first's hits all fail
                                // their rules.
                                while s != 0 {
                                    let b1 = s.trailingZeroBitCount
                                    s &= s &- 1
                                    let second = s != 0
                                    let b2 = second ? s.trailingZeroBitCount : b1
                                    s &= s &- 1
                                    let m1 = hits(b1, b1 == lowest &>> 6 ? ~0 &<< UInt64(lowest & 63) : ~0)
                                    let m2 = hits(b2, second ? ~0 : 0)
                                    let first = m1 != 0
                                    if let answer = scan(first ? b1 : b2, first ? m1 : m2) { return answer }
                                    if first, let answer = scan(b2, m2) { return answer }
                                }
                                return nil
                              }
                            }
                        }
                    }
                }
        }
    }
}

/// Where `BitVectors` puts the rules' bits. A summary bit says that some rule of the block admits the
/// chunk's value; in chain order a block often holds, for every chunk, some rule wide there
/// (ClassBench ipc1_1k: 4.06 blocks per lookup, where the packet's rule is in one), so
/// rules alike are put together, as far as the chain's order allows (`BitVectors.positions`).
public enum BitVectorOrder: CaseIterable, Sendable {
    /// The chain's order.
    case chain
    /// By how many address bits the rule leaves open (source and destination prefixes'
    /// free bits added), then destination, then source: narrow rules first, each block
    /// a few neighbouring destinations.
    case narrowFirst
    /// By how many of the two addresses are wider than /16, then source, then destination.
    case wideAddresses
    /// By protocol, then destination port, then source, then destination (rule sets that
    /// tell services apart more than addresses: ClassBench fw1_1k 2.81 blocks per lookup
    /// instead of 5.75).
    case service
    /// By which addresses are wider than /16 (neither; the source; the destination; both), then
    /// destination, then source: rules alike in where they are open together, as in
    /// `wideAddresses`, but a wide destination after a wide source, and by destination first
    /// within each (ClassBench ipc1_1k: 1.94 blocks per lookup instead of 2.20, acl3_1k 1.57
    /// instead of 1.93).
    case wideDestinationLast

    func key(_ e: CutTree.TreeEntry) -> (UInt64, UInt64, UInt64, UInt64, Int) {
        let sl = UInt64(e.srcMask.nonzeroBitCount), dl = UInt64(e.dstMask.nonzeroBitCount)
        switch self {
        case .chain: return (0, 0, 0, 0, 0)
        case .narrowFirst: return (64 - sl - dl, UInt64(e.dstNet), UInt64(e.srcNet), 0, 0)
        case .wideAddresses:
            let wide: UInt64 = (sl < 16 ? 1 : 0) + (dl < 16 ? 1 : 0)
            return (wide, UInt64(e.srcNet), UInt64(e.dstNet), 0, 0)
        case .service: return (UInt64(e.protoMask & e.proto), UInt64(e.dportLo), UInt64(e.srcNet), UInt64(e.dstNet), 0)
        case .wideDestinationLast:
            return ((dl < 16 ? 2 : 0) + (sl < 16 ? 1 : 0), UInt64(e.dstNet), UInt64(e.srcNet), 0, 0)
        }
    }
}
