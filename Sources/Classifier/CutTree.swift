/// A decision tree over the five header fields (source, destination, source port, destination
/// port, protocol) in the manner of HiCuts, with every cut a power-of-two split of an aligned
/// range, so that descending one node is a shift and a mask of one field: no compare, no
/// search. Leaves list, in ascending rule order, every rule whose box overlaps the leaf's
/// region; a lookup descends to the packet's leaf and scans it from `start` (see
/// docs/classifier.md, "The cut tree").
///
/// Sound by construction, like the tuple tables: a rule's box (`TreeEntry`) holds every packet
/// the rule matches (inverted parts and non-contiguous masks widen it), a rule goes to every
/// child whose region its box overlaps, so the packet's leaf holds every rule that can match
/// it, and `CompiledRule.matchesBranchFree` decides each. The one thing a box cannot hold is a
/// port rule's hotdrop of a first fragment too short for its ports (the packet has no ports to
/// descend by): `CompiledChain` sends those packets to the tuple tables instead.
///
/// Building is bounded: `budget` caps nodes and leaf entries; a set that would replicate its
/// rules past it (many wildcards crossing each other) gets no tree, and the chain keeps the
/// tuple tables alone.
@usableFromInline
struct CutTree: Sendable {
    /// Rules per leaf the build stops at: 8 below `bigSet` rules, 16 from there. A small tree
    /// sits in L1/L2 and a lookup costs its instructions, which short leaves keep down; a big one
    /// costs its cache misses, and leaves of 16 cut the nodes by two thirds (acl1_10k: 103k ->
    /// 32k, 7.1 -> 4.9 levels per lookup, L2 misses per lookup 1.24 -> 0.43; see
    /// docs/classifier.md, "Fourth pass").
    static func leafLimit(rules: Int) -> Int { rules < bigSet ? 8 : 16 }
    static let bigSet = 4096
    /// A single tree whose nodes and leaves would take more than `longLeafBytes` is built with
    /// leaves of `longLeaf` rules instead: past what this VM's caches hold (about 3 MB, see
    /// docs/classifier.md, "Tenth pass"), each level of a deep tree is a miss to memory, and a
    /// shallow tree over long leaves (contiguous lines, one vector compare per four rules)
    /// waits for fewer. acl1_100k: 203,545 nodes, 3.65 levels and 3.6 entries per lookup, 20 MB
    /// with leaves of 16; 8,449 nodes (68 KB), 2 levels, 9.2 entries, 17 MB with leaves of 64,
    /// and 2-3x faster (docs/classifier.md, "Eleventh pass"). Forests keep their leaves (fw1_100k
    /// was slower with 64, ipc1_100k the same).
    static let longLeaf = 64
    @usableFromInline static let longLeafBytes = 4 << 20
    /// Per node, the children's rule lists (replicated rules counted once per child) plus the
    /// child count may reach `spaceFactor` times the node's rules (HiCuts' `spfac`).
    static let spaceFactor = 4
    /// At most 2^`maxBits` children per node.
    static let maxBits = 8
    static let maxDepth = 32
    /// Leaves are scanned this many entries at a time, without a branch per entry.
    @usableFromInline static let group = 4
    /// Packets of a burst that descend the tree in lock-step.
    @usableFromInline static let walkGroup = 4
    /// The index of the entries that pad leaves to whole groups (their box is `never`); it sorts
    /// after every rule.
    static let padIndex = Int32.max

    @usableFromInline
    struct Node: Sendable {
        /// Internal: index of the first child node (children are contiguous). Leaf: first entry.
        @usableFromInline var base: UInt32
        /// Leaf: `leafBit | count`. Internal: shift (bits 0-5) of key word 0 or 1 (`wordBit`)
        /// and child mask (bits 16-29): child = (word >> shift) & mask (see `keys`); `lastBit`
        /// when every child is a leaf.
        @usableFromInline var info: UInt32
        @usableFromInline init(base: UInt32, info: UInt32) { self.base = base; self.info = info }
        @usableFromInline static let leafBit: UInt32 = 1 << 31
        @usableFromInline static let wordBit: UInt32 = 1 << 8
        /// Internal: every child is a leaf. A descent leaving such a node knows it stops there
        /// before the child's load returns (see `descend`).
        @usableFromInline static let lastBit: UInt32 = 1 << 9
    }

    /// A rule's box: everything the rule can match on the five fields, as the two lane sets a
    /// leaf group (`LeafGroup`) stores field by field. Lanes of `mask` / `net`: source mask /
    /// network; destination mask / network; port spans / port lows (source port in the high 16
    /// bits, destination port in the low, as in key word 1); protocol mask with the flags in
    /// bits 8-15 / protocol.
    struct TreeEntry: Sendable {
        var mask: SIMD4<UInt32>
        var net: SIMD4<UInt32>

        var srcNet: UInt32 { net[0] }
        var srcMask: UInt32 { mask[0] }
        var dstNet: UInt32 { net[1] }
        var dstMask: UInt32 { mask[1] }
        var sportLo: UInt16 { UInt16(truncatingIfNeeded: net[2] >> 16) }
        var sportSpan: UInt16 { UInt16(truncatingIfNeeded: mask[2] >> 16) }
        var dportLo: UInt16 { UInt16(truncatingIfNeeded: net[2]) }
        var dportSpan: UInt16 { UInt16(truncatingIfNeeded: mask[2]) }
        var proto: UInt8 { UInt8(truncatingIfNeeded: net[3]) }
        var protoMask: UInt8 { UInt8(truncatingIfNeeded: mask[3]) }

