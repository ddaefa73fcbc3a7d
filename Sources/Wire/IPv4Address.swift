/// An IPv4 address in host order (`a.b.c.d` is `a << 24 | b << 16 | c << 8 | d`).
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    @inlinable
    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad notation strictly: four decimal octets 0-255, no leading '+', no spaces.
    public init?(_ text: Substring) {
        var parts: UInt32 = 0
        var octets = 0
        var current: UInt32 = 0
        var digits = 0
        for ch in text.utf8 {
            if ch == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return nil }
                parts = parts << 8 | current
                octets += 1; current = 0; digits = 0
            } else if ch >= UInt8(ascii: "0") && ch <= UInt8(ascii: "9") {
                current = current * 10 + UInt32(ch - UInt8(ascii: "0"))
                digits += 1
                guard digits <= 3, current <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard octets == 3, digits > 0 else { return nil }
        value = parts << 8 | current
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    public var description: String {
        "\(value >> 24).\((value >> 16) & 0xff).\((value >> 8) & 0xff).\(value & 0xff)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }

    public var isMulticast: Bool { value >> 28 == 0xE }
    public var isLimitedBroadcast: Bool { value == 0xFFFF_FFFF }
    public var isLoopback: Bool { value >> 24 == 127 }
    public var isZeroNet: Bool { value >> 24 == 0 }
}

/// An address with a prefix length, e.g. `10.0.0.0/8`. `address` keeps the bits as written
/// (iptables and iproute2 both accept host bits set; matching always masks).
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv4Address
    public var length: UInt8

    public init(address: IPv4Address, length: UInt8) {
        precondition(length <= 32)
        self.address = address
        self.length = length
    }

    @inlinable
    public var mask: UInt32 { length == 0 ? 0 : ~UInt32(0) << (32 - UInt32(length)) }

    @inlinable
    public var network: UInt32 { address.value & mask }

    @inlinable
    public func contains(_ a: UInt32) -> Bool { (a & mask) == network }

    public var broadcast: UInt32 { network | ~mask }

    /// `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.a.s.k` (contiguous masks only).
    public init?(_ text: Substring) {
        if let slash = text.firstIndex(of: "/") {
            guard let a = IPv4Address(text[..<slash]) else { return nil }
            let rest = text[text.index(after: slash)...]
            if let n = UInt8(rest), n <= 32, rest.allSatisfy({ $0.isASCII && $0.isNumber }) {
                self.init(address: a, length: n)
            } else if let m = IPv4Address(rest) {
                let ones = m.value.nonzeroBitCount
                let expected: UInt32 = ones == 0 ? 0 : ~UInt32(0) << (32 - UInt32(ones))
                guard m.value == expected else { return nil }
                self.init(address: a, length: UInt8(ones))
            } else {
                return nil
            }
        } else {
            guard let a = IPv4Address(text) else { return nil }
            self.init(address: a, length: 32)
        }
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    public var description: String { "\(IPv4Address(network))/\(length)" }
}
