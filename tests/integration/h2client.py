#!/usr/bin/env python3
"""HTTP/2 (h2c, prior knowledge) client for mapserve's integration tests.

Real frames on a real socket, built with the `h2` library where a
conversation is needed and by hand where a flood is: the Rust tests start the
server, run one command of this script against it and read one JSON line
(some commands print a first line early, then keep the connection open).

Commands (all talk to 127.0.0.1 only):
  get-and-hold PORT PATH HOLD       GET PATH, read it whole, print, then keep
                                    the connection open and silent HOLD s
  reset-flood PORT N PRESENT MISSING  HEADERS then RST_STREAM for N distinct
                                    paths (PRESENT/MISSING are prefixes,
                                    alternated; a number is appended)
  stall PORT HOLD PATH[@RANGE]...   INITIAL_WINDOW_SIZE 0, one stream per
                                    argument, never a WINDOW_UPDATE: report
                                    which streams the server reset, and when
  flood PORT KIND SECS              PING, SETTINGS, WINDOW_UPDATE or PRIORITY
                                    frames as fast as possible: report GOAWAY
  ping-idle PORT PATH EVERY MAX     one GET, then a PING every EVERY s: report
                                    when the server closes (or MAX s passed)
  idle PORT MAX                     preface and SETTINGS only: report when
                                    the server closes
"""

import json
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(port, settings=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.local_settings = h2.settings.Settings(client=True, initial_values=settings or {})
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def headers(path, extra=()):
    return [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)] + list(extra)


def out(obj):
    print(json.dumps(obj), flush=True)


def read_events(sock, conn, timeout):
    sock.settimeout(timeout)
    try:
        data = sock.recv(1 << 20)
    except socket.timeout:
        return []
    except (ConnectionResetError, BrokenPipeError):
        return None
    if not data:
        return None
    events = conn.receive_data(data)
    pending = conn.data_to_send()
    if pending:
        try:
            sock.sendall(pending)
        except (ConnectionResetError, BrokenPipeError):
            return None
    return events


def get_and_hold(port, path, hold):
    sock, conn = connect(port)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers(path), end_stream=True)
    sock.sendall(conn.data_to_send())
    status, length, done = None, 0, False
    deadline = time.time() + 30
    while not done and time.time() < deadline:
        events = read_events(sock, conn, 5)
        if events is None:
            break
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                length += len(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    out({"status": status, "length": length, "complete": done})
    # Hold the connection open and silent; only answer what the server sends.
    end = time.time() + hold
    closed = False
    while time.time() < end:
        events = read_events(sock, conn, max(0.05, end - time.time()))
        if events is None:
            closed = True
            break
    out({"held": True, "closed_by_server": closed})
    sock.close()


def hpack_get(path):
    """A HEADERS block for GET `path`, literal HPACK (no Huffman, no indexing)."""
    p = path.encode()
    assert len(p) < 127
    return b"\x82\x86\x01\x04test\x04" + bytes([len(p)]) + p


def reset_flood(port, n, present, missing):
    """HEADERS for a batch of streams, then RST_STREAM for each: some are
    reset while their load runs. Raw frames, for speed."""
    sent, connections, goaways = 0, 0, 0
    start = time.time()
    while sent < n and time.time() - start < 300:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(PREFACE + frame(0x4, 0, 0, b""))
        connections += 1
        sid = 1
        alive = True
        while alive and sent < n and sid < 2**31 - 200:
            batch = min(16, n - sent)
            ids = list(range(sid, sid + 2 * batch, 2))
            sid += 2 * batch
            heads = b"".join(
                frame(0x1, 0x5, s, hpack_get(f"{present if (sent + i) % 2 == 0 else missing}{sent + i}"))
                for i, s in enumerate(ids)
            )
            resets = b"".join(frame(0x3, 0, s, struct.pack(">I", 8)) for s in ids)
            try:
                sock.sendall(heads)
                sock.sendall(resets)
            except OSError:
                alive = False
                break
            sent += batch
            sock.setblocking(False)
            try:
                while True:
                    data = sock.recv(1 << 16)
                    if not data:
                        alive = False
                        break
                    if b"\x00\x00\x08\x07" in data:
                        goaways += 1
                        alive = False
                        break
            except BlockingIOError:
                pass
            except OSError:
                alive = False
            sock.setblocking(True)
        try:
            sock.close()
        except OSError:
            pass
    out({"sent": sent, "connections": connections, "goaways": goaways, "secs": round(time.time() - start, 2)})


def stall(port, hold, specs):
    sock, conn = connect(port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    start = time.time()
    streams = {}
    for spec in specs:
        path, _, rng = spec.partition("@")
        extra = [("range", f"bytes={rng}")] if rng else []
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers(path, extra), end_stream=True)
        streams[sid] = {"path": spec, "status": None, "reset_after": None, "ended": False, "bytes": 0}
    sock.sendall(conn.data_to_send())
    closed = False
    while time.time() - start < hold:
        events = read_events(sock, conn, 0.2)
        if events is None:
            closed = True
            break
        for ev in events:
            s = streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived) and s:
                s["status"] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived) and s:
                s["bytes"] += len(ev.data)
            elif isinstance(ev, h2.events.StreamReset) and s:
                s["reset_after"] = round(time.time() - start, 2)
            elif isinstance(ev, h2.events.StreamEnded) and s:
                s["ended"] = True
        if all(s["reset_after"] is not None or s["ended"] for s in streams.values()):
            break
    out({"streams": list(streams.values()), "closed_by_server": closed, "secs": round(time.time() - start, 2)})
    sock.close()


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