        init(_ r: CompiledRule) {
            let (sportLo, sportSpan, dportLo, dportSpan) = r.portBox
            // The prefix a mask surely fixes (all of a contiguous one, the leading part of a
            // dotted mask such as 255.0.255.0).
            let srcPrefix = CompiledChain.prefixMask((~r.srcMask).leadingZeroBitCount)
            let dstPrefix = CompiledChain.prefixMask((~r.dstMask).leadingZeroBitCount)
            let srcMask = r.srcInvert ? 0 : srcPrefix
            let dstMask = r.dstInvert ? 0 : dstPrefix
            let exact = r.proto != 0 && !r.protoInvert
            let prefixes = srcPrefix == r.srcMask && dstPrefix == r.dstMask
            let normal = r.srcNet & ~r.srcMask == 0 && r.dstNet & ~r.dstMask == 0
                && (!r.portsUsed || (r.sportLo <= r.sportHi && r.dportLo <= r.dportHi))
            let whole = !r.srcInvert && !r.dstInvert && prefixes && normal && !r.protoInvert && r.inAny && r.outAny
                && r.fragment == 0 && !(r.portsUsed && (r.sportInvert || r.dportInvert))
            // Flags. Bit 0 (exact): the box is the whole header match (no inversion, interface,
            // fragment flag or non-prefix mask), so a packet with ports in the box matches the
            // rule without loading it. Bit 1: the rule has ports (it never matches a packet
            // without an L4 header).
            let flags: UInt32 = (whole ? 1 : 0) | (r.portsUsed ? 2 : 0)
            mask = SIMD4(srcMask, dstMask, UInt32(sportSpan) << 16 | UInt32(dportSpan),
                         (exact ? 0xff : 0) | flags << 8)
            net = SIMD4(r.srcNet & srcMask, r.dstNet & dstMask, UInt32(sportLo) << 16 | UInt32(dportLo),
                        exact ? UInt32(r.proto) : 0)
        }

        /// A box no packet is in (protocol bits under an empty mask must equal 1): pads leaves
        /// to whole groups.
        static let never: TreeEntry = {
            var e = TreeEntry(CompiledRule())
            e.mask[3] = 0
            e.net[3] = 1
            return e
        }()

        /// The box as inclusive ranges per field (source, destination, ports, protocol).
        func range(_ d: Int) -> (lo: UInt32, hi: UInt32) {
            switch d {
            case 0: return (srcNet, srcNet | ~srcMask)
            case 1: return (dstNet, dstNet | ~dstMask)
            case 2: return (UInt32(sportLo), UInt32(sportLo) + UInt32(sportSpan))
            case 3: return (UInt32(dportLo), UInt32(dportLo) + UInt32(dportSpan))
            default: return protoMask == 0 ? (0, 255) : (UInt32(proto), UInt32(proto))
            }
        }
    }

    /// Four leaf entries, field by field (structure of arrays), so that one vector instruction
    /// checks a field of all four: lanes hold `TreeEntry.mask` / `net` lane by lane, plus the
    /// rules' indices. A leaf is a run of groups, padded with the `never` box (index
    /// `padIndex`).
    @usableFromInline
    struct LeafGroup: Sendable {
        @usableFromInline var index: SIMD4<Int32> = .zero
        @usableFromInline var srcMask: SIMD4<UInt32> = .zero, srcNet: SIMD4<UInt32> = .zero
        @usableFromInline var dstMask: SIMD4<UInt32> = .zero, dstNet: SIMD4<UInt32> = .zero
        /// Port spans / lows: source port in the high 16 bits of a lane, destination in the low.
        @usableFromInline var portSpan: SIMD4<UInt32> = .zero, portLo: SIMD4<UInt32> = .zero
        /// Protocol, mask and flags in one lane: the protocol in bits 0-11 (0 under an empty
        /// mask, but 1 in the `never` box, which no masked protocol equals), its mask in bits
        /// 12-19, the box's flags in bits 24-31 (bit 24: exact, bit 25: has ports; see
        /// `TreeEntry.init`).
        @usableFromInline var proto: SIMD4<UInt32> = .zero

        /// Lanes (16 bytes each) a group takes in `CutTree.lanes`: 128 bytes.
        @usableFromInline static let lanes = 8

        /// The boxes of rules `indices` (`padIndex` pads: the `never` box).
        init(_ indices: ArraySlice<Int32>, _ boxes: [TreeEntry]) {
            for (j, r) in indices.enumerated() {
                let e = r == CutTree.padIndex ? TreeEntry.never : boxes[Int(r)]
                index[j] = r
                srcMask[j] = e.mask[0]; srcNet[j] = e.net[0]
                dstMask[j] = e.mask[1]; dstNet[j] = e.net[1]
                portSpan[j] = e.mask[2]; portLo[j] = e.net[2]
                proto[j] = e.net[3] | (e.mask[3] & 0xff) << 12 | (e.mask[3] >> 8) << 24
            }
        }

        /// The group whose lanes start at `lanes`.
        @inlinable @inline(__always)
        init(_ lanes: UnsafePointer<SIMD4<UInt32>>) {
            index = unsafeBitCast(lanes[0], to: SIMD4<Int32>.self)
            srcMask = lanes[1]; srcNet = lanes[2]; dstMask = lanes[3]; dstNet = lanes[4]
            portSpan = lanes[5]; portLo = lanes[6]; proto = lanes[7]
        }

        /// Its lanes, in the order `init(_: UnsafePointer)` reads them.
        var laneList: [SIMD4<UInt32>] {
            [unsafeBitCast(index, to: SIMD4<UInt32>.self), srcMask, srcNet, dstMask, dstNet, portSpan, portLo, proto]
        }

        /// The lanes of the group of rules `indices`.
        static func layOut(_ indices: ArraySlice<Int32>, _ boxes: [TreeEntry]) -> [SIMD4<UInt32>] {
            LeafGroup(indices, boxes).laneList
        }

        /// Bits 24-31 of entry j's protocol lane: its box's flags.
        @inlinable @inline(__always)
        func flags(_ j: Int) -> UInt32 { proto[j] &>> 24 }

        /// Entry j's rule index.
        @inlinable @inline(__always)
        func rule(_ j: Int) -> Int32 { index[j] }

        /// Which entries' boxes hold the packet, whose fields come splatted across the lanes
        /// (`Splat`).
        @inlinable @inline(__always)
        func inBox(_ p: Splat) -> SIMDMask<SIMD4<Int32>> {
            let inPorts = unsafeBitCast(p.ports, to: SIMD8<UInt16>.self) &- unsafeBitCast(portLo, to: SIMD8<UInt16>.self)
                .<= unsafeBitCast(portSpan, to: SIMD8<UInt16>.self)
            let ports = unsafeBitCast(SIMD8<Int16>(repeating: 0).replacing(with: -1, where: inPorts), to: SIMD4<Int32>.self)
            return (p.source & srcMask .== srcNet) .& (p.destination & dstMask .== dstNet)
                .& (p.proto & ((proto &>> 12) & 0xff) .== proto & 0xfff) .& (ports .== SIMD4(repeating: -1))
        }

