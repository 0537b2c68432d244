#!/usr/bin/python3
"""ARP prober for the coord lab (iputils arping only takes whole-second intervals).

Broadcasts an ARP request for VIP every INTERVAL_MS from IFACE and prints one JSON line per ARP reply or
gratuitous ARP concerning VIP: {"type": "reply"|"garp", "t": epoch ms, "mac": sender MAC, "seq": N}.

"t" is the kernel's receive timestamp (SO_TIMESTAMPNS), not the time this process got round to reading the
frame: a busy prober must not move a reply later than it arrived. "seq" is the number of probes sent before that
moment, i.e. the probe the reply answers (replies on a veth lab arrive within a millisecond, probes are 10 ms
apart). Two holders show up as two replies (two MACs) for the same probe.

Prints {"type":"ready"} once the socket is bound, {"type":"sent","sent":N,"t":...} every 100 ms (so a reader can
wait for probes instead of sleeping), and on SIGTERM/SIGINT {"type":"done","sent":N,"probes":[...]} with the
epoch-ms send time of every probe, so a reader can tell which probes went out during a fault.
Runs inside the client namespace; never leaves the LAN.
"""
import bisect
import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
# <asm-generic/socket.h>; Python's socket module does not export it. The control message carries a
# struct timespec (two native longs on the 64-bit hosts the lab runs on).
SO_TIMESTAMPNS = 35


def mac_bytes(text):
    return bytes(int(part, 16) for part in text.split(":"))


def mac_text(raw):
    return ":".join("%02x" % b for b in raw)


def kernel_time_ms(ancdata):
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("@qq", data[:16])
            return sec * 1000.0 + nsec / 1e6
    return None


def main():
    iface, src_ip, vip, interval_ms = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    with open("/sys/class/net/%s/address" % iface) as f:
        own_mac = mac_bytes(f.read().strip())
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((iface, ETH_P_ARP))
    vip_raw = socket.inet_aton(vip)
    request = (
        b"\xff" * 6 + own_mac + struct.pack("!H", ETH_P_ARP)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
        + own_mac + socket.inet_aton(src_ip) + b"\x00" * 6 + vip_raw
    )
    state = {"stop": False}
    # Epoch ms just before each send: a reply is always later than the probe it answers.
    probes = []

    def stop(_signum, _frame):
        state["stop"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    out = sys.stdout
    out.write(json.dumps({"type": "ready", "t": time.time() * 1000}) + "\n")
    out.flush()
    interval = interval_ms / 1000.0
    next_send = time.monotonic()
    next_tick = next_send + 0.1
    while not state["stop"]:
        now = time.monotonic()
        if now >= next_send:
            probes.append(round(time.time() * 1000, 3))
            sock.send(request)
            next_send += interval
            if next_send < now:
                next_send = now + interval
        if now >= next_tick:
            out.write(json.dumps({"type": "sent", "sent": len(probes), "t": probes[-1] if probes else 0}) + "\n")
            out.flush()
            next_tick = now + 0.1
        try:
            ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        except InterruptedError:
            continue
        if not ready:
            continue
        frame, ancdata, _flags, _addr = sock.recvmsg(2048, 64)
        if len(frame) < 42:
            continue
        op = struct.unpack("!H", frame[20:22])[0]
        sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
        if spa != vip_raw:
            continue
        kind = "garp" if tpa == vip_raw else ("reply" if op == 2 else None)
        if kind is None:
            continue
        t = kernel_time_ms(ancdata)
        if t is None:
            t = time.time() * 1000
        line = {
            "type": kind,
            "t": round(t, 3),
            "mac": mac_text(sha),
            "seq": bisect.bisect_right(probes, t),
            "op": op,
        }
        out.write(json.dumps(line) + "\n")
        out.flush()
    done = {"type": "done", "sent": len(probes), "probes": probes, "t": time.time() * 1000}
    out.write(json.dumps(done) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
