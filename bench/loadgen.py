"""An open-loop HTTP/1.1 load generator cheap enough to share 2 cores with the server.

    python bench/loadgen.py --port 8096 --path /healthz --rate 300 --seconds 10

Requests go out on a fixed schedule (`rate` per second) over `connections`
keep-alive connections, whether or not earlier ones have answered; a request
that finds every connection busy waits for one, and its latency counts from
its scheduled time (no coordinated omission). The request bytes are encoded
once and a response is read by its Content-Length on a bare asyncio
`Protocol`: a few tens of microseconds of this process's CPU per request,
where httpx spent more than the server did. Prints one JSON line: latency
percentiles (ms), errors, and this process's own CPU time, so a run can show
what the load generator took from the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.index(b"content-length:") + 15
        stop = head.find(b"\r\n", at)
        length = int(head[at : stop if stop > 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def run(host: str, port: int, path: str, rate: float, seconds: float, conns: int) -> dict:
    loop = asyncio.get_running_loop()
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n".encode()
    idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def connect() -> Connection:
        _, protocol = await loop.create_connection(Connection, host, port)
        return protocol

    for _ in range(conns):
        idle.put_nowait(await connect())
    for _ in range(min(50, conns * 2)):  # warm both sides
        c = await idle.get()
        await c.request(raw)
        idle.put_nowait(c)

    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        c = await idle.get()
        try:
            if c.lost:
                c = await connect()
            status = await c.request(raw)
            if status != 200:
                errors += 1
        except Exception:
            errors += 1
            c = await connect()
        latencies.append(time.perf_counter() - scheduled)
        idle.put_nowait(c)

    total = int(rate * seconds)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    tasks = []
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2)

    return {
        "path": path,
        "rate": rate,
        "requests": total,
        "errors": errors,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1] * 1000, 2),
        "achieved_rps": round(total / wall, 1),
        "client_cpu_s": round(cpu, 3),
        "client_cpu_share": round(cpu / wall, 3),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run(args.host, args.port, args.path, args.rate, args.seconds, args.connections)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