FLOODS = {
    "PING": frame(0x6, 0, 0, b"12345678"),
    "SETTINGS": frame(0x4, 0, 0, struct.pack(">HI", 0x3, 100)),
    "WINDOW_UPDATE": frame(0x8, 0, 0, struct.pack(">I", 1)),
    "PRIORITY": frame(0x2, 0, 1, struct.pack(">IB", 0, 15)),
}


def flood(port, kind, secs, split=False):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if split:
        # The preface in two pieces, the first a single byte.
        sock.sendall(PREFACE[:1])
        time.sleep(0.2)
        sock.sendall(PREFACE[1:])
    else:
        sock.sendall(PREFACE)
    sock.sendall(frame(0x4, 0, 0, b""))
    one = FLOODS[kind]
    batch = one * 2000
    start = time.time()
    sent = 0
    goaway, code, closed_after = False, None, None
    sock.setblocking(False)
    received = b""
    while time.time() - start < secs:
        try:
            n = sock.send(batch)
            sent += n // len(one)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            # The server closed (reset, since flood bytes were left unread):
            # what it sent before may still be queued here, GOAWAY included.
            closed_after = round(time.time() - start, 2)
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    closed_after = round(time.time() - start, 2)
                    break
                received += chunk
                received = received[-(1 << 16):] if len(received) > (1 << 20) else received
        except BlockingIOError:
            pass
        except OSError:
            closed_after = round(time.time() - start, 2)
        if closed_after is not None:
            break
    # Look for a GOAWAY frame among what the server sent.
    i = 0
    while i + 9 <= len(received):
        length = int.from_bytes(received[i:i + 3], "big")
        if received[i + 3] == 0x7 and i + 9 + 8 <= len(received):
            goaway = True
            code = int.from_bytes(received[i + 13:i + 17], "big")
        i += 9 + length
    out({"sent": sent, "goaway": goaway, "error_code": code, "closed_after": closed_after})
    sock.close()


