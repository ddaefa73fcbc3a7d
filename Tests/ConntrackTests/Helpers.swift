import Wire
@testable import Conntrack

let S = Timeouts.second
let T0: Int64 = 1_700_000_000 * 1_000_000_000

func ip(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> UInt32 {
    UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
}

func key(_ src: UInt32, _ sport: UInt16, _ dst: UInt32, _ dport: UInt16, _ proto: UInt8 = 6) -> FlowKey {
    FlowKey(source: src, destination: dst, sourcePort: sport, destinationPort: dport, proto: proto)
}

func makeTable(capacity: Int = 1024, timeouts: Timeouts = .kernelDefaults) -> ConnTable {
    ConnTable(capacity: capacity, timeouts: timeouts, secret: (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210))
}

let client = ip(10, 0, 0, 1), server = ip(10, 0, 0, 2)
let c2s = key(client, 40000, server, 80)
let s2c = c2s.reversed
