#!/usr/bin/env python3
"""A TCP proxy that injects faults between an xfer client and server, for the end-to-end tests.

    faultproxy.py TARGET_PORT [--cut-after N] [--flip-at N] [--faulty-connections K]

Listens on a free port of 127.0.0.1 and prints {"port": P} first. Then, for each connection:
  --cut-after N   closes both sides once N bytes went client -> server,
  --flip-at N     inverts the byte at client -> server offset N (the data stays the same length),
  --rate B        paces client -> server to B bytes per second (every connection, not only faulty ones),
applied to the first K connections only (default 1), so that a retry can succeed. When a connection ends it
prints {"conn": i, "up": bytes client->server, "down": bytes server->client, "cut": bool, "flipped": bool}.
"""
import argparse
import asyncio
import json
import sys


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target", type=int)
    parser.add_argument("--cut-after", type=int)
    parser.add_argument("--flip-at", type=int)
    parser.add_argument("--faulty-connections", type=int, default=1)
    parser.add_argument("--rate", type=int, help="at most this many bytes per second client -> server (all connections)")
    args = parser.parse_args()
    count = 0

    async def handle(client_reader, client_writer):
        nonlocal count
        count += 1
        number = count
        faulty = number <= args.faulty_connections
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", args.target)
        stats = {"conn": number, "up": 0, "down": 0, "cut": False, "flipped": False}

        async def upstream():
            started = asyncio.get_running_loop().time()
            while True:
                data = await client_reader.read(65536)
                if not data:
                    break
                if args.rate:
                    # Pace the stream: a slow link, so that a test can interrupt an upload half-way.
                    due = started + (stats["up"] + len(data)) / args.rate
                    delay = due - asyncio.get_running_loop().time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                start = stats["up"]
                if faulty and args.flip_at is not None and start <= args.flip_at < start + len(data):
                    index = args.flip_at - start
                    data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1:]
                    stats["flipped"] = True
                if faulty and args.cut_after is not None and start + len(data) >= args.cut_after:
                    data = data[: args.cut_after - start]
                    server_writer.write(data)
                    stats["up"] += len(data)
                    stats["cut"] = True
                    break
                server_writer.write(data)
                stats["up"] += len(data)
                await server_writer.drain()

        async def downstream():
            while True:
                data = await server_reader.read(65536)
                if not data:
                    break
                client_writer.write(data)
                stats["down"] += len(data)
                await client_writer.drain()

        up = asyncio.ensure_future(upstream())
        down = asyncio.ensure_future(downstream())
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            if up.done() and not stats["cut"]:
                # The client finished sending: pass the half-close on and let the server's answer through.
                try:
                    server_writer.write_eof()
                except Exception:
                    pass
                await asyncio.wait([down], timeout=5)
        except Exception:
            pass
        for task in (up, down):
            task.cancel()
        for writer in (client_writer, server_writer):
            try:
                if stats["cut"]:
                    writer.transport.abort()
                else:
                    writer.close()
            except Exception:
                pass
        out(stats)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    out({"port": server.sockets[0].getsockname()[1]})
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
