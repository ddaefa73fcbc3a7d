import Foundation

/// A stand-in for `sluice run`, selected with SLUICE_BINARY=passthrough, that validates the
/// sluice-mode machinery of these tests (readiness line, the queue in
/// /proc/net/netfilter/nfnetlink_queue, SIGHUP reload and its file:line:column error, SIGTERM
/// drain, the final `received=N verdicts=N` line, hooks removed) against the kernel while
/// `sluice run` does not exist yet. The kernel does the real work: the stand-in loads the
/// scenario's kernel rules with iptables-restore, installs NFQUEUE hooks in raw PREROUTING and
/// raw OUTPUT (before conntrack, like Sluice's), and ACCEPTs every queued packet through
/// libnetfilter_queue (ctypes), so the packets go on through the kernel's own tables. It says
/// nothing about Sluice; it proves the harness and that an NFQUEUE pass-through in the path
/// changes none of the scenarios' outcomes.
enum PassthroughStandIn {
    static var selected: Bool { ProcessInfo.processInfo.environment["SLUICE_BINARY"] == "passthrough" }

    static let text = #"""
import ctypes, os, re, select, signal, subprocess, sys
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
rules, queue = opt("--rules"), int(opt("--queue"))
def load():
    r = subprocess.run(["iptables-restore", rules], capture_output=True, text=True)
    if r.returncode != 0:
        m = re.search(r"line:? (\d+)", r.stderr)
        first = (r.stderr.strip().splitlines() or ["?"])[0]
        print("%s:%s:1: %s" % (rules, m.group(1) if m else 0, first), file=sys.stderr, flush=True)
        return False
    return True
if not load():
    sys.exit(1)
lib = ctypes.CDLL("libnetfilter_queue.so.1")
lib.nfq_open.restype = ctypes.c_void_p
lib.nfq_create_queue.restype = ctypes.c_void_p
lib.nfq_get_msg_packet_hdr.restype = ctypes.c_void_p
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
count = {"received": 0, "verdicts": 0}
def cb(qh, msg, nfad, data):
    count["received"] += 1
    hdr = lib.nfq_get_msg_packet_hdr(ctypes.c_void_p(nfad))
    pid = int.from_bytes(ctypes.string_at(hdr, 4), "big")
    if lib.nfq_set_verdict(ctypes.c_void_p(qh), ctypes.c_uint32(pid), ctypes.c_uint32(1), ctypes.c_uint32(0), None) >= 0:
        count["verdicts"] += 1
    return 0
ccb = CB(cb)
h = lib.nfq_open()
if not h or lib.nfq_bind_pf(ctypes.c_void_p(h), 2) < 0:
    print("passthrough: nfq_open/bind failed", file=sys.stderr); sys.exit(1)
qh = lib.nfq_create_queue(ctypes.c_void_p(h), queue, ccb, None)
if not qh:
    print("passthrough: cannot bind queue %d" % queue, file=sys.stderr); sys.exit(1)
lib.nfq_set_mode(ctypes.c_void_p(qh), 2, 0xffff)
fd = lib.nfq_fd(ctypes.c_void_p(h))
hooks = [("raw", "PREROUTING"), ("raw", "OUTPUT")]
for t, c in hooks:
    subprocess.run(["iptables", "-t", t, "-I", c, "-j", "NFQUEUE", "--queue-num", str(queue)], check=True)
flags = {"hup": False, "stop": False}
signal.signal(signal.SIGHUP, lambda *a: flags.__setitem__("hup", True))
signal.signal(signal.SIGTERM, lambda *a: flags.__setitem__("stop", True))
signal.signal(signal.SIGINT, lambda *a: flags.__setitem__("stop", True))
print("sluice run: serving queue %d (passthrough stand-in)" % queue, file=sys.stderr, flush=True)
buf = ctypes.create_string_buffer(70000)
def pump(timeout):
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return False
        n = os.read(fd, 70000)
    except InterruptedError:
        return True
    ctypes.memmove(buf, n, len(n))
    lib.nfq_handle_packet(ctypes.c_void_p(h), buf, len(n))
    return True
while not flags["stop"]:
    if flags["hup"]:
        flags["hup"] = False
        # iptables-restore commits table by table: a bad file is tested first, so none of it loads.
        t = subprocess.run(["iptables-restore", "--test", rules], capture_output=True, text=True)
        if t.returncode != 0:
            m = re.search(r"line:? (\d+)", t.stderr)
            print("%s:%s:1: %s" % (rules, m.group(1) if m else 0, (t.stderr.strip().splitlines() or ["?"])[0]), file=sys.stderr, flush=True)
        else:
            load()
        for t, c in hooks:  # a restore of the raw table drops the hooks: put them back
            if subprocess.run(["iptables", "-t", t, "-C", c, "-j", "NFQUEUE", "--queue-num", str(queue)], capture_output=True).returncode != 0:
                subprocess.run(["iptables", "-t", t, "-I", c, "-j", "NFQUEUE", "--queue-num", str(queue)])
    pump(0.1)
for t, c in hooks:
    subprocess.run(["iptables", "-t", t, "-D", c, "-j", "NFQUEUE", "--queue-num", str(queue)])
while pump(0.3):
    pass
print("sluice run: stopped received=%d verdicts=%d" % (count["received"], count["verdicts"]), file=sys.stderr, flush=True)
"""#
}