def stall_many(port, conns, hold, paths):
    """`conns` connections, each with INITIAL_WINDOW_SIZE 0 and one stream
    per path, never a WINDOW_UPDATE; raw frames, for speed. Holds them for
    `hold` seconds (reading and discarding), then closes them all."""
    socks = []
    settings = frame(0x4, 0, 0, struct.pack(">HI", 0x4, 0))
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        heads = b"".join(frame(0x1, 0x5, 1 + 2 * i, hpack_get(p)) for i, p in enumerate(paths))
        s.sendall(PREFACE + settings + frame(0x4, 0x1, 0, b"") + heads)
        s.setblocking(False)
        socks.append(s)
    end = time.time() + hold
    resets = 0
    while time.time() < end:
        for s in socks:
            try:
                data = s.recv(1 << 16)
                resets += data.count(b"\x00\x00\x04\x03")
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.05)
    for s in socks:
        s.close()
    out({"connections": conns, "streams": conns * len(paths), "resets_seen": resets})


def slow_get(port, path, step, every):
    """GET `path` with windows of `step` bytes (stream and connection),
    opened by `step` every `every` seconds: a slow reader. Reports how many
    bytes arrived, whether the stream ended, and when."""
    sock, conn = connect(port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: step})
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers(path), end_stream=True)
    sock.sendall(conn.data_to_send())
    start = time.time()
    got, ended, closed, pending = 0, False, False, 0
    next_open = start + every
    while not ended and time.time() - start < 60:
        events = read_events(sock, conn, max(0.01, next_open - time.time()))
        if events is None:
            closed = True
            break
        for ev in events:
            if isinstance(ev, h2.events.DataReceived):
                got += len(ev.data)
                pending += ev.flow_controlled_length
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                closed = True
        if closed:
            break
        if time.time() >= next_open and pending:
            conn.acknowledge_received_data(pending, sid)
            pending = 0
            next_open = time.time() + every
        data = conn.data_to_send()
        if data:
            sock.sendall(data)
    out({"bytes": got, "ended": ended, "closed": closed, "secs": round(time.time() - start, 2)})
    sock.close()


def ping_idle(port, path, every, limit):
    sock, conn = connect(port)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers(path), end_stream=True)
    sock.sendall(conn.data_to_send())
    start = time.time()
    next_ping = start + every
    closed_after = None
    while time.time() - start < limit:
        events = read_events(sock, conn, max(0.01, next_ping - time.time()))
        if events is None:
            closed_after = round(time.time() - start, 2)
            break
        for ev in events:
            if isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if isinstance(ev, h2.events.ConnectionTerminated):
                closed_after = round(time.time() - start, 2)
        if closed_after is not None:
            break
        if time.time() >= next_ping:
            conn.ping(b"pingpong")
            next_ping += every
        pending = conn.data_to_send()
        if pending:
            try:
                sock.sendall(pending)
            except OSError:
                closed_after = round(time.time() - start, 2)
                break
    out({"closed_after": closed_after})
    sock.close()


def idle(port, limit):
    sock, conn = connect(port)
    start = time.time()
    closed_after = None
    while time.time() - start < limit:
        events = read_events(sock, conn, 0.2)
        if events is None:
            closed_after = round(time.time() - start, 2)
            break
        if any(isinstance(ev, h2.events.ConnectionTerminated) for ev in events):
            closed_after = round(time.time() - start, 2)
            break
    out({"closed_after": closed_after})
    sock.close()


def main(argv):
    cmd, port = argv[1], int(argv[2])
    if cmd == "get-and-hold":
        get_and_hold(port, argv[3], float(argv[4]))
    elif cmd == "reset-flood":
        reset_flood(port, int(argv[3]), argv[4], argv[5])
    elif cmd == "stall":
        stall(port, float(argv[3]), argv[4:])
    elif cmd == "flood":
        flood(port, argv[3], float(argv[4]), split=len(argv) > 5 and argv[5] == "split")
    elif cmd == "slow-get":
        slow_get(port, argv[3], int(argv[4]), float(argv[5]))
    elif cmd == "stall-many":
        stall_many(port, int(argv[3]), float(argv[4]), argv[5:])
    elif cmd == "ping-idle":
        ping_idle(port, argv[3], float(argv[4]), float(argv[5]))
    elif cmd == "idle":
        idle(port, float(argv[3]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