        /// Bit 8j set: entry j's index is at least `from` and the packet is in its box (the first
        /// hit is entry `trailingZeroBitCount / 8`).
        @inlinable @inline(__always)
        func hits(_ p: Splat, from: SIMD4<Int32>) -> UInt32 { Self.bits(inBox(p) .& (index .>= from)) }

        /// A lane mask as bit 8j per lane j: the lanes narrowed to bytes (two packs and a move, not
        /// a lane-by-lane extraction).
        @inlinable @inline(__always)
        static func bits(_ m: SIMDMask<SIMD4<Int32>>) -> UInt32 {
            let v = SIMD4<Int32>(repeating: 0).replacing(with: 1, where: m)
            return unsafeBitCast(SIMD4<UInt8>(truncatingIfNeeded: v), to: UInt32.self)
        }
    }

    /// Four leaf entries in the compact layout: 16 bytes an entry, one 64-byte cache line a
    /// group (`LeafGroup` takes two), for a single tree of fewer than 2^20 rules of which few
    /// fix a source port (`CutTree.compactLayout`). Lanes:
    /// - `src`, `dst`: the prefix's network with a marker bit just below the prefix (bit 31 - L
    ///   for a prefix of L < 32 bits; a /0 is 0x8000_0000); a /32 is the address itself, with a
    ///   flag in `meta`. The mask is rebuilt from the marker (its lowest set bit b: the mask is
    ///   -(2b)), as SSE2 has no per-lane shift to build one from a length.
    /// - `dports`: the destination port's low in bits 0-15, its span in bits 16-31.
    /// - `meta`: the rule's index in bits 0-19, the flags in bits 20-21 (`TreeEntry`'s: exact,
    ///   has ports), the protocol in bits 22-29 (0: any), a /32 destination in bit 30, a /32
    ///   source in bit 31.
    /// The source port is not in the box: a rule that fixes one is not exact here (its rule is
    /// checked). Leaves are padded with copies of their group's last entry, not with a box
    /// nothing is in: a copy is found after its original, and decided the same way.
    @usableFromInline
    struct CompactGroup: Sendable {
        @usableFromInline var src: SIMD4<UInt32>, dst: SIMD4<UInt32>, dports: SIMD4<UInt32>, meta: SIMD4<UInt32>

        @usableFromInline static let lanes = 4
        @usableFromInline static let indexBits: UInt32 = 0xF_FFFF
        @usableFromInline static let protoBits: UInt32 = 0xFF << 22

        @inlinable @inline(__always)
        init(_ lanes: UnsafePointer<SIMD4<UInt32>>) {
            src = lanes[0]; dst = lanes[1]; dports = lanes[2]; meta = lanes[3]
        }

        /// The lanes of rules `indices` (`padIndex` pads: a copy of the last rule before it).
        static func layOut(_ indices: ArraySlice<Int32>, _ boxes: [TreeEntry]) -> [SIMD4<UInt32>] {
            var src = SIMD4<UInt32>(), dst = SIMD4<UInt32>(), dports = SIMD4<UInt32>(), meta = SIMD4<UInt32>()
            var last = indices.first!
            for (j, r) in indices.enumerated() {
                if r != CutTree.padIndex { last = r }
                precondition(last >= 0 && UInt32(last) <= indexBits, "compact leaves hold indices below 2^20")
                let e = boxes[Int(last)]
                func marked(_ net: UInt32, _ mask: UInt32) -> UInt32 { mask == ~0 ? net : net | ((~mask &>> 1) &+ 1) }
                src[j] = marked(e.srcNet, e.srcMask)
                dst[j] = marked(e.dstNet, e.dstMask)
                dports[j] = UInt32(e.dportLo) | UInt32(e.dportSpan) << 16
                // Exact only when the box is the whole match without the source port.
                let flags = (e.mask[3] >> 8 & 3) & (e.sportLo == 0 && e.sportSpan == 0xffff ? 3 : 2)
                meta[j] = UInt32(last) | flags << 20 | (e.protoMask == 0 ? 0 : UInt32(e.proto) << 22)
                    | (e.dstMask == ~0 ? 1 << 30 : 0) | (e.srcMask == ~0 ? 1 << 31 : 0)
            }
            return [src, dst, dports, meta]
        }

        @inlinable @inline(__always)
        func flags(_ j: Int) -> UInt32 { (meta[j] &>> 20) & 3 }

        /// Entry j's rule index.
        @inlinable @inline(__always)
        func rule(_ j: Int) -> Int32 { Int32(bitPattern: meta[j] & Self.indexBits) }

        @inlinable @inline(__always)
        func hits(_ p: Splat, from: SIMD4<Int32>) -> UInt32 {
            let zero = SIMD4<UInt32>(repeating: 0)
            let signed = unsafeBitCast(meta, to: SIMD4<Int32>.self)
            // The mask: the bits above the marker, -(2 * marker) (the marker is the lowest set
            // bit, x & -x); all of them for a /32. (Building the host bits x ^ (x - 1) and
            // inverting them took 1.5 more instructions per lookup at acl1_10k.)
            let sLow = src & (zero &- src), dLow = dst & (zero &- dst)
            let sMask = (zero &- (sLow &+ sLow)) | unsafeBitCast(signed &>> 31, to: SIMD4<UInt32>.self)
            let dMask = (zero &- (dLow &+ dLow)) | unsafeBitCast((signed &<< 1) &>> 31, to: SIMD4<UInt32>.self)
            let proto = meta & Self.protoBits
            let span = unsafeBitCast(dports &>> 16, to: SIMD4<Int32>.self)
            let off = unsafeBitCast((p.dport &- dports) & 0xffff, to: SIMD4<Int32>.self)
            let inBox = ((p.source ^ src) & sMask .== zero) .& ((p.destination ^ dst) & dMask .== zero)
                .& ((proto .== p.protoHigh) .| (proto .== zero)) .& (off .<= span)
            return LeafGroup.bits(inBox .& (unsafeBitCast(meta & Self.indexBits, to: SIMD4<Int32>.self) .>= from))
        }
    }

