// Wire.PacketParser over whole captures loaded in memory.
//
// One iteration = one pass over every record of the capture (scalingFactor .one), so the
// figures are per pass: divide by the capture's packet count for ns/packet (docs/benchmarks.md).
// The capture is read and indexed once, outside the measured region; the measured loop
// slices frames out of the one buffer and parses into a single reused ParsedPacket.
//
// Metrics left out, and why:
// - .peakMemoryResident: its sampling thread allocates (measured: 16-20 mallocs per iteration
//   with an empty benchmark body), which would hide the parser's own count of 0.
// - .throughput: per iteration it is 1 / wall clock, so it adds nothing to .wallClock, and its
//   static p90 threshold is the fastest decile, which on a shared machine is a sometimes-seen
//   fast mode (seen: 17,567 passes/s stored, 8,287 on the next run of the same binary).
// - .instructions: perf_events reports "not supported" on the project's machines.
// - ARC counters: they need the RuntimeInterposer trait (see Package.swift).

import Benchmark
import Capture
import Wire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A capture loaded once; `linkType` is the single interface's (classic pcap has one).
struct Corpus {
    let file: CaptureFile
    let linkType: LinkType
    let path: String
    var packets: Int { file.records.count }
    var capturedBytes: Int { file.records.reduce(0) { $0 + $1.capturedLength } }

    /// Nil when the file is missing; traps on a file that exists but cannot be used, since
    /// figures over a half-read capture would be misleading.
    static func load(_ path: String) -> Corpus? {
        guard fileExists(path) else { return nil }
        let file: CaptureFile
        do {
            file = try CaptureFile.open(path: path)
        } catch {
            fatalError("WireBenchmarks: cannot read \(path): \(error)")
        }
        guard file.interfaces.count == 1, let linkType = file.interfaces[0].linkType else {
            fatalError("WireBenchmarks: \(path): expected one interface with a known link type")
        }
        return Corpus(file: file, linkType: linkType, path: path)
    }
}

/// The repository root: this file is Benchmarks/Benchmarks/WireBenchmarks/WireBenchmarks.swift.
let repoRoot: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(4)
    return parts.joined(separator: "/")
}()

func fileExists(_ path: String) -> Bool { access(path, R_OK) == 0 }

/// The bulk captures live in the shared corpus beside the repo; the repo's own capture is the
/// fallback when the shared corpus is absent.
let bulkDirectory = repoRoot + "/../shared/captures/bulk"
let fallbackCapture = repoRoot + "/captures/edge-eth0.pcap"

// MARK: - Measured passes

/// Parses every record once; returns a fold of parsed fields so the parse cannot be dropped.
/// One closure around the whole batch: nothing is allocated per packet.
@inline(never)
func parsePass(_ corpus: Corpus, into parsed: inout ParsedPacket) -> UInt64 {
    let linkType = corpus.linkType
    return corpus.file.withUnsafeBytes { base in
        var sum: UInt64 = 0
        for rec in corpus.file.records {
            let ok = PacketParser.parse(base.slice(rec.offset, rec.capturedLength), linkType: linkType, into: &parsed)
            sum &+= UInt64(parsed.source) << 32 | UInt64(parsed.destination)
            sum &+= UInt64(parsed.sourcePort) << 16 | UInt64(parsed.destinationPort)
            sum &+= UInt64(parsed.proto) << 8 | UInt64(parsed.kind.rawValue)
            sum &+= UInt64(parsed.tcpFlags.rawValue) << 24 | UInt64(parsed.drop?.rawValue ?? 0xFF) << 16
            sum &+= (ok ? 1 : 0) + (parsed.ipChecksumValid ? 2 : 0)
        }
        return sum
    }
}

/// Parses every record and hashes its flow key (FNV-1a over the key's fields, a fixed seed:
/// repeatable across runs, unlike Hasher).
@inline(never)
func flowKeyPass(_ corpus: Corpus, into parsed: inout ParsedPacket) -> UInt64 {
    let linkType = corpus.linkType
    return corpus.file.withUnsafeBytes { base in
        var sum: UInt64 = 0
        for rec in corpus.file.records {
            guard PacketParser.parse(base.slice(rec.offset, rec.capturedLength), linkType: linkType, into: &parsed),
                  parsed.kind == .ipv4 else { continue }
            sum ^= fnv1a(parsed.flowKey)
        }
        return sum
    }
}

@inline(__always)
func fnv1a(_ k: FlowKey) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    @inline(__always) func mix(_ v: UInt64) { h = (h ^ v) &* 0x0000_0100_0000_01b3 }
    mix(UInt64(k.source))
    mix(UInt64(k.destination))
    mix(UInt64(k.sourcePort) << 16 | UInt64(k.destinationPort))
    mix(UInt64(k.proto))
    return h
}

/// What one pass saw, printed once per process so a run says which capture it measured.
func describe(_ corpus: Corpus) -> String {
    var parsed = ParsedPacket()
    var ipv4 = 0, dropped = 0, badChecksum = 0
    corpus.file.withUnsafeBytes { base in
        for rec in corpus.file.records {
            let ok = PacketParser.parse(base.slice(rec.offset, rec.capturedLength), linkType: corpus.linkType, into: &parsed)
            if !ok { dropped += 1 }
            if parsed.kind == .ipv4 { ipv4 += 1; if !parsed.ipChecksumValid { badChecksum += 1 } }
        }
    }
    return "WireBenchmarks: \(corpus.path): \(corpus.packets) packets, \(corpus.capturedBytes) captured bytes, "
        + "\(ipv4) IPv4, \(dropped) dropped, \(badChecksum) bad IPv4 checksums"
}

// MARK: - Registration

let benchmarks: @Sendable () -> Void = {
    // Generous relative tolerances on time (shared, noisy machine); no tolerance on mallocs:
    // a pass must allocate nothing, and the committed threshold is 0.
    let time = BenchmarkThresholds(relative: [.p50: 50.0, .p90: 50.0])
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .microseconds,
        warmupIterations: 5,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 2_000,
        thresholds: [
            .wallClock: time,
            .mallocCountTotal: BenchmarkThresholds(absolute: [.p50: 0, .p90: 0, .p100: 0]),
        ]
    )

    let primary: Corpus
    if let c = Corpus.load(bulkDirectory + "/echo-connections.pcap") {
        primary = c
    } else if let c = Corpus.load(fallbackCapture) {
        print("WireBenchmarks: \(bulkDirectory) not found; falling back to the repo's capture"
            + " (the committed thresholds are for echo-connections.pcap)")
        primary = c
    } else {
        fatalError("WireBenchmarks: neither \(bulkDirectory)/echo-connections.pcap nor \(fallbackCapture) exists")
    }
    print(describe(primary))

    Benchmark("parse") { benchmark in
        var parsed = ParsedPacket()
        for _ in benchmark.scaledIterations {
            blackHole(parsePass(primary, into: &parsed))
        }
    }

    Benchmark("flowKey") { benchmark in
        var parsed = ParsedPacket()
        for _ in benchmark.scaledIterations {
            blackHole(flowKeyPass(primary, into: &parsed))
        }
    }

    // A small real mix (HTTP, DNS, SSDP, some IPv6): a different packet-size and protocol profile.
    if let mixed = Corpus.load(bulkDirectory + "/1kxun.pcap") {
        print(describe(mixed))
        Benchmark("parse-1kxun") { benchmark in
            var parsed = ParsedPacket()
            for _ in benchmark.scaledIterations {
                blackHole(parsePass(mixed, into: &parsed))
            }
        }
    }
}
