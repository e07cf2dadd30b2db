"""An HTTP/1.1 shaping proxy for S3 on 127.0.0.1: first-byte latency, bandwidth cap, counters.

    python shaper.py --upstream 127.0.0.1:PORT [--latency-ms 30] [--mbps 100]

prints ``{"port": P, "control": C}`` when listening. Clients talk plain HTTP to port P
exactly as to the S3 server (keep-alive, one request at a time per connection, which is
what boto3, aiobotocore and s3fs do). For every request the proxy holds the first byte of
the response until ``latency`` has passed since the request's last byte arrived (S3's
time to first byte), then paces the body at ``mbps`` MB/s per connection (S3's
per-connection throughput). ``GET http://127.0.0.1:C/stats`` returns the counters (requests
by method, response body bytes, connections), ``/reset`` zeroes them.

Runs in its own process so that it never competes for the GIL of the code being timed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter, deque

CHUNK = 256 * 1024


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.body_bytes = 0
        self.range_gets = 0
        self.connections = 0
        self.max_in_flight = 0
        self.in_flight = 0

    def as_dict(self) -> dict:
        return {"requests": sum(self.requests.values()), "by_method": dict(self.requests),
                "range_gets": self.range_gets, "body_bytes": self.body_bytes,
                "connections": self.connections, "max_in_flight": self.max_in_flight}


STATS = Stats()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
    return lines[0], fields


async def _copy_exact(reader, writer, n: int, pace: float | None = None) -> None:
    """Copy ``n`` bytes; with ``pace`` (bytes/s) sleep so the copy never outruns it."""
    start = time.perf_counter()
    sent = 0
    while sent < n:
        data = await reader.read(min(CHUNK, n - sent))
        if not data:
            raise ConnectionError("short body")
        writer.write(data)
        sent += len(data)
        if pace:
            ahead = sent / pace - (time.perf_counter() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await writer.drain()


async def _copy_chunked(reader, writer) -> int:
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        writer.write(size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            trailer = await reader.readuntil(b"\r\n")
            writer.write(trailer)
            while trailer != b"\r\n":
                trailer = await reader.readuntil(b"\r\n")
                writer.write(trailer)
            await writer.drain()
            return total
        await _copy_exact(reader, writer, size + 2)
        total += size


class Connection:
    def __init__(self, upstream: tuple[str, int], latency: float, pace: float | None) -> None:
        self.upstream, self.latency, self.pace = upstream, latency, pace
        self.pending: deque[tuple[str, float]] = deque()
        self.ready = asyncio.Event()

    async def handle(self, creader, cwriter) -> None:
        STATS.connections += 1
        try:
            sreader, swriter = await asyncio.open_connection(*self.upstream, limit=4 * CHUNK)
        except OSError:
            cwriter.close()
            return
        up = asyncio.create_task(self.client_to_server(creader, swriter, cwriter))
        down = asyncio.create_task(self.server_to_client(sreader, cwriter))
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for w in (swriter, cwriter):
            try:
                w.close()
            except Exception:
                pass

    async def client_to_server(self, creader, swriter, cwriter) -> None:
        while True:
            head = await _read_head(creader)
            if head is None:
                return
            line, fields = _headers(head)
            method = line.split(" ", 1)[0]
            STATS.requests[method] += 1
            if method == "GET" and "range" in fields:
                STATS.range_gets += 1
            if fields.get("expect", "").lower() == "100-continue":  # answer it here
                head = b"\r\n".join(h for h in head.split(b"\r\n")
                                     if not h.lower().startswith(b"expect:"))
                cwriter.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await cwriter.drain()
            swriter.write(head)
            if "content-length" in fields:
                await _copy_exact(creader, swriter, int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                await _copy_chunked(creader, swriter)
            await swriter.drain()
            STATS.in_flight += 1
            STATS.max_in_flight = max(STATS.max_in_flight, STATS.in_flight)
            self.pending.append((method, time.perf_counter()))
            self.ready.set()

    async def server_to_client(self, sreader, cwriter) -> None:
        while True:
            head = await _read_head(sreader)
            if head is None:
                return
            while not self.pending:
                self.ready.clear()
                await self.ready.wait()
            method, sent_at = self.pending.popleft()
            line, fields = _headers(head)
            wait = sent_at + self.latency - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            cwriter.write(head)
            status = int(line.split(" ")[1])
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                pass
            elif "content-length" in fields:
                n = int(fields["content-length"])
                await _copy_exact(sreader, cwriter, n, self.pace)
                STATS.body_bytes += n
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                STATS.body_bytes += await _copy_chunked(sreader, cwriter)
            else:  # body until close
                while data := await sreader.read(CHUNK):
                    cwriter.write(data)
                    STATS.body_bytes += len(data)
                    await cwriter.drain()
            await cwriter.drain()
            STATS.in_flight -= 1


async def control(reader, writer) -> None:
    head = await _read_head(reader)
    if head is not None:
        line, _ = _headers(head)
        if "/reset" in line:
            STATS.reset()
            body = b"{}"
        else:
            body = json.dumps(STATS.as_dict()).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
    writer.close()


async def main(args) -> None:
    host, port = args.upstream.rsplit(":", 1)
    upstream = (host, int(port))
    latency = args.latency_ms / 1000.0
    pace = args.mbps * 1e6 if args.mbps > 0 else None

    async def on_client(r, w):
        await Connection(upstream, latency, pace).handle(r, w)

    server = await asyncio.start_server(on_client, "127.0.0.1", args.port, limit=4 * CHUNK, backlog=512)
    ctl = await asyncio.start_server(control, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1],
                      "control": ctl.sockets[0].getsockname()[1]}), flush=True)
    async with server, ctl:
        await asyncio.gather(server.serve_forever(), ctl.serve_forever())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--mbps", type=float, default=0.0, help="MB/s per connection, 0 = unlimited")
    asyncio.run(main(parser.parse_args()))
