#!/usr/bin/python3
"""TCP proxy that delays the bytes a lab host sends towards etcd: the lab's stand-in for `tc netem delay`,
which this kernel lacks.

Runs inside a host namespace. nft redirects the host's own connections to etcd:2379 to 127.0.0.1:LPORT here;
we forward to etcd's second client port, which is never redirected.
Usage: delay-proxy.py CONTROL_FILE LPORT=HOST:PORT ...
The delay (whole ms) is read from CONTROL_FILE at start and on SIGHUP; each change is printed as a JSON line.
Prints "ready" once every port listens.
"""
import asyncio
import json
import signal
import sys

state = {"delay": 0.0}


def read_delay(path):
    try:
        with open(path) as f:
            ms = int(f.read().strip() or "0")
    except (OSError, ValueError):
        ms = 0
    state["delay"] = max(ms, 0) / 1000.0
    print(json.dumps({"msg": "delay set", "delayMs": max(ms, 0)}, separators=(",", ":")), flush=True)


async def copy(reader, writer):
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def copy_delayed(reader, writer):
    """Forward in order, each chunk no earlier than its arrival plus the delay in force when it arrived."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def pump():
        try:
            while True:
                chunk = await reader.read(65536)
                await queue.put((loop.time() + state["delay"], chunk))
                if not chunk:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), b""))

    task = asyncio.ensure_future(pump())
    try:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        task.cancel()
        writer.close()


def handler(host, port):
    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(copy_delayed(client_reader, up_writer), copy(up_reader, client_writer))

    return handle


async def main():
    control, routes = sys.argv[1], sys.argv[2:]
    read_delay(control)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, read_delay, control)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    servers = []
    for route in routes:
        lport, target = route.split("=")
        host, port = target.rsplit(":", 1)
        servers.append(await asyncio.start_server(handler(host, int(port)), "127.0.0.1", int(lport)))
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
