#!/usr/bin/env python3
"""An HTTP CONNECT proxy on loopback, for the end-to-end proxy tests.

    connectproxy.py [--user USER:PASSWORD] [--refuse STATUS] [--hang-up]

Listens on a free port of 127.0.0.1 and prints {"port": P} first. For each CONNECT it prints
{"connect": "host:port", "authorization": header or null} and then:
  --user U:P    answers 407 (with Proxy-Authenticate) unless Proxy-Authorization is Basic U:P,
  --refuse S    answers "HTTP/1.1 S Refused by test proxy" and closes,
  --hang-up     closes the connection without answering,
otherwise connects to the target (loopback only: any other host gets 403) and answers
"HTTP/1.1 200 Connection established", then copies bytes both ways until either side closes.
"""
import argparse
import asyncio
import base64
import json
import sys


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--user")
    parser.add_argument("--refuse", type=int)
    parser.add_argument("--hang-up", action="store_true")
    args = parser.parse_args()
    expected = None
    if args.user:
        expected = "Basic " + base64.b64encode(args.user.encode()).decode()

    async def answer(writer, status, reason, extra=""):
        writer.write(f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ") + ["", "", ""])[:3]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        authorization = headers.get("proxy-authorization")
        out({"connect": target, "method": method, "authorization": authorization})
        if method != "CONNECT":
            await answer(writer, 405, "Method Not Allowed")
            return
        if args.hang_up:
            writer.close()
            return
        if args.refuse:
            await answer(writer, args.refuse, "Refused by test proxy")
            return
        if expected is not None and authorization != expected:
            await answer(writer, 407, "Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="test"\r\n')
            return
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1"):
            await answer(writer, 403, "Forbidden")
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            await answer(writer, 502, "Bad Gateway")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    out({"port": server.sockets[0].getsockname()[1]})
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
