#!/usr/bin/env python3
"""Hostile and malformed WebSocket peers for xfer's hardening tests (issue 10).

Each mode prints JSON objects, one per line, on stdout:
  frame URL TZ FIRST MASK HEX     raw client: upgrades, sends TZ (unless TZ is "-"), then one frame whose first byte
                                  is FIRST (decimal: FIN, RSV bits, opcode), masked unless MASK is 0, with the
                                  payload HEX; prints the replies and the close code the server answers with.
  flood URL PID SECONDS           plain client with a 4 KiB receive buffer: sends tiny text frames for SECONDS
                                  without reading; prints how many it sent and the server's (PID) RSS growth in KiB.
  stall URL TZ SECONDS            plain client with a 4 KiB receive buffer that never reads: prints "ready", then
                                  whether the server closed the connection within SECONDS.
  offers URL SIZE...              xfer.v1 upload client: one connection per SIZE ("-" leaves size out), sends hello and
                                  an offer; prints the server's answer (accept offset, or error code and close code).
  http URL REQUEST_LINE [HEADER...]  sends one HTTP request (upgrade headers added when REQUEST_LINE ends with "+ws");
                                  prints the status and whether the server closed the connection after answering.
  fakeserver MODE                 a fake xfer.v1 server on a free port (prints {"port": N}): upgrades one client,
                                  then sends a bad frame (MODE: rsv, masked, close0, close1byte, closeutf8) and prints
                                  the close code the client answers with.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
from urllib.parse import urlparse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def connect(url, protocol=None, rcvbuf=None):
    parsed = urlparse(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((parsed.hostname, parsed.port))
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    request = (
        f"GET / HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("connection closed during upgrade")
        response += chunk
    if b" 101 " not in response.split(b"\r\n", 1)[0]:
        raise SystemExit("upgrade refused: " + response.split(b"\r\n", 1)[0].decode())
    return sock, response.split(b"\r\n\r\n", 1)[1]


def frame(first, payload, masked=True):
    n = len(payload)
    head = bytes([first])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frames(sock, data, timeout=10):
    """Yields (first byte, payload) of each frame the peer sends until EOF or timeout."""
    sock.settimeout(timeout)
    while True:
        while len(data) >= 2:
            n = data[1] & 0x7F
            offset = 2
            if n == 126:
                if len(data) < 4:
                    break
                n, offset = struct.unpack(">H", data[2:4])[0], 4
            elif n == 127:
                if len(data) < 10:
                    break
                n, offset = struct.unpack(">Q", data[2:10])[0], 10
            if data[1] & 0x80:
                offset += 4
            if len(data) < offset + n:
                break
            payload = data[offset:offset + n]
            if data[1] & 0x80:
                mask = data[offset - 4:offset]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            first, data = data[0], data[offset + n:]
            yield first, payload
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            return
        if not chunk:
            return
        data += chunk


def close_code(payload):
    return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None


def mode_frame(url, tz, first, masked, hexpayload):
    sock, rest = connect(url)
    if tz != "-":
        sock.sendall(frame(0x81, tz.encode()))
    sock.sendall(frame(int(first), bytes.fromhex(hexpayload), masked != "0"))
    for first_byte, payload in frames(sock, rest):
        opcode = first_byte & 0x0F
        if opcode == 8:
            out({"closed": close_code(payload)})
            return
        if opcode == 1:
            out({"reply": json.loads(payload)})
        elif opcode == 2:
            out({"binary": payload.hex()})
    out({"closed": None})


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mode_flood(url, pid, seconds):
    sock, _ = connect(url, rcvbuf=4096)
    sock.sendall(frame(0x81, b"UTC"))
    before = rss_kib(pid)
    batch = b"".join(frame(0x81, b"x") for _ in range(2000))
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + float(seconds)
    pending = b""
    while time.monotonic() < deadline:
        if not pending:
            pending = batch
        try:
            n = sock.send(pending)
            sent += n
            pending = pending[n:]
        except BlockingIOError:
            time.sleep(0.01)
    time.sleep(1)
    out({"frames": sent // 7, "rss_growth_kib": rss_kib(pid) - before})
    sock.close()


def mode_stall(url, tz, seconds):
    sock, _ = connect(url, rcvbuf=4096)
    sock.sendall(frame(0x81, tz.encode()))
    out({"ready": True})
    time.sleep(float(seconds))
    out({"done": True})


def fields(pairs):
    body = struct.pack(">H", len(pairs))
    for key in sorted(pairs):
        for text in (key, pairs[key]):
            raw = text.encode()
            body += struct.pack(">H", len(raw)) + raw
    return body


def mode_offers(url, sizes):
    for size in sizes:
        sock, rest = connect(url, protocol="xfer.v1")
        sock.sendall(frame(0x82, bytes([1, 0x01]) + fields({"timezone": "UTC", "role": "upload"})))
        offer = {"upload": "0123456789abcdef0123456789abcdef", "name": "f.bin", "block_size": "1048576",
                 "mtime": "1", "kind": "file"}
        if size != "-":
            offer["size"] = size
        answer = {"size": size}
        welcomed = False
        for first, payload in frames(sock, rest):
            opcode = first & 0x0F
            if opcode == 2 and payload[1] == 0x02 and not welcomed:
                welcomed = True
                sock.sendall(frame(0x82, bytes([1, 0x10]) + fields(offer)))
            elif opcode == 2 and payload[1] == 0x11:
                answer["accept"] = struct.unpack(">Q", payload[2:10])[0]
                sock.sendall(frame(0x88, struct.pack(">H", 1000)))
            elif opcode == 2 and payload[1] == 0x7F:
                n = struct.unpack(">H", payload[2:4])[0]
                answer["error"] = payload[4:4 + n].decode()
            elif opcode == 8:
                answer["closed"] = close_code(payload)
                break
        out(answer)
        sock.close()


def mode_http(url, request_line, headers):
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=5)
    lines = [request_line.removesuffix(" +ws"), f"Host: {parsed.hostname}:{parsed.port}"]
    if request_line.endswith("+ws"):
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13"]
    lines += headers
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    closed = False
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else None
    try:
        body = json.loads(body)
    except ValueError:
        body = body.decode(errors="replace")
    out({"status": status, "closed": closed, "body": body})


def mode_fakeserver(mode):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    out({"port": listener.getsockname()[1]})
    listener.settimeout(30)
    sock, _ = listener.accept()
    sock.settimeout(10)
    request = b""
    while b"\r\n\r\n" not in request:
        request += sock.recv(65536)
    key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
           if line.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest()).decode()
    sock.sendall((
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: xfer.v1\r\n\r\n").encode())
    bad = {
        "rsv": frame(0x80 | 0x40 | 0x1, b"x", masked=False),
        "masked": frame(0x82, bytes([1, 0x02]) + fields({"client": "1"}), masked=True),
        "close0": frame(0x88, struct.pack(">H", 0), masked=False),
        "close1byte": frame(0x88, b"\x03", masked=False),
        "closeutf8": frame(0x88, struct.pack(">H", 1000) + b"\xff\xfe", masked=False),
    }[mode]
    sock.sendall(bad)
    for first, payload in frames(sock, request.split(b"\r\n\r\n", 1)[1]):
        if first & 0x0F == 8:
            out({"closed": close_code(payload)})
            return
    out({"closed": None})


def main():
    mode, *args = sys.argv[1:]
    if mode == "frame":
        mode_frame(*args)
    elif mode == "flood":
        mode_flood(*args)
    elif mode == "stall":
        mode_stall(*args)
    elif mode == "offers":
        mode_offers(args[0], args[1:])
    elif mode == "http":
        mode_http(args[0], args[1], args[2:])
    elif mode == "fakeserver":
        mode_fakeserver(args[0])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
