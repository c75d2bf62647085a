#!/usr/bin/env python3
"""Many idle `xfer.v1` listeners in one process, for Benchmarks/listeners_bench.sh.

    many_listeners.py --url ws://127.0.0.1:PORT/ --count N [--first I] [--prefix l] [--names K]
                      [--concurrency C] [--expect TEXT] [--receipts FILE] [--tag T]
                      [--client-ping-interval S] [--open-timeout S]

Opens COUNT WebSocket connections with the subprotocol "xfer.v1", each sending the binary hello
    [0x01 version][0x01 hello][u16 BE field count] then, per field sorted by key,
    [u16 BE key length][key][u16 BE value length][value]
with role=listen, timezone=UTC, name=PREFIX<i> (i = FIRST .. FIRST+COUNT-1, or i mod K with
--names K), and checks that the server answers with a welcome frame (0x01 0x02 ...). It then
holds every connection open and reads from it, so that the server's pings are answered (the
`websockets` library sends the pongs itself). The client sends no pings of its own unless
--client-ping-interval is given, so the server's heartbeat is the only traffic.

Deliver frames ([0x01][0x05][u64 BE seq][u16 BE from length][from][text]) whose text equals
--expect are counted. For each, one line "READ ARRIVED" goes to --receipts once every open
connection has got it: READ is the wall-clock time (time.time()) at which Python had the
message; ARRIVED is when the server's frame reached the listener's socket buffer: at the read of
the chunk that held it, the read time minus TCP_INFO's tcpi_last_data_recv (millisecond
resolution). When a ping followed the frame in that chunk, the kernel's time is the ping's, so
ARRIVED is "-" (unknown). READ - ARRIVED is the time the frame waited for Python.

Events on stdout, one JSON object per line:
  {"event":"ready", ...}     every connection attempt has finished: connected, failed, errors
                             (message -> count), seconds
  {"event":"lost", ...}      a connection closed while we were holding it (first 20 only; all
                             are counted): name, code, reason, seconds since start
  {"event":"received", ...}  every open connection got the --expect text: count, first, last
  {"event":"summary", ...}   on SIGUSR1, SIGTERM or SIGINT: all counters (SIGTERM/SIGINT then
                             exit at once without closing handshakes)

Needs `pip install websockets` (tested with 17.x).
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time

try:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed
    from websockets.frames import Opcode
except ImportError:  # pragma: no cover - reported to the calling script
    sys.stderr.write("many_listeners.py: needs the `websockets` package (>= 13): pip install websockets\n")
    sys.exit(3)

MAX_LOST_LINES = 20
# struct tcp_info (linux/tcp.h): 8 bytes of u8 fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked,
# lost, retrans, fackets, last_data_sent, last_ack_sent, last_data_recv: the last at byte 52.
TCP_INFO_LAST_DATA_RECV = 52


class TimedConnection(ClientConnection):
    """Notes, for each chunk read that holds a binary frame, when its last byte reached the socket buffer."""

    binary_arrival = None
    chunk_opcodes = None

    def data_received(self, data):
        now = time.time()
        try:
            sock = self.transport.get_extra_info("socket")
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            (last_data_recv_ms,) = struct.unpack_from("I", info, TCP_INFO_LAST_DATA_RECV)
            arrival = now - last_data_recv_ms / 1000.0
        except (AttributeError, OSError, struct.error):
            arrival = None
        self.chunk_opcodes = []
        super().data_received(data)
        opcodes = self.chunk_opcodes
        self.chunk_opcodes = None
        if Opcode.BINARY in opcodes:
            last_binary = len(opcodes) - 1 - opcodes[::-1].index(Opcode.BINARY)
            # A ping after the frame in the same chunk: the kernel's last arrival is the ping's.
            self.binary_arrival = None if Opcode.PING in opcodes[last_binary:] else arrival

    def process_event(self, event):
        if self.chunk_opcodes is not None:
            self.chunk_opcodes.append(getattr(event, "opcode", None))
        super().process_event(event)


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def hello_frame(fields):
    """The binary hello of xfer.v1 (see Sources/XferProtocol/WireMessage.swift)."""
    out = bytearray([0x01, 0x01])
    out += struct.pack(">H", len(fields))
    for key in sorted(fields):
        k = key.encode()
        v = fields[key].encode()
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return bytes(out)


class Listeners:
    def __init__(self, args):
        self.args = args
        self.start = time.monotonic()
        self.connected = 0
        self.failed = 0
        self.errors = {}
        self.lost = 0
        self.lost_codes = {}
        self.lost_lines = 0
        self.received = 0
        self.receipts = []
        self.arrivals = []
        self.other_frames = 0
        self.bad_frames = 0
        self.ready_sent = False
        self.received_sent = False
        self.ready_seconds = None
        self.expect = args.expect.encode() if args.expect is not None else None
        self.sockets = []

    def name(self, i):
        if self.args.names > 0:
            return f"{self.args.prefix}{i % self.args.names}"
        return f"{self.args.prefix}{i}"

    def counters(self):
        return {
            "helper": self.args.tag,
            "count": self.args.count,
            "connected": self.connected,
            "failed": self.failed,
            "errors": self.errors,
            "lost": self.lost,
            "lost_codes": self.lost_codes,
            "open": self.connected - self.lost,
            "received": self.received,
            "other_frames": self.other_frames,
            "bad_frames": self.bad_frames,
            "ready_seconds": self.ready_seconds,
            "pid": os.getpid(),
        }

    def fail(self, message):
        self.failed += 1
        self.errors[message] = self.errors.get(message, 0) + 1
        self.check_ready()

    def check_ready(self):
        if not self.ready_sent and self.connected + self.failed >= self.args.count:
            self.ready_sent = True
            self.ready_seconds = round(time.monotonic() - self.start, 3)
            emit(dict(self.counters(), event="ready", seconds=self.ready_seconds))
            self.check_received()

    def check_received(self):
        if self.received_sent or self.expect is None or not self.ready_sent:
            return
        # Done when every connection got the text or is gone (also when none connected at all).
        if (self.received > 0 or self.connected == self.lost) and self.received + self.lost >= self.connected:
            self.received_sent = True
            self.write_receipts()
            emit(
                dict(
                    self.counters(),
                    event="received",
                    first=min(self.receipts, default=None),
                    last=max(self.receipts, default=None),
                )
            )

    def write_receipts(self):
        if self.args.receipts:
            with open(self.args.receipts, "w") as f:
                f.write(
                    "".join(
                        f"{t:.6f} {'-' if a is None else f'{a:.6f}'}\n" for t, a in zip(self.receipts, self.arrivals)
                    )
                )

    def summary(self, why):
        if not self.received_sent:
            self.write_receipts()
        emit(dict(self.counters(), event="summary", why=why, seconds=round(time.monotonic() - self.start, 3)))

    async def one(self, i, semaphore):
        name = self.name(i)
        async with semaphore:
            try:
                ws = await connect(
                    self.args.url,
                    subprotocols=["xfer.v1"],
                    compression=None,
                    proxy=None,
                    open_timeout=self.args.open_timeout,
                    ping_interval=self.args.client_ping_interval,
                    ping_timeout=None if self.args.client_ping_interval is None else 60,
                    close_timeout=2,
                    max_queue=4,
                    create_connection=TimedConnection,
                )
            except Exception as error:  # every kind of failure is counted, by message
                self.fail(f"connect: {type(error).__name__}: {error}")
                return
            try:
                await ws.send(hello_frame({"role": "listen", "timezone": "UTC", "name": name}))
                welcome = await asyncio.wait_for(ws.recv(), self.args.open_timeout)
            except Exception as error:
                code = getattr(getattr(error, "rcvd", None), "code", None)
                self.fail(f"hello: {type(error).__name__}: {error}" + (f" (close code {code})" if code else ""))
                return
            if not isinstance(welcome, bytes) or welcome[:2] != b"\x01\x02":
                self.fail(f"hello: first answer is not a welcome frame: {welcome[:40]!r}")
                await ws.close()
                return
        self.connected += 1
        self.sockets.append(ws)
        self.check_ready()
        try:
            async for message in ws:
                if isinstance(message, bytes) and message[:2] == b"\x01\x05" and len(message) >= 12:
                    (from_length,) = struct.unpack_from(">H", message, 10)
                    text = message[12 + from_length :]
                    if self.expect is not None and text == self.expect:
                        now = time.time()
                        self.receipts.append(now)
                        self.arrivals.append(ws.binary_arrival)
                        self.received += 1
                        self.check_received()
                    else:
                        self.other_frames += 1
                elif isinstance(message, bytes) and message[:1] == b"\x01":
                    self.other_frames += 1
                else:
                    self.bad_frames += 1
            # The iterator ends on a normal close (1000/1001) from the server.
            code, reason = ws.close_code, ws.close_reason
        except ConnectionClosed as error:
            rcvd = error.rcvd
            code = rcvd.code if rcvd else None
            reason = rcvd.reason if rcvd else f"no close frame ({type(error).__name__})"
        except Exception as error:
            code, reason = None, f"{type(error).__name__}: {error}"
        self.lost += 1
        key = str(code)
        self.lost_codes[key] = self.lost_codes.get(key, 0) + 1
        if self.lost_lines < MAX_LOST_LINES:
            self.lost_lines += 1
            emit(
                {
                    "event": "lost",
                    "helper": self.args.tag,
                    "name": name,
                    "code": code,
                    "reason": reason,
                    "seconds": round(time.monotonic() - self.start, 3),
                }
            )
        self.check_received()

    async def run(self):
        loop = asyncio.get_running_loop()

        def on_usr1():
            self.summary("SIGUSR1")

        def on_stop(signame):
            self.summary(signame)
            sys.stdout.flush()
            os._exit(0)

        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
        loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
        semaphore = asyncio.Semaphore(self.args.concurrency)
        tasks = [asyncio.create_task(self.one(self.args.first + k, semaphore)) for k in range(self.args.count)]
        await asyncio.gather(*tasks)
        # Every connection is closed or failed: nothing left to hold.
        self.summary("all connections ended")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/")
    parser.add_argument("--count", type=int, required=True, help="connections to open")
    parser.add_argument("--first", type=int, default=0, help="index of the first listener name (default 0)")
    parser.add_argument("--prefix", default="l", help="listener name prefix (default l)")
    parser.add_argument("--names", type=int, default=0, help="use K shared names PREFIX0..PREFIX<K-1> (default: one per connection)")
    parser.add_argument("--concurrency", type=int, default=64, help="connection attempts in flight (default 64)")
    parser.add_argument("--expect", help="text of the broadcast to time")
    parser.add_argument("--receipts", help="file for the receipt times of --expect (epoch seconds)")
    parser.add_argument("--tag", default="h0", help="name of this helper in its events")
    parser.add_argument("--client-ping-interval", type=float, default=None, help="send our own pings too (default: none)")
    parser.add_argument("--open-timeout", type=float, default=60, help="seconds for connect and welcome (default 60)")
    args = parser.parse_args()
    if args.count < 1 or args.concurrency < 1:
        parser.error("--count and --concurrency must be positive")
    asyncio.run(Listeners(args).run())


if __name__ == "__main__":
    main()
