#!/usr/bin/env python3
"""Python `websockets` reference for Benchmarks/text_bench.sh.

Subcommands (each prints its result as one JSON line on stdout):

  server   --port 0                         a plain WebSocket server speaking the same plain
                                            protocol as `xfer serve`: the first text frame is the
                                            client's timezone, each later text frame is a message,
                                            answered with {"ok":true,"id":N}. Prints
                                            {"event":"listening","port":P,"pid":PID} first.
  pipeline --url URL --input FILE --window W
                                            sends each line of FILE as a text message, at most W
                                            unacknowledged at once; reports wall time and rate.
  rtt      --url URL --input FILE           one message at a time (window 1); reports the time of
                                            each send+recv (time.perf_counter_ns) as percentiles.
  oneshot  --url URL [TEXT]                 connect, timezone, one message, its status, close.
  stats    [FILE]                           percentiles of the `latency_ms` fields of JSON lines.
  gen      --count N --size S --output FILE N lines of exactly S bytes (plus the newline).
  timecmd  --runs N [--warmup W] -- CMD...  whole-process time of CMD (a fallback for hyperfine):
                                            mean/median/stddev/min/max in ms; fails if CMD fails.

Needs `pip install websockets` (tested with 17.x). Compression is off on both ends, as xfer
does not compress text messages.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time

try:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
except ImportError:  # pragma: no cover - reported to the calling script
    sys.stderr.write("py_ws_reference.py: needs the `websockets` package (>= 13): pip install websockets\n")
    sys.exit(3)

# Big enough for the 100-byte messages here; also keeps `websockets` from closing with 1009.
MAX_SIZE = 1 << 20


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def percentile(sorted_values, p):
    """Nearest-rank percentile (p in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


def summary_ms(values_ms):
    values = sorted(values_ms)
    return {
        "count": len(values),
        "mean_ms": statistics.fmean(values) if values else None,
        "median_ms": statistics.median(values) if values else None,
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "min_ms": values[0] if values else None,
        "max_ms": values[-1] if values else None,
    }


def read_lines(path):
    with open(path, "rb") as handle:
        return [line.rstrip(b"\n").decode("utf-8") for line in handle]


# --- server -----------------------------------------------------------------------------------


async def handler(websocket):
    try:
        await websocket.recv()  # the timezone; the reference does not validate it
        next_id = 0
        async for _message in websocket:
            next_id += 1
            await websocket.send('{"ok":true,"id":%d}' % next_id)
    except Exception:  # noqa: BLE001 - a client going away is not the benchmark's business
        pass


async def run_server(args):
    async with serve(handler, args.host, args.port, compression=None, max_size=MAX_SIZE, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        emit({"event": "listening", "host": args.host, "port": port, "pid": os.getpid()})
        stop = asyncio.get_running_loop().create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):  # like xfer serve: a signal ends it with status 0
            asyncio.get_running_loop().add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
        await stop


# --- clients ----------------------------------------------------------------------------------


async def run_pipeline(args):
    lines = read_lines(args.input)
    window = asyncio.Semaphore(args.window)
    failures = 0
    received = 0

    start = time.perf_counter_ns()
    async with connect(args.url, compression=None, max_size=MAX_SIZE, ping_interval=None) as ws:
        await ws.send("UTC")
        connected = time.perf_counter_ns()

        async def receiver():
            nonlocal failures, received
            for _ in range(len(lines)):
                status = json.loads(await ws.recv())
                received += 1
                if status.get("ok") is not True:
                    failures += 1
                window.release()

        reader = asyncio.create_task(receiver())
        for line in lines:
            await window.acquire()
            await ws.send(line)
        await reader
        acked = time.perf_counter_ns()
    end = time.perf_counter_ns()

    seconds = (end - start) / 1e9
    emit({
        "messages": len(lines),
        "acknowledged": received,
        "failures": failures,
        "window": args.window,
        "seconds": seconds,
        "rate": len(lines) / seconds,
        "seconds_connected_to_last_ack": (acked - connected) / 1e9,
    })


async def run_rtt(args):
    lines = read_lines(args.input)
    samples = []
    failures = 0
    async with connect(args.url, compression=None, max_size=MAX_SIZE, ping_interval=None) as ws:
        await ws.send("UTC")
        for line in lines:
            t0 = time.perf_counter_ns()
            await ws.send(line)
            reply = await ws.recv()
            t1 = time.perf_counter_ns()
            samples.append((t1 - t0) / 1e6)
            if json.loads(reply).get("ok") is not True:
                failures += 1
    result = summary_ms(samples)
    result["failures"] = failures
    emit(result)


async def run_oneshot(args):
    async with connect(args.url, compression=None, max_size=MAX_SIZE, ping_interval=None) as ws:
        await ws.send("UTC")
        await ws.send(args.text)
        status = json.loads(await ws.recv())
    emit({"event": "status", "ok": status.get("ok"), "id": status.get("id")})
    return 0 if status.get("ok") is True else 1


# --- offline helpers --------------------------------------------------------------------------


def run_stats(args):
    values = []
    handle = open(args.file, encoding="utf-8") if args.file != "-" else sys.stdin
    with handle:
        for line in handle:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get(args.field) is not None:
                values.append(float(event[args.field]))
    emit(summary_ms(values))


def run_gen(args):
    with open(args.output, "w", encoding="ascii", newline="\n") as out:
        for i in range(args.count):
            head = "m%09d " % i
            out.write((head + "x" * args.size)[: args.size] + "\n")


def run_timecmd(args):
    command = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not command:
        sys.stderr.write("timecmd: no command\n")
        return 2
    samples = []
    for i in range(args.warmup + args.runs):
        t0 = time.perf_counter_ns()
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        t1 = time.perf_counter_ns()
        if done.returncode != 0:
            sys.stderr.write("timecmd: %s exited %d\n" % (command[0], done.returncode))
            return 1
        if i >= args.warmup:
            samples.append((t1 - t0) / 1e6)
    result = summary_ms(samples)
    result["stddev_ms"] = statistics.stdev(samples) if len(samples) > 1 else 0.0
    emit(result)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)

    p = sub.add_parser("pipeline")
    p.add_argument("--url", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--window", type=int, default=100)

    p = sub.add_parser("rtt")
    p.add_argument("--url", required=True)
    p.add_argument("--input", required=True)

    p = sub.add_parser("oneshot")
    p.add_argument("--url", required=True)
    p.add_argument("text", nargs="?", default="x")

    p = sub.add_parser("stats")
    p.add_argument("file", nargs="?", default="-")
    p.add_argument("--field", default="latency_ms")

    p = sub.add_parser("gen")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--output", required=True)

    p = sub.add_parser("timecmd")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("cmd", nargs=argparse.REMAINDER)

    args = parser.parse_args()
    if args.command == "server":
        try:
            asyncio.run(run_server(args))
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "pipeline":
        asyncio.run(run_pipeline(args))
        return 0
    if args.command == "rtt":
        asyncio.run(run_rtt(args))
        return 0
    if args.command == "oneshot":
        return asyncio.run(run_oneshot(args))
    if args.command == "stats":
        run_stats(args)
        return 0
    if args.command == "timecmd":
        return run_timecmd(args)
    if args.command == "gen":
        run_gen(args)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
