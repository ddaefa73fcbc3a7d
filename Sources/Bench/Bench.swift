#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CMallocCounter
import Capture
import Engine
import NetModel
import Rules
import Wire

/// One capture to replay and the interface its packets arrive on (`local`: locally generated,
/// they take the OUTPUT path).
public struct BenchInput: Sendable {
    public var interface: String
    public var path: String
    public init(interface: String, path: String) { self.interface = interface; self.path = path }
}

/// What is timed.
public enum BenchStage: String, Sendable, CaseIterable {
    /// `Engine.process`: parse, hooks and chains, routing, conntrack, NAT, verdict (no output).
    case full
    /// `PacketParser.parse` only.
    case parse
    /// The chains of the FORWARD hook, for packets parsed and routed beforehand.
    case classify
}

public struct BenchOptions: Sendable {
    public var ruleSet: RuleSet
    public var network: NetworkModel
    public var inputs: [BenchInput]
    public var engine = EngineOptions()
    public var stage: BenchStage = .full
    /// Timed passes repeat until this much time has passed (at least one pass).
    public var minSeconds: Double = 3
    /// Untimed passes first: conntrack fills, buffers reach their working size.
    public var warmupPasses = 1
    /// Progress on stderr (the caller passes isatty(2)).
    public var progress = false

    public init(ruleSet: RuleSet, network: NetworkModel, inputs: [BenchInput]) {
        self.ruleSet = ruleSet; self.network = network; self.inputs = inputs
    }
}

public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The figures of one run.
public struct BenchResult: Sendable {
    public var stage: BenchStage = .full
    public var classifier: ClassifierKind = .linear
    /// Packets processed in the timed passes.
    public var packets = 0
    /// Captured bytes of those packets.
    public var bytes = 0
    public var seconds = 0.0
    /// CPU time of this thread over the same passes: on a shared machine, wall time includes
    /// time the thread waited for a core; CPU time does not.
    public var cpuSeconds = 0.0
    public var passes = 0
    public var warmupPasses = 0
    /// Packets (and captured bytes) in one pass over the inputs.
    public var capturePackets = 0
    public var captureBytes = 0
    /// Records skipped because their link type cannot be decoded.
    public var skipped = 0
    /// Allocations during the timed passes; nil when this process's malloc is not the counting one.
    public var mallocs: UInt64? = nil
    /// Live connections after the last pass; nil when conntrack is off.
    public var connections: Int? = nil
    public var conntrackCapacity: Int? = nil
    public var rules = 0
    /// VmHWM and VmRSS from /proc/self/status, bytes (nil where unavailable).
    public var peakRSS: Int? = nil
    public var rss: Int? = nil
    /// Bytes the bench itself holds for the inputs (frames, packet table, pre-parsed packets).
    public var inputMemory = 0
    /// Verdicts over the timed passes (full: forwarded, local, dropped, ...; classify: accepted,
    /// dropped; parse: parsed, malformed).
    public var verdicts: [(String, Int)] = []
    public var inputs: [BenchInput] = []

    public var packetsPerSecond: Double { seconds > 0 ? Double(packets) / seconds : 0 }
    public var nsPerPacket: Double { packets > 0 ? seconds * 1e9 / Double(packets) : 0 }
    public var bytesPerSecond: Double { seconds > 0 ? Double(bytes) / seconds : 0 }
    public var nsPerPacketCPU: Double { packets > 0 ? cpuSeconds * 1e9 / Double(packets) : 0 }
    public var mallocsPerPacket: Double? { mallocs.map { packets > 0 ? Double($0) / Double(packets) : 0 } }

