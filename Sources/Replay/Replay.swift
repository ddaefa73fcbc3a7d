#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Capture
import Logging
import Diagnostics
import Engine
import NetModel
import Rules
import Wire

public struct ReplayInput: Sendable {
    /// The interface the packets arrive on, or `local` for locally generated packets.
    public var interface: String
    public var path: String
    public init(interface: String, path: String) { self.interface = interface; self.path = path }
}

public struct ReplayOptions: Sendable {
    public var rulesPath: String
    public var networkPath: String?
    /// `ipset save` file for `-m set`.
    public var ipsetsPath: String?
    /// Input packets (0-based merged index) whose full path is traced into `trace.txt`.
    public var traceIndices: Set<Int> = []
    /// Engine settings (connection table size, checksum verification, seed); `ipsetsPath`
    /// fills its sets.
    public var engine = EngineOptions()
    public var inputs: [ReplayInput]
    public var outDir: String
    /// Show progress on stderr (the caller passes isatty(2)).
    public var progress: Bool
    /// A rule set already loaded (any dialect); when nil, `rulesPath` is read as iptables-restore.
    public var ruleSet: RuleSet? = nil

    public init(rulesPath: String, networkPath: String?, inputs: [ReplayInput], outDir: String, progress: Bool = false,
                ipsetsPath: String? = nil) {
        self.rulesPath = rulesPath; self.networkPath = networkPath; self.inputs = inputs; self.ipsetsPath = ipsetsPath
        self.outDir = outDir; self.progress = progress
    }
}

/// What a replay did, for the command's summary.
public struct ReplaySummary: Sendable {
    public var packets = 0
    public var verdicts: [String: Int] = [:]
    public var outPerInterface: [String: Int] = [:]
    public var dropReasons: [String: Int] = [:]
    public var passed: [String: Int] = [:]
    /// (rule text as in iptables-save, packets), most hit first.
    public var topRules: [(rule: String, packets: UInt64)] = []
    public var outputs: [String] = []
    /// Live connections at the end (nil when conntrack was off), and how many were evicted.
    public var connections: Int? = nil
    public var evicted = 0
    public var warnings: [String] = []
    public var seconds: Double = 0
}

public struct ReplayError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public enum Replayer {
    public static let localInterface = "local"

    public static func run(_ o: ReplayOptions) throws -> ReplaySummary {
        let t0 = monotonicSeconds()
        let rules = try o.ruleSet ?? RestoreParser.load(path: o.rulesPath)
        let network: NetworkModel
        if let np = o.networkPath { network = try NetworkModel.load(path: np) } else { network = try NetworkModel.parse("", file: "<none>") }
        guard !o.inputs.isEmpty else { throw ReplayError("no --in IFACE=CAPTURE given") }
        var files: [CaptureFile] = []
        for i in o.inputs {
            do { files.append(try CaptureFile.open(path: i.path)) } catch { throw ReplayError("\(error)") }
        }
        var options = o.engine
        if let ip = o.ipsetsPath { options.ipsets = try IPSetCollection.load(path: ip) }
        var engine = try Engine(rules: rules, network: network, extraInterfaces: o.inputs.map(\.interface), options: options)
        var inIndex: [Int16?] = []
        for i in o.inputs {
            inIndex.append(i.interface == localInterface ? nil : engine.interfaceIndex(i.interface))
        }

        var summary = ReplaySummary()
        for (f, i) in zip(files, o.inputs) { summary.warnings += f.warnings.map { "\(i.path): \($0)" } }

        // Output framing: Ethernet when every input is Ethernet, raw IPv4 otherwise.
        let allEthernet = files.allSatisfy { $0.interfaces.allSatisfy { $0.linkType == .ethernet } }
        let anyNano = files.contains { f in f.interfaces.contains { $0.timestampUnitsPerSecond > 1_000_000 } }
        let resolution: PcapWriter.Resolution = anyNano ? .nanosecond : .microsecond
        let outLinkType: UInt32 = allEthernet ? LinkType.ethernet.rawValue : LinkType.raw.rawValue

        try makeDirectory(o.outDir)
        var writers: [Int16: PcapWriter] = [:]
        let localWriter = try PcapWriter(path: o.outDir + "/local.pcap", linkTypeRaw: outLinkType, resolution: resolution)
        let verdictFile = try TextFile(path: o.outDir + "/verdicts.jsonl")

        let maxFrame = files.map { f in f.records.map(\.capturedLength).max() ?? 0 }.max() ?? 0
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(maxFrame, 64) + 64, alignment: 16)
        defer { scratch.deallocate() }
        func writer(for iface: Int16, name: String) throws -> PcapWriter {
            if let w = writers[iface] { return w }
            let w = try PcapWriter(path: o.outDir + "/\(name).pcap", linkTypeRaw: outLinkType, resolution: resolution)
            writers[iface] = w
            return w
        }
        var outFrame: [UInt8] = []
        outFrame.reserveCapacity(maxFrame + 64)

