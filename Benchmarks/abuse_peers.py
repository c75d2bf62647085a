#!/usr/bin/env python3
"""Hostile load for Benchmarks/abuse_bench.sh: idle sockets, stalled upgrades and flooding clients.

usage: abuse_peers.py PORT IDLE STALLED FLOODERS SECONDS
Idle sockets upgrade, send a timezone and then neither read nor write, from 127.0.0.2 onwards (1000 per source
address, the server's default per-address limit); stalled upgrades send half a request header from 127.0.0.30 and
are reopened when the server drops them (--handshake-timeout); flooders upgrade from 127.0.0.31 with a 4 KiB
receive buffer and send small text frames as fast as the server reads them, never reading. Prints one JSON line
when everything is connected ({"ready": ...}) and one at the end; runs for SECONDS after ready.
"""
import base64
import json
import os
import select
import socket
import sys
import time


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def frame(payload):
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def open_socket(port, source, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def upgrade(sock):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        response += chunk
    if b" 101 " not in response.split(b"\r\n", 1)[0]:
        return False
    sock.sendall(frame(b"UTC"))
    return True


def stalled_socket(port):
    sock = open_socket(port, "127.0.0.30")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    sock.setblocking(False)
    return sock


def main():
    port, idle, stalled, flooders, seconds = (int(a) for a in sys.argv[1:6])
    idle_sockets, refused = [], 0
    for i in range(idle):
        sock = open_socket(port, f"127.0.0.{2 + i // 1000}")
        if upgrade(sock):
            idle_sockets.append(sock)
        else:
            refused += 1
            sock.close()
    stalled_sockets = [stalled_socket(port) for _ in range(stalled)]
    flood_sockets = []
    for _ in range(flooders):
        sock = open_socket(port, "127.0.0.31", rcvbuf=4096)
        if upgrade(sock):
            sock.setblocking(False)
            flood_sockets.append(sock)
    out({"ready": True, "idle": len(idle_sockets), "refused": refused, "stalled": len(stalled_sockets),
         "flooders": len(flood_sockets)})
    batch = b"".join(frame(b"flood") for _ in range(1000))
    flooded = 0
    reopened = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, writable, _ = select.select([], flood_sockets, [], 0.2)
        for sock in writable:
            try:
                flooded += sock.send(batch)
            except OSError:
                flood_sockets.remove(sock)
        readable, _, _ = select.select(stalled_sockets, [], [], 0)
        for sock in readable:
            # The server gave up on this upgrade (handshake timeout): open another one.
            stalled_sockets.remove(sock)
            sock.close()
            stalled_sockets.append(stalled_socket(port))
            reopened += 1
    out({"done": True, "flooded_bytes": flooded, "stalled_reopened": reopened})


if __name__ == "__main__":
    main()