    /// One JSON object, one line.
    public var json: String {
        var o = JSONObject()
        o.add("stage", string: stage.rawValue)
        o.add("packets", int: packets)
        o.add("bytes", int: bytes)
        o.add("seconds", double: seconds)
        o.add("packets_per_second", double: packetsPerSecond)
        o.add("mpps", double: packetsPerSecond / 1e6)
        o.add("ns_per_packet", double: nsPerPacket)
        o.add("cpu_seconds", double: cpuSeconds)
        o.add("ns_per_packet_cpu", double: nsPerPacketCPU)
        o.add("mpps_cpu", double: cpuSeconds > 0 ? Double(packets) / cpuSeconds / 1e6 : 0)
        o.add("bytes_per_second", double: bytesPerSecond)
        o.add("gbps", double: bytesPerSecond * 8 / 1e9)
        o.add("mallocs", int: mallocs.map { Int($0) })
        o.add("mallocs_per_packet", double: mallocsPerPacket)
        o.add("connections", int: connections)
        o.add("conntrack_capacity", int: conntrackCapacity)
        o.add("rules", int: rules)
        o.add("classifier", string: classifier.rawValue)
        o.add("passes", int: passes)
        o.add("warmup_passes", int: warmupPasses)
        o.add("capture_packets", int: capturePackets)
        o.add("capture_bytes", int: captureBytes)
        o.add("skipped_records", int: skipped)
        o.add("peak_rss_bytes", int: peakRSS)
        o.add("rss_bytes", int: rss)
        o.add("input_memory_bytes", int: inputMemory)
        var v = JSONObject()
        for (k, n) in verdicts { v.add(k, int: n) }
        o.add("verdicts", raw: v.text)
        o.add("inputs", raw: "[" + inputs.map { "{\"in\":\(jsonString($0.interface)),\"capture\":\(jsonString($0.path))}" }.joined(separator: ",") + "]")
        return o.text
    }
}

/// A packet of the inputs, in merged order: where its bytes are in the bench's own buffer.
struct BenchPacket {
    var offset: Int
    var length: Int32
    var wireLength: Int32
    var linkType: LinkType
    /// Engine interface index; -1 for locally generated packets.
    var inInterface: Int16
    /// Nanoseconds since the first packet of the inputs.
    var time: Int64
}

public enum Bencher {
    /// The longest gap between consecutive packets kept when the inputs are replayed.
    static let maxGap: Int64 = 1_000_000_000

    /// Whether allocations made by the Swift runtime reach the counting malloc (true when the
    /// executable links CMallocCounter and exports its malloc).
    public static func mallocCountingWorks() -> Bool {
        sluice_malloc_counting(1)
        let before = sluice_malloc_count()
        let a = [UInt64](repeating: 7, count: 1000 + Int(sluice_free_count() & 1))
        let after = sluice_malloc_count()
        sluice_malloc_counting(0)
        return after > before && a.count >= 1000
    }

    /// Loads the inputs into memory, builds the engine, runs untimed warm-up passes and then
    /// timed passes until `minSeconds` have passed.
    public static func run(_ o: BenchOptions) throws -> BenchResult {
        guard !o.inputs.isEmpty else { throw BenchError("no capture given") }
        let countMallocs = mallocCountingWorks()
        var engine = try Engine(rules: o.ruleSet, network: o.network,
                                extraInterfaces: o.inputs.map(\.interface), options: o.engine)

        // Inputs, merged by timestamp (ties: earlier input first), copied into one buffer.
        var files: [CaptureFile] = []
        for i in o.inputs {
            do { files.append(try CaptureFile.open(path: i.path)) } catch { throw BenchError("\(error)") }
        }
        var result = BenchResult()
        result.stage = o.stage
        result.classifier = o.engine.classifier
        result.inputs = o.inputs
        result.rules = engine.ruleCount
        var inIndex: [Int16] = []
        for i in o.inputs { inIndex.append(i.interface == "local" ? -1 : engine.interfaceIndex(i.interface) ?? -1) }

        var total = 0
        for f in files { for r in f.records { total += r.capturedLength } }
        let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 64)
        defer { arena.deallocate() }
        var packets: [BenchPacket] = []
        packets.reserveCapacity(files.reduce(0) { $0 + $1.records.count })
        var cursor = [Int](repeating: 0, count: files.count)
        var first = Int64.max
        var used = 0, maxFrame = 0
        while true {
            var pick = -1
            var best = Int64.max
            for k in files.indices where cursor[k] < files[k].records.count {
                let ts = files[k].records[cursor[k]].timestampNanos
                if pick < 0 || ts < best { pick = k; best = ts }
            }
            if pick < 0 { break }
            let file = files[pick]
            let index = cursor[pick]
            cursor[pick] += 1
            let rec = file.records[index]
            guard let lt = file.interfaces[rec.interface].linkType else { result.skipped += 1; continue }
            file.withFrame(index) { src in
                if rec.capturedLength > 0 { (arena.baseAddress! + used).copyMemory(from: src.baseAddress!, byteCount: rec.capturedLength) }
            }
            first = min(first, rec.timestampNanos)
            packets.append(BenchPacket(offset: used, length: Int32(rec.capturedLength), wireLength: Int32(rec.originalLength),
                                       linkType: lt, inInterface: inIndex[pick], time: rec.timestampNanos))
            used += rec.capturedLength
            maxFrame = max(maxFrame, rec.capturedLength)
        }
        files.removeAll()
        guard !packets.isEmpty else { throw BenchError("the captures hold no packet with a link type Sluice decodes") }
        // Time starts at 0 with the first packet. A gap of more than 1 s between consecutive
        // packets counts as 1 s (some captures are spliced from recordings years apart), so a
        // pass spans at most 1 s per packet and Int64 nanoseconds last for billions of passes.
        var clock: Int64 = 0, previous = first
        for k in packets.indices {
            clock += min(max(packets[k].time - previous, 0), Bencher.maxGap)
            previous = max(previous, packets[k].time)
            packets[k].time = clock
        }
        // Each pass is the inputs again, later in time by their span plus 1 ms, as a capture
        // looped by `tcpreplay --loop` would be: connections of one pass live on into the next
        // while their timeouts allow.
        let period = clock + 1_000_000
        result.capturePackets = packets.count
        result.captureBytes = used
        result.inputMemory = total + packets.capacity * MemoryLayout<BenchPacket>.stride

