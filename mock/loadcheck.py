#!/usr/bin/env python3
"""Load check for allma's mock server (mock_server.py).

This file owns the throughput measurement recorded in mock/README.md: it
opens C concurrent HTTP/1.1 keep-alive connections to the mock (127.0.0.1
only), each sending GET /load?latency_ms=L back to back, and reports the
completed requests per second over a measurement window, next to the
ceiling C * 1000 / L that the latency allows, the server's peak open
connections (GET /__stats) and the CPU share the server used.

Without --port/--port-file it starts its own mock (with a request log file,
so logging cost is included) and stops it afterwards.

  python3 mock/loadcheck.py                       # 2000 conns, 500 ms
  python3 mock/loadcheck.py -c 2000 -l 250 -d 15
  python3 mock/loadcheck.py --port-file /tmp/x.port --procs 2

Standard library only; the client is an asyncio Protocol per connection and
may be spread over several processes (--procs).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))


class Counter:
    """Shared by all connections of one client process."""

    def __init__(self):
        self.ok = 0
        self.errors = 0
        self.closed = 0


class LoadConnection(asyncio.Protocol):
    """Sends the same request again as soon as the previous answer is in."""

    def __init__(self, request, counter, stagger):
        self.request = request
        self.counter = counter
        self.stagger = stagger  # max random delay of the first request (s)
        self.transport = None
        self.buf = bytearray()
        self.need = -1          # bytes of the current response, -1 = head unknown

    def connection_made(self, transport):
        self.transport = transport
        # Spread the first requests over one latency period, so that the
        # load is a steady stream instead of synchronized waves.
        asyncio.get_running_loop().call_later(
            random.uniform(0, self.stagger), self._first)

    def _first(self):
        if self.transport is not None:
            self.transport.write(self.request)

    def connection_lost(self, exc):
        self.counter.closed += 1
        self.transport = None

    def data_received(self, data):
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end + 2]).lower()
                i = head.find(b"content-length:")
                length = int(head[i + 15:head.find(b"\r\n", i)]) if i >= 0 else 0
                if not head.startswith(b"http/1.1 200"):
                    self.counter.errors += 1
                self.need = end + 4 + length
            if len(buf) < self.need:
                return
            del buf[:self.need]
            self.need = -1
            self.counter.ok += 1
            self.transport.write(self.request)


async def run_client(port, conns, path, stagger, warmup, duration):
    """Open conns connections, wait warmup seconds, then count for duration.
    Returns (completed in window, errors, connections that failed/closed)."""
    loop = asyncio.get_running_loop()
    counter = Counter()
    request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
               f"Accept: */*\r\n\r\n").encode()
    gate = asyncio.Semaphore(256)          # do not flood the SYN queue
    failed = 0

    async def connect():
        nonlocal failed
        async with gate:
            try:
                await loop.create_connection(
                    lambda: LoadConnection(request, counter, stagger), HOST, port)
            except OSError:
                failed += 1

    await asyncio.gather(*(connect() for _ in range(conns)))
    await asyncio.sleep(warmup)
    start_ok, start_err, t0 = counter.ok, counter.errors, time.monotonic()
    await asyncio.sleep(duration)
    elapsed = time.monotonic() - t0
    return {"ok": counter.ok - start_ok, "errors": counter.errors - start_err,
            "elapsed": elapsed, "failed_connects": failed,
            "closed": counter.closed}


def client_process(port, conns, path, stagger, warmup, duration, queue):
    raise_fd_limit()
    queue.put(asyncio.run(run_client(port, conns, path, stagger, warmup,
                                     duration)))


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_mock(tmpdir):
    """Start mock_server.py; returns (process, port, pid)."""
    port_file = os.path.join(tmpdir, "mock.port")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "mock_server.py"), "--port", "0",
         "--smtp-port", "-1", "--port-file", port_file,
         "--log-file", os.path.join(tmpdir, "requests.jsonl")])
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("mock server did not start")
        time.sleep(0.05)
    with open(port_file) as f:
        ports = json.load(f)
    return proc, ports["http"], ports["pid"]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_json(port, path):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--connections", type=int, default=2000)
    ap.add_argument("-l", "--latency-ms", type=int, default=500)
    ap.add_argument("-d", "--duration", type=float, default=10.0,
                    help="measurement window in seconds")
    ap.add_argument("-w", "--warmup", type=float, default=3.0,
                    help="seconds between connecting and measuring")
    ap.add_argument("--procs", type=int, default=1,
                    help="client processes (connections are split)")
    ap.add_argument("--port", type=int)
    ap.add_argument("--port-file")
    args = ap.parse_args()

    raise_fd_limit()
    proc, pid = None, None
    tmp = tempfile.TemporaryDirectory(prefix="allma-loadcheck-")
    if args.port:
        port = args.port
    elif args.port_file:
        with open(args.port_file) as f:
            ports = json.load(f)
        port, pid = ports["http"], ports.get("pid")
    else:
        proc, port, pid = start_mock(tmp.name)
    try:
        urllib.request.urlopen(f"http://{HOST}:{port}/__reset", data=b"",
                               timeout=10).close()
        path = f"/load?latency_ms={args.latency_ms}"
        queue = multiprocessing.Queue()
        share = [args.connections // args.procs] * args.procs
        share[0] += args.connections - sum(share)
        workers = [multiprocessing.Process(
            target=client_process,
            args=(port, n, path, args.latency_ms / 1000.0, args.warmup,
                  args.duration, queue))
            for n in share]
        for w in workers:
            w.start()
        # sample the server's CPU over (roughly) the measurement window
        time.sleep(args.warmup + 0.5)
        cpu0, t0 = (cpu_seconds(pid) if pid else None), time.monotonic()
        time.sleep(max(args.duration - 1.0, 0.5))
        cpu1, t1 = (cpu_seconds(pid) if pid else None), time.monotonic()
        results = [queue.get() for _ in workers]
        for w in workers:
            w.join()
        stats = get_json(port, "/__stats")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        tmp.cleanup()

    ok = sum(r["ok"] for r in results)
    errors = sum(r["errors"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    rate = ok / elapsed
    ceiling = args.connections * 1000.0 / args.latency_ms if args.latency_ms else None
    print(f"connections        {args.connections} ({args.procs} client process(es))")
    print(f"latency_ms         {args.latency_ms}")
    print(f"window             {elapsed:.1f} s after {args.warmup:.1f} s warm-up")
    print(f"completed          {ok} requests, {errors} non-200")
    print(f"throughput         {rate:.0f} req/s")
    if ceiling:
        print(f"latency ceiling    {ceiling:.0f} req/s "
              f"(reached {100.0 * rate / ceiling:.1f}%)")
    print(f"failed connects    {sum(r['failed_connects'] for r in results)}, "
          f"closed by server {sum(r['closed'] for r in results)}")
    print(f"server peak conns  {stats['connections_peak']}")
    if cpu0 is not None and cpu1 is not None:
        print(f"server CPU         {100.0 * (cpu1 - cpu0) / (t1 - t0):.0f}% of one core")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