    /// The groups as a lookup reads them: group g from `base + g * lanes`, as a `CompactGroup`
    /// when `compact`, else a `LeafGroup`. (One type with a branch on the layout, which is the
    /// same for every lookup of a tree, rather than a scan generic over the layout: specialized
    /// inside a generic caller, the scan was not inlined, and fw3_10k lost 25-30%.)
    @usableFromInline
    struct Groups {
        @usableFromInline let base: UnsafePointer<SIMD4<UInt32>>
        @usableFromInline let compact: Bool
        @inlinable @inline(__always)
        init(_ lanes: UnsafeBufferPointer<SIMD4<UInt32>>, start: Int, compact: Bool) {
            base = lanes.baseAddress! + start
            self.compact = compact
        }
        @inlinable @inline(__always)
        func hits(_ g: Int, _ p: Splat, from: SIMD4<Int32>) -> UInt32 {
            compact ? CompactGroup(base + g &* CompactGroup.lanes).hits(p, from: from)
                : LeafGroup(base + g &* LeafGroup.lanes).hits(p, from: from)
        }
        @inlinable @inline(__always)
        func rule(_ g: Int, _ j: Int) -> Int32 {
            compact ? CompactGroup(base + g &* CompactGroup.lanes).rule(j) : LeafGroup(base + g &* LeafGroup.lanes).rule(j)
        }
        @inlinable @inline(__always)
        func flags(_ g: Int, _ j: Int) -> UInt32 {
            compact ? CompactGroup(base + g &* CompactGroup.lanes).flags(j) : LeafGroup(base + g &* LeafGroup.lanes).flags(j)
        }
    }

    /// A packet's fields from its key words (`keys`), each across four lanes. (From the key
    /// words, not the fields: a copy of the fields on the stack read back 16 bytes at a time
    /// stalled on store forwarding.)
    @usableFromInline
    struct Splat {
        @usableFromInline var source: SIMD4<UInt32>, destination: SIMD4<UInt32>
        @usableFromInline var ports: SIMD4<UInt32>, proto: SIMD4<UInt32>
        /// For `CompactGroup`: the destination port alone, the protocol at bits 22-29.
        @usableFromInline var dport: SIMD4<UInt32>, protoHigh: SIMD4<UInt32>
        @inlinable @inline(__always)
        init(_ k0: UInt64, _ k1: UInt64) {
            source = SIMD4(repeating: UInt32(truncatingIfNeeded: k0 >> 32))
            destination = SIMD4(repeating: UInt32(truncatingIfNeeded: k0))
            ports = SIMD4(repeating: UInt32(truncatingIfNeeded: k1 >> 16))
            proto = SIMD4(repeating: UInt32(truncatingIfNeeded: k1 & 0xff))
            dport = SIMD4(repeating: UInt32(truncatingIfNeeded: (k1 >> 16) & 0xffff))
            protoHigh = SIMD4(repeating: UInt32(truncatingIfNeeded: k1 & 0xff) << 22)
        }
    }

    @usableFromInline var nodes: [Node] = []
    /// The root node of each tree: one, or (when one tree would pass the budget) one per part of
    /// the rules as `separate` splits them; a lookup takes the smallest answer of all.
    @usableFromInline var roots: [UInt32] = [0]
    /// Leaves: runs of groups (a leaf node's `base` is its first group, its count the entries, a
    /// multiple of `group`); identical leaves share their groups. Group g is `G.lanes` lanes
    /// from `lanes[laneStart + g * G.lanes]`, G being `CompactGroup` when `compact`, else
    /// `LeafGroup`, and `lanes[laneStart]` is 128-byte aligned, so a group is one aligned cache
    /// line (compact) or pair of them (a 144-byte group at any 16-byte offset spanned three or
    /// four). Set once, in `init`: the array's storage, and with it the alignment, never moves.
    @usableFromInline private(set) var lanes = [SIMD4<UInt32>](repeating: .zero, count: LeafGroup.lanes)
    @usableFromInline private(set) var laneStart = 0
    /// Whether the leaves are `CompactGroup`s (see `compactLayout`).
    @usableFromInline private(set) var compact = false
    /// Leaf entries (rule copies, padding included), for the statistics.
    private(set) var leafEntries = 0
    private(set) var depth = 0
    private(set) var leaves = 0
    private(set) var largestLeaf = 0

    /// Field widths in bits: source, destination, source port, destination port, protocol.
    static let widths: [Int] = [32, 32, 16, 16, 8]
    /// Where each field sits in the two 64-bit key words (word, bit offset); see `keys`.
    static let keyPlace: [(Int, Int)] = [(0, 32), (0, 0), (1, 32), (1, 16), (1, 0)]

    /// The packet's five fields in two words: source << 32 | destination; source port << 32 |
    /// destination port << 16 | protocol. A node picks a word and shifts; no table of fields.
    @inlinable @inline(__always)
    static func keys(_ f: PacketFields) -> (UInt64, UInt64) {
        (UInt64(f.source) << 32 | UInt64(f.destination),
         UInt64(f.ports) << 16 | UInt64(f.proto))
    }

    private struct BudgetExceeded: Error {}

    /// No tree.
    init() {}