        var run = Run(packets: packets, arena: arena, maxFrame: maxFrame, period: period)
        defer { run.scratch.deallocate() }
        switch o.stage {
        case .full: try run.full(&engine, o, &result, countMallocs: countMallocs)
        case .parse: run.parse(o, &result, countMallocs: countMallocs)
        case .classify: run.classify(&engine, o, &result, countMallocs: countMallocs)
        }
        if let table = engine.conntrack {
            let now = Int64(result.passes + result.warmupPasses) * period
            result.connections = table.liveIndices(now: now).count
            result.conntrackCapacity = table.capacity
        }
        let status = ProcStatus.read()
        result.peakRSS = status.hwm
        result.rss = status.rss
        return result
    }
}

/// The timed loops. Each keeps its working state in locals; nothing in a pass allocates except
/// what the engine itself would (which is what `mallocs` measures).
struct Run {
    var packets: [BenchPacket]
    let arena: UnsafeMutableRawBufferPointer
    let scratch: UnsafeMutableRawBufferPointer
    let period: Int64

    init(packets: [BenchPacket], arena: UnsafeMutableRawBufferPointer, maxFrame: Int, period: Int64) {
        self.packets = packets
        self.arena = arena
        self.period = period
        // Room past the longest frame: targets that grow a packet (TCPMSS) need it.
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: maxFrame + 128, alignment: 64)
    }

    /// Repeats `pass` (warm-up passes untimed and uncounted), then timed passes until
    /// `minSeconds`; returns (timed passes, seconds, mallocs).
    func repeatPasses(_ o: BenchOptions, countMallocs: Bool, label: String, _ pass: (_ number: Int, _ timed: Bool) -> Void)
        -> (passes: Int, seconds: Double, cpu: Double, mallocs: UInt64?) {
        var progress = BenchProgress(enabled: o.progress, label: label)
        for w in 0 ..< o.warmupPasses { pass(w, false) }
        var passes = 0
        let m0 = sluice_malloc_count()
        if countMallocs { sluice_malloc_counting(1) }
        let c0 = cpuNow()
        let t0 = now()
        var elapsed = 0.0
        repeat {
            pass(o.warmupPasses + passes, true)
            passes += 1
            elapsed = now() - t0
            if progress.enabled {
                sluice_malloc_counting(0)
                progress.show(passes: passes, seconds: elapsed, packets: passes * packets.count)
                if countMallocs { sluice_malloc_counting(1) }
            }
        } while elapsed < o.minSeconds
        let cpu = cpuNow() - c0
        sluice_malloc_counting(0)
        let m1 = sluice_malloc_count()
        progress.finish()
        return (passes, elapsed, cpu, countMallocs ? m1 - m0 : nil)
    }

    mutating func full(_ engine: inout Engine, _ o: BenchOptions, _ r: inout BenchResult, countMallocs: Bool) throws {
        var parsed = ParsedPacket()
        var trace = HitTrace()
        trace.recordHits = false   // as `sluice run` runs
        var emitted = Emitted()
        var counts = [Int](repeating: 0, count: VerdictKind.allCases.count)
        let scratch = self.scratch, arena = self.arena, period = self.period
        let packets = self.packets
        let run = repeatPasses(o, countMallocs: countMallocs, label: "full") { number, timed in
            let shift = Int64(number) * period
            packets.withUnsafeBufferPointer { list in
                for k in 0 ..< list.count {
                    let p = list[k]
                    let n = Int(p.length)
                    scratch.baseAddress!.copyMemory(from: arena.baseAddress! + p.offset, byteCount: n)
                    let frame = UnsafeMutableRawBufferPointer(start: scratch.baseAddress!, count: n)
                    let d = engine.process(frame: frame, capacity: scratch.count, linkType: p.linkType, wireLength: Int(p.wireLength),
                                           inInterface: p.inInterface >= 0 ? p.inInterface : nil, timestampNanos: p.time &+ shift,
                                           parsed: &parsed, trace: &trace, emitted: &emitted)
                    if timed { counts[Int(d.kind.rawValue)] &+= 1 }
                }
            }
        }
        r.warmupPasses = o.warmupPasses
        r.passes = run.passes
        r.seconds = run.seconds
        r.cpuSeconds = run.cpu
        r.mallocs = run.mallocs
        r.packets = run.passes * packets.count
        r.bytes = run.passes * r.captureBytes
        r.verdicts = VerdictKind.allCases.map { ($0.name, counts[Int($0.rawValue)]) }
    }

    func parse(_ o: BenchOptions, _ r: inout BenchResult, countMallocs: Bool) {
        var parsed = ParsedPacket()
        var ok = 0, bad = 0
        var fold: UInt64 = 0
        let arena = self.arena
        let packets = self.packets
        let run = repeatPasses(o, countMallocs: countMallocs, label: "parse") { _, timed in
            packets.withUnsafeBufferPointer { list in
                for k in 0 ..< list.count {
                    let p = list[k]
                    let frame = UnsafeRawBufferPointer(start: arena.baseAddress! + p.offset, count: Int(p.length))
                    let good = PacketParser.parse(frame, linkType: p.linkType, wireLength: Int(p.wireLength), into: &parsed)
                    fold &+= UInt64(parsed.source) &+ UInt64(parsed.destinationPort)
                    if timed { if good { ok &+= 1 } else { bad &+= 1 } }
                }
            }
        }
        blackHole(fold)
        r.warmupPasses = o.warmupPasses
        r.passes = run.passes
        r.seconds = run.seconds
        r.cpuSeconds = run.cpu
        r.mallocs = run.mallocs
        r.packets = run.passes * packets.count
        r.bytes = run.passes * r.captureBytes
        r.verdicts = [("parsed", ok), ("malformed", bad)]
    }

    /// Packets that parse as IPv4 and arrived on an interface, parsed and routed once before
    /// timing, then put through the FORWARD hook's chains (in: arrival interface; out: the
    /// routed interface, or none when the route is not a unicast one).
    mutating func classify(_ engine: inout Engine, _ o: BenchOptions, _ r: inout BenchResult, countMallocs: Bool) {
        struct Prepared { var index: Int32; var out: Int16 }
        var prepared: [Prepared] = []
        var parsedAll: [ParsedPacket] = []
        var parsed = ParsedPacket()
        var bytes = 0
        for (k, p) in packets.enumerated() where p.inInterface >= 0 {
            let frame = UnsafeRawBufferPointer(start: arena.baseAddress! + p.offset, count: Int(p.length))
            guard PacketParser.parse(frame, linkType: p.linkType, wireLength: Int(p.wireLength), into: &parsed), parsed.kind == .ipv4 else { continue }
            var out: Int16 = -1
            let model = o.network.interfaceIndex(named: engine.interfaceName(p.inInterface))
            if case .unicast(let oif, _) = o.network.route(destination: parsed.destination, source: parsed.source, inputInterface: model,
                                                         mark: 0, tos: parsed.tos) {
                out = engine.interfaceIndex(o.network.interfaceName(oif)) ?? -1
            }
            prepared.append(Prepared(index: Int32(k), out: out))
            parsedAll.append(parsed)
            bytes += Int(p.length)
        }
        r.inputMemory += prepared.capacity * MemoryLayout<Prepared>.stride + parsedAll.capacity * MemoryLayout<ParsedPacket>.stride
        var trace = HitTrace()
        trace.recordHits = false   // as `sluice run` runs
        var emitted = Emitted()
        var accepted = 0, dropped = 0
        let arena = self.arena
        let packets = self.packets
        let run = repeatPasses(o, countMallocs: countMallocs, label: "classify") { number, timed in
            let now = Int64(number) * period
            packets.withUnsafeBufferPointer { list in
                prepared.withUnsafeBufferPointer { prep in
                    parsedAll.withUnsafeBufferPointer { pp in
                        for k in 0 ..< prep.count {
                            let p = list[Int(prep[k].index)]
                            let frame = UnsafeMutableRawBufferPointer(start: arena.baseAddress! + p.offset, count: Int(p.length))
                            let on = engine.classify(hook: .forward, frame: frame, parsed: pp[k], inInterface: p.inInterface,
                                                     outInterface: prep[k].out, timestampNanos: p.time &+ now, trace: &trace, emitted: &emitted)
                            if timed { if on { accepted &+= 1 } else { dropped &+= 1 } }
                        }
                    }
                }
            }
        }
        r.warmupPasses = o.warmupPasses
        r.passes = run.passes
        r.seconds = run.seconds
        r.cpuSeconds = run.cpu
        r.mallocs = run.mallocs
        r.packets = run.passes * prepared.count
        r.bytes = run.passes * bytes
        r.verdicts = [("accepted", accepted), ("dropped", dropped), ("not_classified_per_pass", packets.count - prepared.count)]
    }
}

