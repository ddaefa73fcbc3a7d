/// The table's keyed hash: SipHash-1-3 over the 16 bytes of a `FlowKey`, with a 128-bit secret.
///
/// Why SipHash and not a seeded multiply-xorshift mix: SipHash is a keyed PRF, so without the
/// secret an attacker who can choose tuples (ports, addresses) cannot find colliding sets; a
/// multiply/xorshift mix with a secret seed is not a PRF and several such "seeded" hashes
/// (MurmurHash2/3, CityHash) have seed-independent multicollisions. The kernel keys its
/// conntrack hash with siphash for the same reason. 1-3 rounds (as Rust's std and Swift's own
/// `Hasher`) rather than 2-4: a hash table is not a MAC, and this is the per-packet path.
/// Why not `Hasher`: its seed can be neither set (tests need a fixed secret) nor relied on as a
/// secret (SWIFT_DETERMINISTIC_HASHING makes it a constant), and it streams through a generic
/// buffer. Cost: 2 compression + 3 finalisation SipRounds, about 5-10 ns, no memory access.
@usableFromInline
struct SipKey: Sendable {
    @usableFromInline let k0: UInt64
    @usableFromInline let k1: UInt64
    @usableFromInline init(_ k0: UInt64, _ k1: UInt64) { self.k0 = k0; self.k1 = k1 }

    /// SipHash-c-d of the two little-endian 64-bit words (m0, m1), i.e. of a 16-byte message.
    @inlinable @inline(__always)
    func hash(_ m0: UInt64, _ m1: UInt64, c: Int = 1, d: Int = 3) -> UInt64 {
        var v0 = k0 ^ 0x736f_6d65_7073_6575
        var v1 = k1 ^ 0x646f_7261_6e64_6f6d
        var v2 = k0 ^ 0x6c79_6765_6e65_7261
        var v3 = k1 ^ 0x7465_6462_7974_6573
        @inline(__always) func round() {
            v0 &+= v1; v1 = v1.rotl(13); v1 ^= v0; v0 = v0.rotl(32)
            v2 &+= v3; v3 = v3.rotl(16); v3 ^= v2
            v0 &+= v3; v3 = v3.rotl(21); v3 ^= v0
            v2 &+= v1; v1 = v1.rotl(17); v1 ^= v2; v2 = v2.rotl(32)
        }
        v3 ^= m0; for _ in 0..<c { round() }; v0 ^= m0
        v3 ^= m1; for _ in 0..<c { round() }; v0 ^= m1
        let b: UInt64 = 16 << 56                 // length 16, no tail bytes
        v3 ^= b; for _ in 0..<c { round() }; v0 ^= b
        v2 ^= 0xff
        for _ in 0..<d { round() }
        return v0 ^ v1 ^ v2 ^ v3
    }
}

extension UInt64 {
    @inlinable @inline(__always)
    func rotl(_ n: UInt64) -> UInt64 { (self << n) | (self >> (64 &- n)) }
}