        var parsed = ParsedPacket()
        var trace = HitTrace(logging: true)
        var emitted = Emitted()
        var copyWriters: [UInt32: PcapWriter] = [:]
        let logFile = try TextFile(path: o.outDir + "/log.txt")
        let logger = Logger(label: "sluice.log", factory: { _ in LogFileHandler(file: logFile) })
        let traceFile = o.traceIndices.isEmpty ? nil : try TextFile(path: o.outDir + "/trace.txt")
        var cursor = [Int](repeating: 0, count: files.count)
        let total = files.reduce(0) { $0 + $1.records.count }
        var progress = Progress(enabled: o.progress, total: total)
        var index = 0
        var lastTimestamp = Int64.min
        var line = ""
        line.reserveCapacity(512)

        // Merge inputs by timestamp; each file keeps its own order (ties: earlier --in first).
        while true {
            var pick = -1
            var best = Int64.max
            for k in files.indices where cursor[k] < files[k].records.count {
                let ts = files[k].records[cursor[k]].timestampNanos
                if pick < 0 || ts < best { pick = k; best = ts }
            }
            if pick < 0 { break }
            let file = files[pick]
            let rec = file.records[cursor[pick]]
            cursor[pick] += 1
            lastTimestamp = max(lastTimestamp, rec.timestampNanos)
            let linkType = file.interfaces[rec.interface].linkType
            let n = rec.capturedLength
            file.withFrame(cursor[pick] - 1) { src in
                scratch.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n)
            }
            var frame = UnsafeMutableRawBufferPointer(rebasing: scratch[0 ..< n])
            let d: Decision
            trace.detailed = o.traceIndices.contains(index)
            if let lt = linkType {
                d = engine.process(frame: frame, capacity: scratch.count, linkType: lt, wireLength: rec.originalLength, inInterface: inIndex[pick],
                                   timestampNanos: rec.timestampNanos, parsed: &parsed, trace: &trace, emitted: &emitted)
            } else {
                var u = Decision(); u.kind = .passed
                d = u
                summary.passed["unsupported-link-type \(file.interfaces[rec.interface].linkTypeRaw)", default: 0] += 1
            }

            if d.grown > 0 { frame = UnsafeMutableRawBufferPointer(rebasing: scratch[0 ..< n + d.grown]) }
            var outs: [String] = []
            if d.kind == .forwarded || d.kind == .sent || d.kind == .local {
                frameForOutput(frame, parsed: parsed, ethernet: allEthernet && linkType == .ethernet, raw: !allEthernet, into: &outFrame)
                let w: PcapWriter
                if d.kind == .local {
                    w = localWriter
                } else {
                    let name = engine.interfaceName(d.outInterface)
                    w = try writer(for: d.outInterface, name: name)
                    outs.append(name)
                }
                // A packet the capture cut short stays cut: caplen < len in the output too.
                let wire = outFrame.count + Int(parsed.ipTotalLength) - Int(parsed.ipCapturedLength)
                try outFrame.withUnsafeBytes { try w.append(frame: $0, timestampNanos: rec.timestampNanos, originalLength: wire) }
                if d.kind != .local { summary.outPerInterface[engine.interfaceName(d.outInterface), default: 0] += 1 }
            }

            // COPY clones leave before the original (they were made on the way): written to the
            // interface that reaches the copy target and to copy-<ip>.pcap.
            for k in emitted.copies.indices {
                let c = emitted.copies[k]
                frameRaw(emitted.copy(k), frame: frame, linkType: linkType, ethernet: allEthernet, swapMACs: false, into: &outFrame)
                let name = engine.interfaceName(c.out)
                let w = try writer(for: c.out, name: name)
                try outFrame.withUnsafeBytes { try w.append(frame: $0, timestampNanos: rec.timestampNanos) }
                let cw: PcapWriter
                if let existing = copyWriters[c.to] { cw = existing } else {
                    cw = try PcapWriter(path: o.outDir + "/copy-\(IPv4Address(c.to)).pcap", linkTypeRaw: outLinkType, resolution: resolution)
                    copyWriters[c.to] = cw
                }
                try outFrame.withUnsafeBytes { try cw.append(frame: $0, timestampNanos: rec.timestampNanos) }
                outs.append(name)
                summary.outPerInterface[name, default: 0] += 1
            }
            if d.generatedOut >= 0 {
                // The box's answer (REJECT, time exceeded), addressed back to the sender: on
                // Ethernet, the input frame's MACs swapped.
                frameRaw(emitted.reply[...], frame: frame, linkType: linkType, ethernet: allEthernet, swapMACs: true, into: &outFrame)
                let name = engine.interfaceName(d.generatedOut)
                let w = try writer(for: d.generatedOut, name: name)
                try outFrame.withUnsafeBytes { try w.append(frame: $0, timestampNanos: rec.timestampNanos) }
                outs.append(name)
                summary.outPerInterface[name, default: 0] += 1
            }
            for (k, l) in trace.logs.enumerated() {
                logger.log(level: Logger.Level(syslog: Int(trace.logLevels[k])), "\(l)", metadata: ["packet": "\(index)"])
            }
            if trace.detailed, let traceFile {
                try traceFile.write("packet \(index):\n" + trace.lines.map { $0 + "\n" }.joined() + "verdict: \(d.kind.name)\n\n")
            }

