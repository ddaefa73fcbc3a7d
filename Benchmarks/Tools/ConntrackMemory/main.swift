// Bytes per connection of Conntrack.ConnTable, computed and measured, in one process:
//
//   cd Benchmarks && swift run -c release ConntrackMemory [connections]   # default 1,000,000
//
// Computed: MemoryLayout<Connection>.stride + 16 bytes of Links (4 x Int32: two hash-chain
// links and two timer-wheel links; internal to Conntrack, so its size is restated here) +
// the bucket heads (Int32, a power of two >= 2 x capacity) divided by the capacity.
// Measured: VmRSS from /proc/self/status before the table exists, after `init` (the bucket
// heads and wheel are written; `conns`/`links` are only reserved), and after inserting N
// connections (random TCP tuples, the same generator as ConntrackBenchmarks). The tuples
// array (N x 16 bytes) is built before the first reading, so it is not counted.
// Not a package-benchmark suite (see Package.swift): peakMemoryResident's sampler allocates.

import Conntrack
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// A `kB` field of /proc/self/status (VmRSS, VmHWM), in bytes.
func status(_ field: String) -> Int {
    guard let f = fopen("/proc/self/status", "r") else { return -1 }
    defer { fclose(f) }
    var buf = [UInt8](repeating: 0, count: 8192)   // the file is ~1.5 kB
    let got = fread(&buf, 1, buf.count, f)
    for line in String(decoding: buf[..<got], as: UTF8.self).split(separator: "\n") where line.hasPrefix(field + ":") {
        let kb = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first
        return (kb.flatMap { Int($0) } ?? -1) * 1024
    }
    return -1
}

let n = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1_000_000 : 1_000_000

var g = SplitMix64(seed: 0x5EED_0000 &+ UInt64(n))
var tuples: [FlowKey] = []
tuples.reserveCapacity(n)
for _ in 0..<n {
    let r = g.next(), s = g.next()
    tuples.append(FlowKey(source: UInt32(truncatingIfNeeded: r), destination: UInt32(truncatingIfNeeded: r >> 32),
                          sourcePort: 1024 &+ UInt16(truncatingIfNeeded: s) % 64_512,
                          destinationPort: UInt16(truncatingIfNeeded: s >> 16), proto: 6))
}

var buckets = 1
while buckets < 2 * n { buckets <<= 1 }
let connStride = MemoryLayout<Connection>.stride
let linksStride = 16
let headsPerConn = Double(buckets * MemoryLayout<Int32>.stride) / Double(n)
let wheelBytes = 4096 * MemoryLayout<Int32>.stride

let rss0 = status("VmRSS")
var table = ConnTable(capacity: n)
let rss1 = status("VmRSS")
var added = 0
for o in tuples {
    if let r = ConnTable.replyTuple(for: o), table.insert(original: o, reply: r, now: 1_000_000_000) != nil { added += 1 }
}
let rss2 = status("VmRSS")
let hwm = status("VmHWM")
precondition(added == n && table.count == n, "inserted \(added) of \(n)")

func mib(_ b: Int) -> String { String(Double(b * 10 / 1_048_576) / 10) + " MiB" }
func per(_ b: Int) -> String { String(Double(b * 10 / n) / 10) }

print("connections: \(n) (capacity \(n), \(buckets) buckets)")
print("computed: Connection stride \(connStride) + Links \(linksStride) + bucket heads \(headsPerConn) = "
    + "\(Double(connStride + linksStride) + headsPerConn) bytes/connection (+ \(wheelBytes) bytes of timer wheel per table)")
print("VmRSS before table: \(mib(rss0)); after init: \(mib(rss1)) (+\(mib(rss1 - rss0))); "
    + "after \(n) inserts: \(mib(rss2)) (+\(mib(rss2 - rss0)) since before)")
print("measured: \(per(rss2 - rss0)) bytes/connection (RSS growth / connections); VmHWM \(mib(hwm))")
withExtendedLifetime(table) {}
