#!/usr/bin/env python3
"""A TCP relay that delays every byte by a fixed one-way time in each direction.

This kernel has no `sch_netem` (tc refuses the qdisc), so `scripts/replay-hosts.sh` adds a
network's latency here: the relay runs in a worker's network namespace, listens on its
loopback and forwards over the namespace's veth link to PostgreSQL, holding each chunk for
`delay` before passing it on, in order. A round trip through it therefore costs 2 x delay on
top of the veth link; bandwidth is not limited (chunks pipeline, as on a long fat link).

    delay_relay.py LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_DELAY_MS
"""
import asyncio
import sys
import time


async def pump(reader, writer, delay):
    # Bounded: a slow receiver holds the sender back (about 4 MB in flight per direction).
    queue = asyncio.Queue(maxsize=64)

    async def send():
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            await queue.put((time.monotonic() + delay, chunk))
    except (ConnectionError, OSError):
        pass
    await queue.put((0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def main():
    listen, host, port, delay_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    delay = delay_ms / 1000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay),
            pump(server_reader, client_writer, delay),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