@inline(never) func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU time of the calling thread.
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A progress line on stderr, redrawn at most 4 times a second.
struct BenchProgress {
    let enabled: Bool
    let label: String
    var last = 0.0
    var shown = false
    init(enabled: Bool, label: String) { self.enabled = enabled; self.label = label }
    mutating func show(passes: Int, seconds: Double, packets: Int) {
        let t = now()
        guard t - last >= 0.25 else { return }
        last = t
        shown = true
        let mpps = seconds > 0 ? Double(packets) / seconds / 1e6 : 0
        writeError("\rbench \(label): \(passes) passes, \(formatFixed(seconds, 1)) s, \(formatFixed(mpps, 3)) Mpps ")
    }
    mutating func finish() { if shown { writeError("\r\u{1B}[K") } }
}

func writeError(_ s: String) {
    var s = s
    s.withUTF8 { b in _ = write(2, b.baseAddress, b.count) }
}

/// VmHWM and VmRSS of this process, in bytes.
public enum ProcStatus {
    public static func read() -> (hwm: Int?, rss: Int?) {
        guard let f = fopen("/proc/self/status", "r") else { return (nil, nil) }
        defer { fclose(f) }
        var hwm: Int? = nil, rss: Int? = nil
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if s.hasPrefix("VmHWM:") { hwm = kilobytes(s).map { $0 * 1024 } }
            if s.hasPrefix("VmRSS:") { rss = kilobytes(s).map { $0 * 1024 } }
        }
        return (hwm, rss)
    }

    /// "VmHWM:	  123456 kB" -> 123456.
    static func kilobytes(_ line: String) -> Int? {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard words.count >= 3, words[2] == "kB" else { return nil }
        return Int(words[1])
    }
}