            line.removeAll(keepingCapacity: true)
            jsonLine(&line, index: index, input: o.inputs[pick].interface, d: d, parsed: parsed, trace: trace,
                     engine: engine, outs: outs, snapCut: rec.capturedLength < rec.originalLength)
            try verdictFile.write(line)
            summary.verdicts[d.kind.name, default: 0] += 1
            if d.kind == .dropped {
                let r = d.reason == .malformed ? d.malformed!.name : d.reason.name
                summary.dropReasons[r, default: 0] += 1
            }
            if d.kind == .passed, linkType != nil { summary.passed[parsed.kind.name, default: 0] += 1 }
            index += 1
            progress.tick(index)
        }
        progress.finish()
        summary.packets = index

        try localWriter.close()
        for (_, w) in writers { try w.close() }
        for (_, w) in copyWriters { try w.close() }
        try verdictFile.close()
        try logFile.close()
        try traceFile?.close()
        // The final connection table, `conntrack -L` style, timeouts as of the last packet.
        let ct = try TextFile(path: o.outDir + "/conntrack.txt")
        try ct.write(engine.conntrackListing(now: lastTimestamp))
        if let table = engine.conntrack {
            summary.connections = table.liveIndices(now: lastTimestamp).count
            summary.evicted = Int(table.evicted)
        }
        try ct.close()
        let counted = engine.ruleSetWithCounters
        let cf = try TextFile(path: o.outDir + "/counters.rules")
        try cf.write(RuleSetRenderer.render(counted, counters: true, header: "Generated by sluice replay from \(baseName(o.rulesPath))"))
        try cf.close()

        var top: [(String, UInt64)] = []
        for t in counted.tables {
            for c in t.chains {
                for r in c.rules where r.counters.packets > 0 {
                    top.append(("-t \(t.name.rawValue) -A \(c.name)" + RuleSetRenderer.render(rule: r, table: t), r.counters.packets))
                }
                if c.isBuiltin && c.counters.packets > 0 {
                    top.append(("-t \(t.name.rawValue) -P \(c.name) \(c.policy!.rawValue) (policy)", c.counters.packets))
                }
            }
        }
        summary.topRules = top.sorted { $0.1 > $1.1 }.map { (rule: $0.0, packets: $0.1) }
        summary.outputs = (["local.pcap", "verdicts.jsonl", "conntrack.txt", "counters.rules", "log.txt"]
            + writers.keys.map { engine.interfaceName($0) + ".pcap" } + copyWriters.keys.map { "copy-\(IPv4Address($0)).pcap" }).sorted()
        summary.seconds = monotonicSeconds() - t0
        return summary
    }

    /// A raw IPv4 packet the box emitted (answer or copy), framed like the outputs: behind an
    /// Ethernet header when the outputs are Ethernet (the input frame's MACs, swapped for an
    /// answer going back to the sender; zeros when the input had none).
    static func frameRaw(_ ip: ArraySlice<UInt8>, frame: UnsafeMutableRawBufferPointer, linkType: LinkType?, ethernet: Bool,
                         swapMACs: Bool, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        if ethernet {
            if linkType == .ethernet && frame.count >= 12 {
                let (a, b) = swapMACs ? (6, 0) : (0, 6)
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[a ..< a + 6]))
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[b ..< b + 6]))
            } else {
                out.append(contentsOf: repeatElement(0, count: 12))
            }
            out.appendBE16(EtherType.ipv4)
        }
        out.append(contentsOf: ip)
    }

    /// The bytes written for an output packet: the IPv4 packet (link header and VLAN tags and
    /// Ethernet padding removed), behind a plain Ethernet header copied from the input frame
    /// when the outputs are Ethernet.
    static func frameForOutput(_ frame: UnsafeMutableRawBufferPointer, parsed p: ParsedPacket, ethernet: Bool, raw: Bool, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        let l3 = Int(p.l3Offset)
        if !raw {
            if ethernet {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[0 ..< 12]))
            } else {
                // Non-Ethernet input in an Ethernet output file: zero MACs.
                out.append(contentsOf: repeatElement(0, count: 12))
            }
            out.appendBE16(EtherType.ipv4)
        }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[l3 ..< l3 + Int(p.ipCapturedLength)]))
    }

    static func jsonLine(_ s: inout String, index: Int, input: String, d: Decision, parsed p: ParsedPacket,
                         trace: HitTrace, engine: Engine, outs: [String], snapCut: Bool) {
        s += "{\"index\":\(index),\"in\":\(json(input)),\"verdict\":\"\(d.kind.name)\",\"out\":["
        s += outs.map(json).joined(separator: ",")
        s += "],\"ct\":\(d.ct.map { json($0.text) } ?? "null"),\"rules\":["
        s += trace.entries.map { json(engine.describe(traceEntry: $0)) }.joined(separator: ",")
        s += "],\"nat\":\(trace.natText.isEmpty ? "null" : json(String(trace.natText.dropLast(2)))),\"reason\":"
        switch d.kind {
        case .dropped, .rejected:
            s += json(d.reason == .malformed ? d.malformed!.name : d.reason.name)
            if d.reason == .rule || d.reason == .policy || d.reason == .hotdrop { s += ",\"by\":\(json(engine.describe(traceEntry: d.decidedBy)))" }
        default:
            s += "null"
        }
        if d.kind == .passed { s += ",\"l3\":\"\(p.kind.name)\"" }
        if d.mark != 0 { s += ",\"mark\":\(d.mark)" }
        if p.kind == .ipv4 && !p.ipChecksumValid { s += ",\"ip_checksum\":\"bad\"" }
        if snapCut { s += ",\"capture_truncated\":true" }
        s += "}\n"
    }

    static func json(_ s: String) -> String {
        var o = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            case "\n": o += "\\n"
            case "\t": o += "\\t"
            default:
                if u.value < 0x20 { o += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16) } else { o.unicodeScalars.append(u) }
            }
        }
        return o + "\""
    }
}