    /// One tree, or when that would exceed `budget` nodes + entries a forest over the parts
    /// `separate` splits the rules into; nil when that exceeds it too. `separate` (tests): a
    /// forest whenever the rules fall into two parts or more, small parts kept apart.
    init?(_ rules: [CompiledRule], budget: Int, leafLimit: Int? = nil, spaceFactor: Int = CutTree.spaceFactor,
          maxBits: Int = CutTree.maxBits, separate: Bool = false, compact: Bool? = nil, longLeafBytes: Int = CutTree.longLeafBytes) {
        let boxes = rules.map { TreeEntry($0) }
        var lo = [[UInt32]](repeating: [], count: 5), hi = [[UInt32]](repeating: [], count: 5)
        for d in 0..<5 {
            lo[d] = boxes.map { $0.range(d).lo }
            hi[d] = boxes.map { $0.range(d).hi }
        }
        func build(_ parts: [[Int32]], leaves: Int = leafLimit ?? Self.leafLimit(rules: rules.count)) -> Builder? {
            var b = Builder(lo: lo, hi: hi, budget: budget, leafLimit: leaves, spaceFactor: spaceFactor, maxBits: maxBits)
            do {
                for part in parts {
                    b.roots.append(UInt32(b.nodes.count))
                    b.nodes.append(Node(base: 0, info: Node.leafBit))
                    try b.build(part, region: Builder.Region(), slot: b.nodes.count - 1, depth: 0)
                }
            } catch { return nil }
            return b
        }
        let all = [Array(0..<Int32(rules.count))]
        let compactIfOne = compact ?? Self.compactLayout(boxes)
        let entryBytes = compactIfOne ? CompactGroup.lanes * 16 / Self.group : LeafGroup.lanes * 16 / Self.group
        guard var b = (separate ? nil : build(all)) ?? {
            let parts = Self.separate(boxes, smallest: separate ? 1 : max(rules.count / 32, 64))
            return parts.count > 1 ? build(parts) : separate ? build(all) : nil
        }() else { return nil }
        // One tree past the caches: built again with long leaves (see `longLeafBytes`).
        if leafLimit == nil && b.roots.count == 1 && b.nodes.count * MemoryLayout<Node>.stride + b.leafRules.count * entryBytes > longLeafBytes,
           let long = build(all, leaves: Self.longLeaf) {
            b = long
        }
        // Forests keep the full layout unless told: they scan several leaves per lookup (22-27
        // entries at acl3/acl4_10k), and the compact check's extra instructions cost them
        // 1-5% (acl2-4_10k, interleaved), more than the smaller lines saved.
        self.compact = compact ?? (b.roots.count == 1 && compactIfOne)
        nodes = b.nodes
        roots = b.roots
        precondition(roots.count <= 4, "forestMatch descends at most four trees (separate's parts)")
        for i in nodes.indices where nodes[i].info & Node.leafBit == 0 {
            let n = nodes[i]
            if (Int(n.base)...(Int(n.base) + Int(n.info >> 16))).allSatisfy({ nodes[$0].info & Node.leafBit != 0 }) {
                nodes[i].info |= Node.lastBit
            }
        }
        for i in nodes.indices where nodes[i].info & Node.leafBit != 0 {
            nodes[i].base /= UInt32(Self.group)
        }
        let groupCount = b.leafRules.count / Self.group
        let (perGroup, layOut) = self.compact ? (CompactGroup.lanes, CompactGroup.layOut) : (LeafGroup.lanes, LeafGroup.layOut)
        var lanes = [SIMD4<UInt32>](repeating: .zero, count: groupCount * perGroup + 7)
        laneStart = lanes.withUnsafeMutableBufferPointer { buf in
            let start = (128 - Int(bitPattern: buf.baseAddress!) % 128) % 128 / MemoryLayout<SIMD4<UInt32>>.stride
            for g in 0..<groupCount {
                let group = layOut(b.leafRules[(g * Self.group)..<((g + 1) * Self.group)], boxes)
                for (k, lane) in group.enumerated() { buf[start + g * perGroup + k] = lane }
            }
            return start
        }
        self.lanes = lanes
        leafEntries = b.leafRules.count
        depth = b.maxDepthSeen
        leaves = b.leaves
        largestLeaf = b.largestLeaf
    }

    /// Whether one tree of these rules gets `CompactGroup` leaves (a forest does not, see
    /// `init`): fewer than 2^20 rules (the indices fit), and at most 1 in 16 fixing a source
    /// port (the compact box leaves it out, so such a rule is checked on the rule; ClassBench fw
    /// and ipc fix one in about 20% of their rules, acl none, kube-proxy none).
    static func compactLayout(_ boxes: [TreeEntry]) -> Bool {
        guard boxes.count <= Int(CompactGroup.indexBits) else { return false }
        return boxes.count(where: { $0.sportLo != 0 || $0.sportSpan != 0xffff }) * 16 <= boxes.count
    }

    /// An address prefix shorter than this is wide: `separate` puts rules with a wide source,
    /// destination, both or neither in different trees.
    static let wideBits = 8

    /// The rules split by which addresses they leave wide (EffiCuts' separation, on the two
    /// address fields): a rule wide in a field is copied into every child of a cut on it, and
    /// wide rules crossing narrow ones (ClassBench fw1 and ipc1) multiply each other's copies past
    /// any budget; apart, each tree cuts the fields its rules fix. A part under `smallest` rules
    /// (1/32 of them, at least 64) joins a wider one (any tree is sound for any rule: a box only
    /// goes where it overlaps). Each part ascending; at most four parts.
    static func separate(_ boxes: [TreeEntry], smallest: Int) -> [[Int32]] {
        // Index: source wide (1) | destination wide (2).
        var parts = [[Int32]](repeating: [], count: 4)
        for (i, e) in boxes.enumerated() {
            let c = (e.srcMask.nonzeroBitCount < wideBits ? 1 : 0) | (e.dstMask.nonzeroBitCount < wideBits ? 2 : 0)
            parts[c].append(Int32(i))
        }
        if parts[0].count < smallest {
            parts[parts[1].count >= parts[2].count ? 1 : 2] += parts[0]
            parts[0] = []
        }
        for c in [1, 2] where parts[c].count < smallest {
            parts[3] += parts[c]
            parts[c] = []
        }
        return parts.filter { !$0.isEmpty }.map { $0.sorted() }
    }

    var bytes: Int {
        nodes.count * MemoryLayout<Node>.stride + lanes.count * MemoryLayout<SIMD4<UInt32>>.stride
    }

    private struct Builder {
        let lo: [[UInt32]], hi: [[UInt32]]
        let budget: Int
        let leafLimit: Int, spaceFactor: Int, maxBits: Int
        var nodes: [Node] = []
        var roots: [UInt32] = []
        var leafRules: [Int32] = []
        /// Leaf lists already laid out (identical lists share their entries).
        var laidOut: [[Int32]: UInt32] = [:]
        var maxDepthSeen = 0, leaves = 0, largestLeaf = 0

        init(lo: [[UInt32]], hi: [[UInt32]], budget: Int, leafLimit: Int, spaceFactor: Int, maxBits: Int) {
            self.lo = lo; self.hi = hi; self.budget = budget
            self.leafLimit = leafLimit; self.spaceFactor = spaceFactor; self.maxBits = maxBits
        }

