import Foundation

/// The traffic tools, one python3 script with subcommands, written into each run's work
/// directory. Every blocking call in it has a timeout; results are one JSON line on stdout
/// (clients) or one JSON line per connection in a log file (servers).
enum TrafficScript {
    static let text = #"""
import argparse, json, os, socket, struct, sys, threading, time

def now():
    return time.monotonic()

def write_ready(path):
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(path + ".tmp", path)

def tcp_server(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(128)
    lock = threading.Lock()
    log = open(a.log, "a", buffering=1)
    write_ready(a.ready)
    def handle(c, peer):
        c.settimeout(a.idle)
        lines, eof, err, buf = [], False, None, b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    eof = True
                    break
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode(errors="replace")
                    lines.append(text)
                    c.sendall(("%s|%s:%d|%s\n" % (a.name, peer[0], peer[1], text)).encode())
        except Exception as e:
            err = type(e).__name__
        finally:
            c.close()
        with lock:
            log.write(json.dumps({"server": a.name, "peer": peer[0], "peer_port": peer[1],
                                  "lines": lines, "eof": eof, "error": err}) + "\n")
    while True:
        c, peer = s.accept()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()

def wait_file(path, timeout):
    deadline = now() + timeout
    while not os.path.exists(path):
        if now() > deadline:
            raise TimeoutError("step file " + path)
        time.sleep(0.01)

def tcp_client(a):
    res = {"ok": False, "replies": [], "error": None, "local": None, "eof": False, "stage": "connect"}
    t0 = now()
    c = None
    try:
        c = socket.create_connection((a.host, a.port), timeout=a.timeout)
        c.settimeout(a.timeout)
        res["local"] = "%s:%d" % c.getsockname()
        f = c.makefile("rb")
        for i, m in enumerate(a.message):
            if a.step_dir and i > 0:
                res["stage"] = "wait go%d" % i
                wait_file(os.path.join(a.step_dir, "go%d" % i), a.step_timeout)
            res["stage"] = "exchange %d" % i
            c.sendall((m + "\n").encode())
            line = f.readline()
            if not line:
                raise ConnectionAbortedError("EOF before reply %d" % i)
            res["replies"].append(line.decode(errors="replace").rstrip("\n"))
            if a.step_dir:
                open(os.path.join(a.step_dir, "done%d" % i), "w").close()
        res["stage"] = "close"
        c.shutdown(socket.SHUT_WR)
        rest = f.read()
        res["eof"] = True
        res["trailing"] = rest.decode(errors="replace")
        res["ok"] = len(res["replies"]) == len(a.message) and rest == b""
        res["stage"] = "done"
    except (TimeoutError, socket.timeout):
        res["error"] = "timeout"
    except ConnectionRefusedError:
        res["error"] = "refused"
    except ConnectionResetError:
        res["error"] = "reset"
    except OSError as e:
        res["error"] = "%s(%s)" % (type(e).__name__, e.errno)
    finally:
        if c is not None:
            c.close()
    res["elapsed"] = round(now() - t0, 3)
    print(json.dumps(res), flush=True)

def udp_server(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    log = open(a.log, "a", buffering=1)
    write_ready(a.ready)
    n = 0
    while True:
        d, peer = s.recvfrom(65536)
        n += 1
        if not a.quiet:
            log.write(json.dumps({"server": a.name, "peer": peer[0], "peer_port": peer[1], "payload": d.decode(errors="replace")}) + "\n")
        if not a.no_reply:
            s.sendto(("%s|%s:%d|" % (a.name, peer[0], peer[1])).encode() + d, peer)

def udp_client(a):
    res = {"result": None, "reply": None}
    t0 = now()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(a.timeout)
    try:
        s.connect((a.host, a.port))
        s.send(a.message.encode())
        d = s.recv(65536)
        res["result"] = "reply"
        res["reply"] = d.decode(errors="replace")
    except ConnectionRefusedError:
        res["result"] = "refused"
    except (TimeoutError, socket.timeout):
        res["result"] = "timeout"
    except OSError as e:
        res["result"] = "%s(%s)" % (type(e).__name__, e.errno)
    res["elapsed"] = round(now() - t0, 3)
    print(json.dumps(res), flush=True)

def udp_flood(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * a.size
    sent = errors = 0
    t0 = now()
    write_ready(a.ready)
    while now() - t0 < a.seconds:
        for _ in range(a.batch):
            try:
                s.sendto(payload, (a.host, a.port))
                sent += 1
            except OSError:
                errors += 1
        time.sleep(a.pause)
    print(json.dumps({"sent": sent, "errors": errors, "seconds": round(now() - t0, 3)}), flush=True)

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff

def ping(a):
    res = {"result": "timeout"}
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xffff
    body = b"sluice-inline-ping"
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + body), ident, 1) + body
    t0 = now()
    s.sendto(pkt, (a.host, 0))
    deadline = t0 + a.timeout
    while now() < deadline:
        s.settimeout(max(0.01, deadline - now()))
        try:
            d, peer = s.recvfrom(65536)
        except (TimeoutError, socket.timeout):
            break
        ihl = (d[0] & 15) * 4
        t, code, _, rid, seq = struct.unpack("!BBHHH", d[ihl:ihl + 8])
        if t == 0 and rid == ident:
            res = {"result": "reply", "from": peer[0]}
            break
        if t in (3, 11) and len(d) >= ihl + 8 + 28:
            inner = d[ihl + 8:]
            iihl = (inner[0] & 15) * 4
            it, _, _, iid, _ = struct.unpack("!BBHHH", inner[iihl:iihl + 8])
            if it == 8 and iid == ident:
                res = {"result": "icmp-error", "type": t, "code": code, "from": peer[0]}
                break
    res["elapsed"] = round(now() - t0, 3)
    print(json.dumps(res), flush=True)

p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
x = sub.add_parser("tcp-server"); x.add_argument("--bind", default="0.0.0.0"); x.add_argument("--port", type=int, required=True)
x.add_argument("--name", required=True); x.add_argument("--log", required=True); x.add_argument("--ready"); x.add_argument("--idle", type=float, default=30)
x = sub.add_parser("tcp-client"); x.add_argument("host"); x.add_argument("port", type=int); x.add_argument("--message", action="append", default=[])
x.add_argument("--timeout", type=float, default=3); x.add_argument("--step-dir"); x.add_argument("--step-timeout", type=float, default=15)
x = sub.add_parser("udp-server"); x.add_argument("--bind", default="0.0.0.0"); x.add_argument("--port", type=int, required=True)
x.add_argument("--name", required=True); x.add_argument("--log", required=True); x.add_argument("--ready")
x.add_argument("--no-reply", action="store_true"); x.add_argument("--quiet", action="store_true")
x = sub.add_parser("udp-client"); x.add_argument("host"); x.add_argument("port", type=int); x.add_argument("--message", default="hello")
x.add_argument("--timeout", type=float, default=2)
x = sub.add_parser("udp-flood"); x.add_argument("host"); x.add_argument("port", type=int); x.add_argument("--seconds", type=float, default=1)
x.add_argument("--batch", type=int, default=20); x.add_argument("--pause", type=float, default=0.004); x.add_argument("--size", type=int, default=100)
x.add_argument("--ready")
x = sub.add_parser("ping"); x.add_argument("host"); x.add_argument("--timeout", type=float, default=1.5)
a = p.parse_args()
{"tcp-server": tcp_server, "tcp-client": tcp_client, "udp-server": udp_server, "udp-client": udp_client,
 "udp-flood": udp_flood, "ping": ping}[a.cmd](a)
"""#
}

/// A TCP client's outcome (the script's JSON line).
struct TCPResult: CustomStringConvertible {
    var ok: Bool
    var replies: [String]
    var error: String?
    var local: String?
    var eof: Bool
    var elapsed: Double
    var stage: String
    var raw: String

    init(json: String) {
        raw = json.trimmingCharacters(in: .whitespacesAndNewlines)
        let line = raw.split(separator: "\n").last.map(String.init) ?? ""
        let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        ok = o["ok"] as? Bool ?? false
        replies = o["replies"] as? [String] ?? []
        error = o["error"] as? String ?? (o.isEmpty ? "no result: \(raw)" : nil)
        local = o["local"] as? String
        eof = o["eof"] as? Bool ?? false
        elapsed = o["elapsed"] as? Double ?? -1
        stage = o["stage"] as? String ?? "?"
    }

    /// The server names that answered ("s1|peer|payload").
    var servers: [String] { replies.map { String($0.split(separator: "|").first ?? "") } }
    /// The peer address the server saw, from the first reply.
    var peerSeenByServer: String? {
        guard let r = replies.first else { return nil }
        let parts = r.split(separator: "|")
        guard parts.count >= 2 else { return nil }
        return String(parts[1].split(separator: ":").first ?? "")
    }
    var description: String { raw }
}

/// One connection as a TCP server logged it.
struct ServerConnection {
    var server: String
    var peer: String
    var peerPort: Int
    var lines: [String]
    var eof: Bool
    var error: String?
}

func readServerLog(_ path: String) -> [ServerConnection] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { line in
        guard let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return nil }
        return ServerConnection(server: o["server"] as? String ?? "", peer: o["peer"] as? String ?? "",
                                peerPort: o["peer_port"] as? Int ?? 0, lines: o["lines"] as? [String] ?? [],
                                eof: o["eof"] as? Bool ?? false, error: o["error"] as? String)
    }
}

func jsonObject(_ text: String) -> [String: Any] {
    let line = text.split(separator: "\n").last.map(String.init) ?? ""
    return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
}
