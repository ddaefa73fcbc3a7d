// Every multi-byte read of packet bytes goes through these helpers: big-endian (network order)
// via loadUnaligned, never load(as:) (packet fields are not aligned).
//
// Callers check bounds once (a view's failable init); these helpers do not check again in
// release builds.

extension UnsafeRawBufferPointer {
    @inlinable @inline(__always)
    public func u8(_ offset: Int) -> UInt8 {
        self[offset]
    }

    @inlinable @inline(__always)
    public func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: self.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always)
    public func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: self.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable @inline(__always)
    public func le16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: self.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always)
    public func le32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: self.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// A sub-buffer; the caller has checked `offset + count <= self.count`.
    @inlinable @inline(__always)
    public func slice(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[offset ..< offset + count])
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable @inline(__always)
    public func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: self.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always)
    public func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: self.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable @inline(__always)
    public func setBE16(_ offset: Int, _ value: UInt16) {
        self.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inlinable @inline(__always)
    public func setBE32(_ offset: Int, _ value: UInt32) {
        self.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }
}

/// Big-endian appends for builders (tests, capture generator); not used per packet.
extension Array where Element == UInt8 {
    @inlinable
    public mutating func appendBE16(_ v: UInt16) {
        append(UInt8(v >> 8)); append(UInt8(v & 0xff))
    }

    @inlinable
    public mutating func appendBE32(_ v: UInt32) {
        appendBE16(UInt16(v >> 16)); appendBE16(UInt16(v & 0xffff))
    }

    @inlinable
    public mutating func appendLE16(_ v: UInt16) {
        append(UInt8(v & 0xff)); append(UInt8(v >> 8))
    }

    @inlinable
    public mutating func appendLE32(_ v: UInt32) {
        appendLE16(UInt16(v & 0xffff)); appendLE16(UInt16(v >> 16))
    }

    @inlinable
    public mutating func setBE16(_ offset: Int, _ v: UInt16) {
        self[offset] = UInt8(v >> 8); self[offset + 1] = UInt8(v & 0xff)
    }

    @inlinable
    public func be16(_ offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }
}

/// A small deterministic generator (SplitMix64) for reproducible randomness: the engine's
/// `statistic --mode random`, tests and benchmarks.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