        mutating func leaf(_ list: [Int32], slot: Int) throws(BudgetExceeded) {
            leaves += 1
            largestLeaf = max(largestLeaf, list.count)
            if list.isEmpty { nodes[slot] = Node(base: 0, info: Node.leafBit); return }
            let padded = (list.count + CutTree.group - 1) / CutTree.group * CutTree.group
            let start: UInt32
            if let s = laidOut[list] {
                start = s
            } else {
                start = UInt32(leafRules.count)
                leafRules.append(contentsOf: list)
                leafRules.append(contentsOf: repeatElement(CutTree.padIndex, count: padded - list.count))
                laidOut[list] = start
            }
            nodes[slot] = Node(base: start, info: Node.leafBit | UInt32(padded))
            if nodes.count + leafRules.count > budget { throw BudgetExceeded() }
        }

        /// The children of a cut that rule `r` overlaps, first and last (contiguous).
        /// Addresses (fields 0, 1): the cut takes bits `shift ..< shift + k`; a rule's prefix fixes
        /// the top of that window or all of it, leaving a run of children. Ports and protocol
        /// (fields 2-4): the region is the aligned range [rlo, rlo + 2^bits) and the cut splits
        /// it into 2^k equal parts.
        @inline(__always)
        func childSpan(_ r: Int, _ d: Int, _ rlo: UInt32, _ bits: Int, _ k: Int, _ shift: Int) -> (Int, Int) {
            if d < 2 {
                let net = lo[d][r], mask = ~(net ^ hi[d][r])
                let window = UInt32(truncatingIfNeeded: (UInt64(1) << UInt64(k)) - 1) << UInt32(shift)
                let fixed = mask & window
                let j0 = Int((net & fixed) >> UInt32(shift))
                return (j0, j0 + (1 << (k - fixed.nonzeroBitCount)) - 1)
            }
            let top = UInt64(rlo) + (UInt64(1) << UInt64(bits)) - 1
            let a = max(UInt64(lo[d][r]), UInt64(rlo)) - UInt64(rlo)
            let b = min(UInt64(hi[d][r]), top) - UInt64(rlo)
            let s = UInt64(bits - k)
            return (Int(a >> s), Int(b >> s))
        }

        /// A node's region. Addresses: the bits fixed by the cuts above (`fixed`, values in
        /// `lo`), so a cut can take any window of bits, not only the top ones: rules that all
        /// agree on a bit (ClassBench addresses cluster in a few /16s) are not cut on it.
        /// Ports and protocol: the aligned range [lo, lo + 2^bits).
        struct Region {
            var fixed: [UInt32] = [0, 0]
            var lo: [UInt32] = [0, 0, 0, 0, 0]
            var bits: [Int] = CutTree.widths
        }

        /// The highest address bit the rules disagree on (both values fixed by some rule), or
        /// nil: cutting above it separates nothing.
        func topDisagreement(_ list: [Int32], _ d: Int, _ region: Region) -> Int? {
            var ones: UInt32 = 0, zeros: UInt32 = 0
            for r in list {
                let net = lo[d][Int(r)], mask = ~(net ^ hi[d][Int(r)])
                ones |= net & mask
                zeros |= ~net & mask
            }
            let disagree = ones & zeros & ~region.fixed[d]
            return disagree == 0 ? nil : 31 - disagree.leadingZeroBitCount
        }

        mutating func build(_ list: [Int32], region: Region, slot: Int, depth: Int) throws(BudgetExceeded) {
            maxDepthSeen = max(maxDepthSeen, depth)
            if list.count <= leafLimit || depth >= CutTree.maxDepth { try leaf(list, slot: slot); return }
            let n = list.count
            // Pick the field and cut: per field, the most cuts the space factor allows; then the
            // field whose largest child is smallest (ties: fewer replicated rules).
            var best: (d: Int, k: Int, shift: Int, maxChild: Int, sum: Int)? = nil
            for d in 0..<5 {
                let K: Int, top: Int
                if d < 2 {
                    guard let t = topDisagreement(list, d, region) else { continue }
                    top = t
                    K = min(t + 1, maxBits)
                } else {
                    guard region.bits[d] > 0 else { continue }
                    top = region.bits[d] - 1
                    K = min(region.bits[d], maxBits)
                }
                // Window of k bits ending at `top` (addresses); top k bits of the range (ports).
                func shift(_ k: Int) -> Int { top + 1 - k }
                var sums = [Int](repeating: 0, count: K + 1)
                for r in list {
                    if d < 2 {
                        for k in 1...K {
                            let (a, b) = childSpan(Int(r), d, 0, 0, k, shift(k))
                            sums[k] += b - a + 1
                        }
                    } else {
                        let (a, b) = childSpan(Int(r), d, region.lo[d], region.bits[d], K, shift(K))
                        for k in 1...K { sums[k] += (b >> (K - k)) - (a >> (K - k)) + 1 }
                    }
                }
                var k = 0
                for c in 1...K where sums[c] + (1 << c) <= spaceFactor * n { k = c }
                if k == 0 { continue }
                var diff = [Int](repeating: 0, count: (1 << k) + 1)
                for r in list {
                    let (a, b) = childSpan(Int(r), d, region.lo[d], region.bits[d], k, shift(k))
                    diff[a] += 1; diff[b + 1] -= 1
                }
                var run = 0, maxChild = 0
                for j in 0..<(1 << k) { run += diff[j]; maxChild = max(maxChild, run) }
                if best == nil || maxChild < best!.maxChild || (maxChild == best!.maxChild && sums[k] < best!.sum) {
                    best = (d, k, shift(k), maxChild, sums[k])
                }
            }
            guard let cut = best, cut.maxChild < n else { try leaf(list, slot: slot); return }
            let d = cut.d, k = cut.k, shift = cut.shift, count = 1 << k
            let base = nodes.count
            nodes.append(contentsOf: repeatElement(Node(base: 0, info: Node.leafBit), count: count))
            if nodes.count + leafRules.count > budget { throw BudgetExceeded() }
            let (word, offset) = CutTree.keyPlace[d]
            nodes[slot] = Node(base: UInt32(base), info: UInt32(offset + shift) | (word == 1 ? Node.wordBit : 0) | UInt32(count - 1) << 16)
            var children = [[Int32]](repeating: [], count: count)
            for r in list {
                let (a, b) = childSpan(Int(r), d, region.lo[d], region.bits[d], k, shift)
                for j in a...b { children[j].append(r) }
            }
            for j in 0..<count {
                var child = region
                if d < 2 {
                    let window = UInt32(truncatingIfNeeded: (UInt64(1) << UInt64(k)) - 1) << UInt32(shift)
                    child.fixed[d] |= window
                    child.lo[d] |= UInt32(j) << UInt32(shift)
                } else {
                    child.bits[d] -= k
                    child.lo[d] = region.lo[d] &+ UInt32(truncatingIfNeeded: j << shift)
                }
                let list = children[j]
                children[j] = []
                try build(list, region: child, slot: base + j, depth: depth + 1)
            }
        }
    }

