#!/usr/bin/python3
"""ARP prober for the coord lab (iputils arping only takes whole-second intervals).

Broadcasts an ARP request for VIP every INTERVAL_MS from IFACE and prints one JSON line per ARP reply or
gratuitous ARP concerning VIP: {"type": "reply"|"garp", "t": epoch ms, "mac": sender MAC, "seq": last probe sent}.
Two holders show up as two replies (two MACs) for the same probe. Prints {"type":"ready"} once the socket is
bound and {"type":"done","sent":N} on SIGTERM/SIGINT. Runs inside the client namespace; never leaves the LAN.
"""
import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806


def mac_bytes(text):
    return bytes(int(part, 16) for part in text.split(":"))


def mac_text(raw):
    return ":".join("%02x" % b for b in raw)


def main():
    iface, src_ip, vip, interval_ms = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    with open("/sys/class/net/%s/address" % iface) as f:
        own_mac = mac_bytes(f.read().strip())
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, ETH_P_ARP))
    vip_raw = socket.inet_aton(vip)
    request = (
        b"\xff" * 6 + own_mac + struct.pack("!H", ETH_P_ARP)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
        + own_mac + socket.inet_aton(src_ip) + b"\x00" * 6 + vip_raw
    )
    state = {"sent": 0, "stop": False}

    def stop(_signum, _frame):
        state["stop"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    out = sys.stdout
    out.write(json.dumps({"type": "ready", "t": time.time() * 1000}) + "\n")
    out.flush()
    interval = interval_ms / 1000.0
    next_send = time.monotonic()
    while not state["stop"]:
        now = time.monotonic()
        if now >= next_send:
            sock.send(request)
            state["sent"] += 1
            next_send += interval
            if next_send < now:
                next_send = now + interval
        try:
            ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        except InterruptedError:
            continue
        if not ready:
            continue
        frame = sock.recv(2048)
        if len(frame) < 42:
            continue
        op = struct.unpack("!H", frame[20:22])[0]
        sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
        if spa != vip_raw:
            continue
        kind = "garp" if tpa == vip_raw else ("reply" if op == 2 else None)
        if kind is None:
            continue
        line = {"type": kind, "t": time.time() * 1000, "mac": mac_text(sha), "seq": state["sent"], "op": op}
        out.write(json.dumps(line) + "\n")
        out.flush()
    out.write(json.dumps({"type": "done", "sent": state["sent"], "t": time.time() * 1000}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