/// Fixed decimals without Foundation.
public func formatFixed(_ x: Double, _ decimals: Int) -> String {
    guard x.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0 ..< decimals { scale *= 10 }
    let v = (x * scale).rounded()
    let neg = v < 0
    let n = Int(abs(v))
    let whole = n / Int(scale), frac = n % Int(scale)
    var f = String(frac)
    while f.count < decimals { f = "0" + f }
    return (neg ? "-" : "") + String(whole) + (decimals > 0 ? "." + f : "")
}

struct JSONObject {
    var parts: [String] = []
    mutating func add(_ k: String, raw: String) { parts.append("\(jsonString(k)):\(raw)") }
    mutating func add(_ k: String, string: String) { add(k, raw: jsonString(string)) }
    mutating func add(_ k: String, int: Int?) { add(k, raw: int.map(String.init) ?? "null") }
    mutating func add(_ k: String, double: Double?) {
        guard let d = double, d.isFinite else { return add(k, raw: "null") }
        // Plain decimal with enough digits for every figure here (no exponent, valid JSON).
        add(k, raw: d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : formatFixed(d, abs(d) >= 100 ? 3 : 9))
    }
    var text: String { "{" + parts.joined(separator: ",") + "}" }
}

func jsonString(_ s: String) -> String {
    var o = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": o += "\\\""
        case "\\": o += "\\\\"
        case "\n": o += "\\n"
        case "\t": o += "\\t"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                o += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else { o.unicodeScalars.append(u) }
        }
    }
    return o + "\""
}