    /// Diagnostics (not the lookup path): nodes descended and leaf entries looked at for `f`,
    /// summed over a forest's trees (each scanned to its first hit, not to the best so far), and
    /// the trees whose descent left its last node knowing it stops there (`lastBit`).
    func walk(_ f: PacketFields) -> (depth: Int, scanned: Int, early: Int) {
        let (k0, k1) = Self.keys(f)
        var depth = 0, scanned = 0, early = 0
        for root in roots {
            var n = nodes[Int(root)]
            while n.info & Node.leafBit == 0 {
                if n.info & Node.lastBit != 0 { early += 1 }
                let w = n.info & Node.wordBit != 0 ? k1 : k0
                n = nodes[Int(n.base) + Int(truncatingIfNeeded: (w >> UInt64(n.info & 63)) & UInt64(n.info >> 16))]
                depth += 1
            }
            let p = Splat(k0, k1)
            for g in Int(n.base)..<(Int(n.base) + Int(n.info & ~Node.leafBit) / Self.group) {
                let hits = lanes.withUnsafeBufferPointer { Groups($0, start: laneStart, compact: compact).hits(g, p, from: .zero) }
                if hits != 0 { scanned += hits.trailingZeroBitCount / 8 + 1; break }
                scanned += Self.group
            }
        }
        return (depth, scanned, early)
    }

    /// The packet's leaf. Where the descent stops is the branch a predictor misses most (the
    /// depth varies with the packet: 2 to 15 levels at acl1_10k). Leaving a node whose children
    /// are all leaves (`lastBit`), that branch depends on the node already loaded, not on the
    /// child being loaded, so a misprediction is paid while the child's load is in flight, not
    /// after it (acl1_10k 2-4% faster; docs/classifier.md, "Twelfth pass").
    @inlinable @inline(__always)
    func descend(_ k0: UInt64, _ k1: UInt64, _ nodes: UnsafeBufferPointer<Node>) -> Node {
        var n = nodes[0]
        if n.info & Node.leafBit != 0 { return n }
        let start = nodes.baseAddress!
        while true {
            // The children's row first, from the node alone, while the child's index is still
            // being shifted out of the key: the load then adds the index in its address, one
            // step less between a node's arrival and its child's load (written as one index,
            // `base + index`, an add waited for the index: acl1_10k 46.4 -> 45.2 ns).
            let row = start + Int(n.base)
            let w = n.info & Node.wordBit != 0 ? k1 : k0
            let c = row[Int(truncatingIfNeeded: (w &>> UInt64(n.info & 63)) & UInt64(n.info &>> 16))]
            if n.info & Node.lastBit != 0 { return c }
            n = c
            if n.info & Node.leafBit != 0 { return n }
        }
    }

    /// The first rule at or after `from`, and before `below` when `bounded`, in `leaf` that
    /// matches (or hotdrops). Rules are
    /// checked a group at a time: the group's hits (index >= from and packet inside the box)
    /// become bits of a mask with no branch per rule (which rule of a leaf a packet hits is
    /// what a branch predictor cannot learn), then the hits are decided lowest first: an exact
    /// box is the answer, other rules are checked on the rule.
    @inlinable @inline(__always)
    func scan(_ leaf: Node, from: Int32, _ f: PacketFields, _ k0: UInt64, _ k1: UInt64, _ groups: Groups,
              _ rules: UnsafeBufferPointer<CompiledRule>, bounded: Bool = false, below: Int32 = .max) -> (index: Int, result: MatchResult)? {
        var i = Int(leaf.base)
        let end = i &+ Int(leaf.info & ~Node.leafBit) / Self.group
        if from > 0 && end &- i > 1 && groups.rule(i, Self.group &- 1) < from {
            // Skip the groups whose last (largest) index is below `from`.
            var a = i, b = end
            while a < b {
                let m = (a &+ b) >> 1
                if groups.rule(m, Self.group &- 1) < from { a = m &+ 1 } else { b = m }
            }
            i = a
        }
        // Exact boxes answer alone, except a port rule for a packet without ports.
        let need: UInt32 = f.hasL4 && !f.laterFragment ? 1 : 3
        let p = Splat(k0, k1), fromLanes = SIMD4<Int32>(repeating: from)
        while i < end {
            if bounded && groups.rule(i, 0) >= below { return nil }
            var hits = groups.hits(i, p, from: fromLanes)
            while hits != 0 {
                let j = hits.trailingZeroBitCount &>> 3
                hits &= hits &- 1
                let r = Int(groups.rule(i, j))
                if bounded && r >= below { return nil }
                if groups.flags(i, j) & need == 1 { return (r, .match) }
                let m = rules[r].matchesBranchFree(f)
                if m != .noMatch { return (r, m) }
            }
            i &+= 1
        }
        return nil
    }

    /// The first rule at or after `from` in the packet's leaf that matches (or hotdrops): for a
    /// packet whose ports are known or irrelevant, `LinearClassifier.firstMatch`'s answer.
    @inlinable
    func firstMatch(from: Int32, _ f: PacketFields, _ rules: UnsafeBufferPointer<CompiledRule>) -> (index: Int, result: MatchResult)? {
        if roots.count > 1 { return forestMatch(from: from, f, rules) }
        return nodes.withUnsafeBufferPointer { nodes in
            lanes.withUnsafeBufferPointer { lanes in
                let groups = Groups(lanes, start: laneStart, compact: compact)
                let (k0, k1) = Self.keys(f)
                return scan(descend(k0, k1, nodes), from: from, f, k0, k1, groups, rules)
            }
        }
    }