/// Buffered text output via stdio.
final class TextFile {
    let path: String
    var f: UnsafeMutablePointer<FILE>?
    init(path: String) throws {
        self.path = path
        guard let f = fopen(path, "wb") else { throw ReplayError("\(path): \(String(cString: strerror(errno)))") }
        self.f = f
    }
    func write(_ s: String) throws {
        var s = s
        let ok = s.withUTF8 { fwrite($0.baseAddress, 1, $0.count, f) == $0.count }
        if !ok { throw ReplayError("\(path): write failed: \(String(cString: strerror(errno)))") }
    }
    func close() throws {
        guard let f else { return }
        self.f = nil
        if fclose(f) != 0 { throw ReplayError("\(path): close failed: \(String(cString: strerror(errno)))") }
    }
    deinit { if let f { fclose(f) } }
}

/// `mkdir -p`.
func makeDirectory(_ path: String) throws {
    let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    if !parent.isEmpty && parent != path { try makeDirectory(parent) }
    var st = stat()
    if stat(path, &st) == 0 {
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw ReplayError("\(path) exists and is not a directory") }
        return
    }
    if mkdir(path, 0o755) != 0 { throw ReplayError("cannot create \(path): \(String(cString: strerror(errno)))") }
}

public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Progress on a terminal: a line redrawn at most 4 times a second; nothing when disabled.
struct Progress {
    let enabled: Bool
    let total: Int
    var last = 0.0
    var shown = false
    init(enabled: Bool, total: Int) { self.enabled = enabled; self.total = total }
    mutating func tick(_ n: Int) {
        guard enabled, n & 1023 == 0 else { return }
        let now = monotonicSeconds()
        guard now - last > 0.25 else { return }
        last = now
        shown = true
        let pct = total > 0 ? n * 100 / total : 100
        writeStderr("\rreplay: \(n)/\(total) packets (\(pct)%)")
    }
    mutating func finish() {
        if shown { writeStderr("\r\u{1B}[K") }
    }
}

/// Writes to standard error without going through stdio's shared FILE (not concurrency-safe).
public func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { b in
        var off = 0
        while off < b.count {
            let n = write(2, b.baseAddress! + off, b.count - off)
            if n <= 0 { return }
            off += n
        }
    }
}

func baseName(_ path: String) -> String {
    path.split(separator: "/").last.map(String.init) ?? path
}
