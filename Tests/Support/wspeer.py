#!/usr/bin/env python3
"""Scripted WebSocket peers for xfer's end-to-end tests.

Each mode prints one JSON object per line on stdout describing what happened, so the Swift tests can check it:
  plain URL TZ TEXT...      Python `websockets` client: sends TZ, then each TEXT; prints each reply and the close.
                            For a wss:// URL it trusts the PEM file named by $WSPEER_CA.
  raw URL TZ HEXPAYLOAD     raw socket client: upgrades, sends TZ, then one text frame with the given bytes
                            (hex), prints the close code it receives.
  silent URL TZ SECONDS     raw socket client: upgrades, sends TZ, then neither reads nor writes for SECONDS
                            (a half-open peer that never answers pings).
  wait URL TZ               Python `websockets` client that waits for messages/close and prints them.
"""
import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from urllib.parse import urlparse


def tls_options(url):
    """For wss:// URLs: an SSL context trusting the PEM file in $WSPEER_CA (or the system's roots)."""
    if not url.startswith("wss://"):
        return {}
    import ssl

    return {"ssl": ssl.create_default_context(cafile=os.environ.get("WSPEER_CA"))}


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def plain(url, tz, texts):
    import websockets

    async with websockets.connect(url, max_size=None, **tls_options(url)) as ws:
        await ws.send(tz)
        for text in texts:
            await ws.send(text)
            try:
                reply = await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                out({"closed": closed.rcvd.code if closed.rcvd else None,
                     "reason": closed.rcvd.reason if closed.rcvd else None})
                return
            reply = json.loads(reply)
            out({"reply": reply})
            if reply.get("ok") is False and "message" in reply:
                # An error status comes right before the server's close frame.
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed as closed:
                    out({"closed": closed.rcvd.code if closed.rcvd else None,
                         "reason": closed.rcvd.reason if closed.rcvd else None})
                    return
        if not texts:
            try:
                reply = await asyncio.wait_for(ws.recv(), 5)
                out({"reply": json.loads(reply)})
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                out({"closed": closed.rcvd.code if closed.rcvd else None,
                     "reason": closed.rcvd.reason if closed.rcvd else None})
                return
    out({"closed": 1000, "by": "client"})


async def wait(url, tz):
    import websockets

    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(tz)
        out({"ready": True})
        try:
            async for message in ws:
                out({"message": message})
        except websockets.ConnectionClosed:
            pass
        out({"closed": ws.close_code})


def raw_connect(url):
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port or 8000), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("connection closed during upgrade")
        response += chunk
    status = response.split(b"\r\n", 1)[0].decode()
    if " 101 " not in status:
        out({"http_status": int(status.split()[1])})
        sys.exit(0)
    return sock, response.split(b"\r\n\r\n", 1)[1]


def frame(opcode, payload, fin=True):
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frames(sock, buffered, until_close=True, timeout=10):
    sock.settimeout(timeout)
    data = buffered
    while True:
        while len(data) >= 2:
            opcode = data[0] & 0x0F
            n = data[1] & 0x7F
            offset = 2
            if n == 126:
                if len(data) < 4:
                    break
                n = struct.unpack(">H", data[2:4])[0]
                offset = 4
            elif n == 127:
                if len(data) < 10:
                    break
                n = struct.unpack(">Q", data[2:10])[0]
                offset = 10
            if len(data) < offset + n:
                break
            payload = data[offset:offset + n]
            data = data[offset + n:]
            yield opcode, payload
            if opcode == 8 and until_close:
                return
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return
        if not chunk:
            return
        data += chunk


def raw(url, tz, hexpayload):
    sock, rest = raw_connect(url)
    sock.sendall(frame(1, tz.encode()))
    sock.sendall(frame(1, bytes.fromhex(hexpayload)))
    for opcode, payload in read_frames(sock, rest):
        if opcode == 8:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            out({"closed": code, "reason": payload[2:].decode(errors="replace")})
            return
        if opcode == 1:
            out({"reply": json.loads(payload)})
    out({"closed": None})


def silent(url, tz, seconds):
    sock, _ = raw_connect(url)
    sock.sendall(frame(1, tz.encode()))
    out({"ready": True})
    time.sleep(float(seconds))
    # Whether the server closed us: a read returns b"" (or reset) when it did.
    sock.settimeout(1)
    try:
        data = sock.recv(65536)
        while data:
            data = sock.recv(65536)
        out({"server_closed": True})
    except (ConnectionResetError, socket.timeout) as error:
        out({"server_closed": isinstance(error, ConnectionResetError)})


def main():
    mode, url, tz, *rest = sys.argv[1:]
    if mode == "plain":
        asyncio.run(plain(url, tz, rest))
    elif mode == "wait":
        asyncio.run(wait(url, tz))
    elif mode == "raw":
        raw(url, tz, rest[0])
    elif mode == "silent":
        silent(url, tz, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
