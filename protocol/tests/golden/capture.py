#!/usr/bin/env python3
"""Capture golden Kafka frames from real clients.

A TCP proxy between a client and a broker (tansu in practice). Every complete request frame
and the response frame with the same correlation id are written, size prefix included, to
`<out>/<client>-<api>-v<version>-{req,resp}.bin`. Per (api, version) only the largest
exchange under --max-bytes is kept: that is the Fetch that carried records, the JoinGroup
that succeeded (not the MEMBER_ID_REQUIRED round), the Metadata that listed the topic. Point the broker's advertised listener at the proxy port, or
clients reconnect to the broker directly after their first Metadata call.

    capture.py --client NAME --listen PORT --upstream HOST:PORT [--out DIR] [--max-bytes N]
               [--strip-api-versions-tags]

--strip-api-versions-tags drops the top-level tagged fields from ApiVersions v3+ responses
before forwarding (and recording) them. librdkafka 2.0.2 (kcat 1.7.1) fails with "Read
underflow" on tansu 0.6's reply, which writes all four of them even at default values;
without them kcat works, and shadowlink (kafka-protocol omits default tags) sends none.
"""
import argparse
import asyncio
import os
import struct

API_NAMES = {
    0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 8: "offset_commit",
    9: "offset_fetch", 10: "find_coordinator", 11: "join_group", 12: "heartbeat",
    13: "leave_group", 14: "sync_group", 15: "describe_groups", 16: "list_groups",
    18: "api_versions", 19: "create_topics", 22: "init_producer_id",
    23: "offset_for_leader_epoch", 32: "describe_configs",
}


async def read_frame(reader):
    prefix = await reader.readexactly(4)
    (size,) = struct.unpack(">i", prefix)
    if size < 0 or size > 64 * 1024 * 1024:
        raise ValueError(f"implausible frame size {size}")
    return prefix + await reader.readexactly(size)


class Capture:
    def __init__(self, client, out, max_bytes, strip_api_versions_tags=False):
        self.client, self.out, self.max_bytes = client, out, max_bytes
        self.strip_api_versions_tags = strip_api_versions_tags
        self.written = {}

    def name(self, key, version, kind):
        api = API_NAMES.get(key, f"api{key}")
        return os.path.join(self.out, f"{self.client}-{api}-v{version}-{kind}.bin")

    def save(self, key, version, request, response):
        size = len(request) + len(response)
        print(f"seen {API_NAMES.get(key, key)} v{version}: {size} bytes", flush=True)
        if size > self.max_bytes or size <= self.written.get((key, version), 0):
            return
        self.written[(key, version)] = size
        for kind, frame in (("req", request), ("resp", response)):
            with open(self.name(key, version, kind), "wb") as f:
                f.write(frame)


async def pump_requests(reader, writer, pending):
    while True:
        frame = await read_frame(reader)
        key, version, corr = struct.unpack(">hhi", frame[4:12])
        # acks=0 Produce gets no response: forget it rather than mismatch later ids.
        acks0 = key == 0 and _produce_acks(frame, version) == 0
        if not acks0:
            pending[corr] = (key, version, frame)
        writer.write(frame)
        await writer.drain()


def _produce_acks(frame, version):
    # header v1: key, version, corr, client_id(i16 len); v9+ adds a tag byte; then
    # transactional_id (string, compact from v9), then acks i16.
    pos = 12
    (n,) = struct.unpack(">h", frame[pos:pos + 2])
    pos += 2 + max(n, 0)
    if version >= 9:
        pos += 1  # empty tagged fields
        n = frame[pos] - 1
        pos += 1 + max(n, 0)
    else:
        (n,) = struct.unpack(">h", frame[pos:pos + 2])
        pos += 2 + max(n, 0)
    return struct.unpack(">h", frame[pos:pos + 2])[0]


def _uvarint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _skip_tags(buf, pos):
    count, pos = _uvarint(buf, pos)
    for _ in range(count):
        _, pos = _uvarint(buf, pos)
        size, pos = _uvarint(buf, pos)
        pos += size
    return pos


def strip_api_versions_tags(frame):
    """ApiVersions v3+ response (header v0): error_code, api_keys, throttle, tags."""
    body = frame[4:]
    n, pos = _uvarint(body, 6)
    for _ in range(max(n - 1, 0)):
        pos = _skip_tags(body, pos + 6)
    body = body[:pos + 4] + b"\x00"
    return struct.pack(">i", len(body)) + body


async def pump_responses(reader, writer, pending, capture):
    while True:
        frame = await read_frame(reader)
        (corr,) = struct.unpack(">i", frame[4:8])
        if corr in pending:
            key, version, request = pending.pop(corr)
            if capture.strip_api_versions_tags and key == 18 and version >= 3:
                frame = strip_api_versions_tags(frame)
            capture.save(key, version, request, frame)
        writer.write(frame)
        await writer.drain()


async def handle(client_reader, client_writer, upstream, capture):
    host, port = upstream
    broker_reader, broker_writer = await asyncio.open_connection(host, port)
    pending = {}
    tasks = [
        asyncio.create_task(pump_requests(client_reader, broker_writer, pending)),
        asyncio.create_task(pump_responses(broker_reader, client_writer, pending, capture)),
    ]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    client_writer.close()
    broker_writer.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--client", required=True)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--max-bytes", type=int, default=16 * 1024)
    p.add_argument("--strip-api-versions-tags", action="store_true")
    args = p.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    capture = Capture(args.client, args.out, args.max_bytes, args.strip_api_versions_tags)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, (host, int(port)), capture), "127.0.0.1", args.listen
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