    /// `firstMatch` in a forest: the smallest answer of its trees; each scan after the first
    /// stops at the best so far (a leaf's groups are in rule order).
    @inlinable
    func forestMatch(from: Int32, _ f: PacketFields, _ rules: UnsafeBufferPointer<CompiledRule>) -> (index: Int, result: MatchResult)? {
        nodes.withUnsafeBufferPointer { nodes in
            lanes.withUnsafeBufferPointer { lanes in
                let groups = Groups(lanes, start: laneStart, compact: compact)
                return roots.withUnsafeBufferPointer { roots in
                    let (k0, k1) = Self.keys(f)
                    var best: (index: Int, result: MatchResult)? = nil
                    // The trees' descents together (at most four: `separate`), a level of each
                    // per round: their loads do not depend on each other, so their latencies
                    // overlap instead of adding up. A tree at its leaf stays there (a select);
                    // a missing tree is an empty leaf from the start.
                    let empty = Node(base: 0, info: Node.leafBit)
                    var n = (nodes[Int(roots[0])], roots.count > 1 ? nodes[Int(roots[1])] : empty,
                             roots.count > 2 ? nodes[Int(roots[2])] : empty, roots.count > 3 ? nodes[Int(roots[3])] : empty)
                    @inline(__always) func step(_ n: Node) -> Node {
                        let w = n.info & Node.wordBit != 0 ? k1 : k0
                        let child = Int(n.base) &+ Int(truncatingIfNeeded: (w &>> UInt64(n.info & 63)) & UInt64(n.info &>> 16))
                        let next = nodes[n.info & Node.leafBit != 0 ? 0 : child]
                        return n.info & Node.leafBit != 0 ? n : next
                    }
                    while n.0.info & n.1.info & n.2.info & n.3.info & Node.leafBit == 0 {
                        n = (step(n.0), step(n.1), step(n.2), step(n.3))
                    }
                    for t in 0..<roots.count {
                        let leaf = t == 0 ? n.0 : t == 1 ? n.1 : t == 2 ? n.2 : n.3
                        if let m = scan(leaf, from: from, f, k0, k1, groups, rules,
                                        bounded: true, below: Int32(truncatingIfNeeded: best?.index ?? Int(Int32.max))) {
                            best = m
                        }
                    }
                    return best
                }
            }
        }
    }

    /// `firstMatch(from: 0, _)` for `packets[lo..<hi]` (at most 64), descending all of them
    /// together a level at a time: the node loads of different packets do not depend on each
    /// other, so their cache misses overlap, and a packet already at its leaf stays there (a
    /// select, not a branch). Packets for which `usable` is false get index -2 (the caller
    /// answers them another way); no match is index -1.
    @inlinable
    func firstMatches(_ packets: UnsafeBufferPointer<PacketFields>, _ lo: Int, _ hi: Int,
                      _ results: UnsafeMutableBufferPointer<(index: Int32, result: MatchResult)>,
                      _ rules: UnsafeBufferPointer<CompiledRule>, usable: (PacketFields) -> Bool) {
        precondition(hi &- lo <= 64)
        // A forest: one packet at a time (each packet's trees descended together, then
        // scanned; see `forestMatch`). Walking the burst down each tree in lock-step and then
        // scanning with bounds was more instructions (691 against 416 per lookup on ipc1_10k)
        // and no faster.
        if roots.count > 1 {
            for i in lo..<hi {
                let f = packets[i]
                guard usable(f) else { results[i] = (-2, .noMatch); continue }
                if let m = forestMatch(from: 0, f, rules) {
                    results[i] = (Int32(truncatingIfNeeded: m.index), m.result)
                } else {
                    results[i] = (-1, .noMatch)
                }
            }
            return
        }
        // The packets' key words, then as many copies of the first packet's as pad the burst
        // to whole walk groups. Sized by the burst (at most 64 packets: 1 KB of keys), not by
        // the largest burst plus a walk group (1,088 bytes): Swift puts a temporary allocation
        // of up to 1 KB on the stack and, on Linux, mallocs a bigger one: it did, every call
        // (ClassifierBenchmarks' compiled-burst-10k, fifteenth session).
        let count = hi &- lo, padded = (count &+ Self.walkGroup &- 1) & ~(Self.walkGroup &- 1)
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2 &* padded) { keys in
        for k in 0..<padded { (keys[2 &* k], keys[2 &* k &+ 1]) = Self.keys(packets[k < count ? lo &+ k : lo]) }
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: padded) { cur in
            nodes.withUnsafeBufferPointer { nodes in
                lanes.withUnsafeBufferPointer { lanes in
                    let groups = Groups(lanes, start: laneStart, compact: compact)
                    // Groups of `walkGroup` packets descend in lock-step, every packet a
                    // level per round, until the whole group is at its leaves.
                    var g0 = 0
                    while g0 < padded {
                        for k in g0..<(g0 &+ Self.walkGroup) { cur[k] = 0 }
                        var leaves: UInt32
                        repeat {
                            // The AND of the group's `info`s: the leaf bit stays set once
                            // every packet of the group is at its leaf.
                            leaves = ~0
                            for k in g0..<(g0 &+ Self.walkGroup) {
                                let at = cur[k]
                                let n = nodes[Int(at)]
                                let w = keys[2 &* k &+ Int((n.info &>> 8) & 1)]
                                let child = n.base &+ UInt32(truncatingIfNeeded: (w &>> UInt64(n.info & 63)) & UInt64(n.info &>> 16))
                                // A conditional move (checked in the disassembly), not a branch.
                                cur[k] = n.info & Node.leafBit != 0 ? at : child
                                // At its leaf after this step: at a leaf now, or `lastBit`
                                // (bit 9, moved up to the leaf bit's place).
                                leaves &= n.info | n.info &<< 22
                            }
                        } while leaves & Node.leafBit == 0
                        g0 &+= Self.walkGroup
                    }
                    for i in lo..<hi {
                        let f = packets[i]
                        guard usable(f) else { results[i] = (-2, .noMatch); continue }
                        let k = i &- lo
                        if let m = scan(nodes[Int(cur[k])], from: 0, f, keys[2 &* k], keys[2 &* k &+ 1], groups, rules) {
                            results[i] = (Int32(truncatingIfNeeded: m.index), m.result)
                        } else {
                            results[i] = (-1, .noMatch)
                        }
                    }
                }
            }
        }
        }
    }
}
