#!/usr/bin/env python3
"""Writes FuzzWire seeds: the frames of pcap/pcapng files, each prefixed with the two bytes
FuzzWire reads first (the link type's index in Wire's LinkType.allCases, and 0 for "wire length
= captured length"). Usage: seeds.py OUTDIR MAXFRAMES CAPTURE... Frames are deduplicated."""
import hashlib, os, struct, sys

# LINKTYPE_ value -> index in LinkType.allCases (Sources/Wire/LinkLayer.swift, declaration order).
INDEX = {0: 0, 1: 1, 12: 2, 14: 3, 101: 4, 108: 5, 113: 6, 228: 7, 229: 8, 276: 9}

def frames(data):
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        link = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
        off = 24
        while off + 16 <= len(data):
            incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
            off += 16
            if off + incl > len(data):
                return
            yield link, data[off:off + incl]
            off += incl
    elif magic == b"\x0a\x0d\x0d\x0a":
        e, links, off = "<", [], 0
        while off + 12 <= len(data):
            btype = struct.unpack(e + "I", data[off:off + 4])[0]
            if btype == 0x0A0D0D0A:
                e = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                links = []
            blen = struct.unpack(e + "I", data[off + 4:off + 8])[0]
            if blen < 12 or off + blen > len(data):
                return
            body = data[off + 8:off + blen - 4]
            if btype == 1 and len(body) >= 2:
                links.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6 and len(body) >= 20:
                iface, cap = struct.unpack(e + "I", body[:4])[0], struct.unpack(e + "I", body[12:16])[0]
                if iface < len(links):
                    yield links[iface], body[20:20 + cap]
            elif btype == 3 and len(body) >= 4 and links:
                yield links[0], body[4:]
            off += blen

def main():
    out, limit, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    seen, written = set(), 0
    # Round-robin over the files so that one big capture does not take the whole budget.
    gens = [frames(open(f, "rb").read()) for f in files]
    while gens and written < limit:
        for g in list(gens):
            item = next(g, None)
            if item is None:
                gens.remove(g)
                continue
            link, frame = item
            if link not in INDEX:
                continue
            seed = bytes([INDEX[link], 0]) + frame
            h = hashlib.sha1(seed).hexdigest()
            if h in seen:
                continue
            seen.add(h)
            with open(os.path.join(out, "seed-" + h), "wb") as f:
                f.write(seed)
            written += 1
            if written >= limit:
                break
    print(f"{written} frames from {len(files)} captures")

if __name__ == "__main__":
    main()
