/// The Internet checksum in one place: RFC 1071 (full) and RFC 1624 (incremental).
///
/// Sums are kept as UInt32 partial sums (not yet folded) so that a pseudo-header and a payload
/// can be added together; `fold` finishes one.
public enum Checksum {
    /// Adds the bytes as big-endian 16-bit words (RFC 1071); an odd last byte is padded with 0.
    @inlinable
    public static func sum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
        var acc = UInt64(initial)
        let n = bytes.count
        var i = 0
        // 8 bytes at a time: one's-complement addition is associative and byte-order
        // independent up to a final swap, so sum native 32-bit halves and fix order at the end.
        var wide: UInt64 = 0
        while i + 8 <= n {
            let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            wide &+= (w & 0xFFFF_FFFF)
            wide &+= (w >> 32)
            i += 8
        }
        // Fold the wide native-order sum to 16 bits, then convert to network order.
        while wide >> 16 != 0 { wide = (wide & 0xFFFF) &+ (wide >> 16) }
        let native = UInt16(truncatingIfNeeded: wide)
        acc &+= UInt64(UInt16(bigEndian: native))
        while i + 2 <= n {
            acc &+= UInt64(bytes.be16(i))
            i += 2
        }
        if i < n {
            acc &+= UInt64(bytes[i]) << 8
        }
        while acc >> 32 != 0 { acc = (acc & 0xFFFF_FFFF) &+ (acc >> 32) }
        return UInt32(truncatingIfNeeded: acc)
    }

    /// Folds a partial sum to 16 bits and complements it: the value to store in a header.
    @inlinable
    public static func fold(_ sum: UInt32) -> UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// Checksum of the bytes, ready to store (RFC 1071).
    @inlinable
    public static func compute(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        fold(sum(bytes))
    }

    /// Partial sum of the TCP/UDP pseudo-header (source, destination, zero+protocol, length).
    @inlinable
    public static func pseudoHeaderSum(src: UInt32, dst: UInt32, proto: UInt8, length: UInt16) -> UInt32 {
        (src >> 16) &+ (src & 0xFFFF) &+ (dst >> 16) &+ (dst & 0xFFFF) &+ UInt32(proto) &+ UInt32(length)
    }

    /// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for one 16-bit field changing from `old` to `new`.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        var s = UInt32(~checksum) &+ UInt32(~old) &+ UInt32(new)
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// RFC 1624 for a 32-bit field (an address), as two 16-bit words.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        var s = UInt32(~checksum)
            &+ UInt32(~UInt16(truncatingIfNeeded: old >> 16)) &+ UInt32(~UInt16(truncatingIfNeeded: old))
            &+ (new >> 16) &+ (new & 0xFFFF)
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return ~UInt16(truncatingIfNeeded: s)
    }
}
