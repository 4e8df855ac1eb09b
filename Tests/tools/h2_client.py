#!/usr/bin/env python3
"""HTTP/2 cleartext client for the tests, built on the `h2` library (and its `hyperframe`/`hpack`
for the scenarios that must break the rules). Every scenario prints one JSON object on stdout.

  requests  --port P [--upgrade]     stdin: {"requests": [{"method", "path", "headers": [[k, v]],
                                      "body_b64"}], "concurrency": N}; sends them on one connection
                                      (with --upgrade the first one is the HTTP/1.1 Upgrade request)
  streams   --port P --count N [--end]
                                     raw: opens N request streams at once (ended with --end), then
                                     reports what arrives until the server closes or --seconds pass
  malformed --port P                 raw: a SETTINGS frame whose length is not a multiple of 6
  reset     --port P                 a body cut short by RST_STREAM, then a normal request
  zerowindow --port P               raw: SETTINGS_INITIAL_WINDOW_SIZE 0, then GET --path; never
                                     opens the window; reports what arrives until close or --seconds
  emptydata --port P --count N       raw: a POST --path stream, then N empty DATA frames without
                                     END_STREAM; reports what arrives until close or --seconds
  flow      --port P --count N --size B
                                     N POST /hold streams of B bytes each; prints a line
                                     {"blocked": bytes sent} once the server's windows stop it,
                                     then waits for the answers
"""
import argparse
import base64
import json
import select
import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hyperframe.frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def new_connection():
    return h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding=None))


def text(value):
    return value.decode("latin-1") if isinstance(value, bytes) else value


class Exchange:
    """Drives one h2 client connection: streams, their bodies as flow control allows, events."""

    def __init__(self, sock, conn, pending=b""):
        self.sock, self.conn = sock, conn
        self.results = {}  # stream id -> result dict
        self.bodies = {}  # stream id -> [bytes, offset]
        self.goaway = None
        self.closed = False
        self.pending = pending

    def start(self, stream_id, request):
        body = base64.b64decode(request.get("body_b64", ""))
        headers = [(":method", request.get("method", "GET")), (":scheme", "http"),
                   (":authority", request.get("authority", "127.0.0.1")), (":path", request.get("path", "/"))]
        headers += [(k, v) for k, v in request.get("headers", [])]
        self.conn.send_headers(stream_id, headers, end_stream=not body)
        self.results[stream_id] = {"stream": stream_id, "status": None, "headers": [], "body": b"", "reset": None,
                                   "informational": []}
        if body:
            self.bodies[stream_id] = [body, 0]

    def track(self, stream_id):
        self.results[stream_id] = {"stream": stream_id, "status": None, "headers": [], "body": b"", "reset": None,
                                   "informational": []}

    def send_bodies(self):
        for stream_id, entry in list(self.bodies.items()):
            body, offset = entry
            try:
                window = self.conn.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                del self.bodies[stream_id]
                continue
            n = min(window, self.conn.max_outbound_frame_size, len(body) - offset)
            if n > 0:
                self.conn.send_data(stream_id, body[offset:offset + n], end_stream=offset + n == len(body))
                entry[1] = offset + n
            if entry[1] == len(body):
                del self.bodies[stream_id]

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def done(self, stream_id):
        result = self.results[stream_id]
        return result.get("ended") or result["reset"] is not None

    def pump(self, timeout):
        """Sends what can be sent, then handles what arrives within `timeout` seconds."""
        self.send_bodies()
        self.flush()
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return
        for event in self.conn.receive_data(data):
            self.handle(event)
        self.flush()

    def handle(self, event):
        if isinstance(event, h2.events.ResponseReceived):
            result = self.results[event.stream_id]
            for name, value in event.headers:
                if name == b":status":
                    result["status"] = int(value)
                else:
                    result["headers"].append([text(name), text(value)])
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self.results[event.stream_id]["informational"].append(int(dict(event.headers)[b":status"]))
        elif isinstance(event, h2.events.DataReceived):
            self.results[event.stream_id]["body"] += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.results[event.stream_id]["ended"] = True
        elif isinstance(event, h2.events.StreamReset):
            if event.stream_id in self.results:
                self.results[event.stream_id]["reset"] = int(event.error_code)
            self.bodies.pop(event.stream_id, None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = {"error_code": int(event.error_code), "last_stream_id": event.last_stream_id,
                           "data": text(event.additional_data or b"")}

    def report(self, ids):
        out = []
        for stream_id in ids:
            result = dict(self.results[stream_id])
            result["body_b64"] = base64.b64encode(result.pop("body")).decode()
            result.pop("ended", None)
            out.append(result)
        return out


def upgrade(sock, conn, request):
    """Sends `request` as an HTTP/1.1 Upgrade: h2c request; returns the 101's status and leftover bytes."""
    settings = conn.initiate_upgrade_connection()
    preamble = conn.data_to_send()  # sent once the 101 has arrived
    body = base64.b64decode(request.get("body_b64", ""))
    lines = [f"{request.get('method', 'GET')} {request.get('path', '/')} HTTP/1.1", "Host: 127.0.0.1",
             "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", f"HTTP2-Settings: {settings.decode()}"]
    lines += [f"{k}: {v}" for k, v in request.get("headers", [])]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    if status == 101:
        sock.sendall(preamble)
    return status, head.decode("latin-1"), rest


def scenario_requests(args):
    spec = json.load(sys.stdin)
    requests = spec["requests"]
    concurrency = spec.get("concurrency", 100)
    sock, conn = connect(args.port), new_connection()
    order = []
    output = {}
    pending = b""
    queue = list(requests)
    if args.upgrade:
        first = queue.pop(0)
        status, head, pending = upgrade(sock, conn, first)
        output["upgrade_status"] = status
        output["upgrade_head"] = head
        if status != 101:
            print(json.dumps(output))
            return
    else:
        conn.initiate_connection()
    exchange = Exchange(sock, conn, pending)
    if args.upgrade:
        exchange.track(1)
        order.append(1)
    exchange.flush()
    deadline = time.time() + 60
    while time.time() < deadline and not exchange.closed:
        open_streams = [i for i in order if not exchange.done(i)]
        limit = min(concurrency, conn.remote_settings.max_concurrent_streams)
        while queue and len(open_streams) < limit:
            stream_id = conn.get_next_available_stream_id()
            exchange.start(stream_id, queue.pop(0))
            order.append(stream_id)
            open_streams.append(stream_id)
        if not queue and not open_streams:
            break
        exchange.pump(0.05)
    output["server_settings"] = {str(int(k)): v for k, v in conn.remote_settings.items()}
    output["responses"] = exchange.report(order)
    output["goaway"] = exchange.goaway
    print(json.dumps(output))


def read_frames(sock, seconds):
    """Raw frames until the server closes or `seconds` pass; returns them and whether it closed."""
    buffer, frames, closed = b"", [], False
    decoder = hpack.Decoder()
    deadline = time.time() + seconds
    while time.time() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            closed = True
            break
        buffer += chunk
        while len(buffer) >= 9:
            frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(buffer[:9]))
            if len(buffer) < 9 + length:
                break
            frame.parse_body(memoryview(buffer[9:9 + length]))
            buffer = buffer[9 + length:]
            if isinstance(frame, hyperframe.frame.HeadersFrame):
                frame.fields = decoder.decode(frame.data)
            frames.append(frame)
            if isinstance(frame, hyperframe.frame.SettingsFrame) and "ACK" not in frame.flags:
                sock.sendall(hyperframe.frame.SettingsFrame(0, flags=["ACK"]).serialize())
    return frames, closed


def describe(frames, closed):
    resets = {f.stream_id: f.error_code for f in frames if isinstance(f, hyperframe.frame.RstStreamFrame)}
    goaway = next(({"error_code": f.error_code, "last_stream_id": f.last_stream_id,
                    "data": f.additional_data.decode("latin-1")}
                   for f in frames if isinstance(f, hyperframe.frame.GoAwayFrame)), None)
    settings = next((f.settings for f in frames
                     if isinstance(f, hyperframe.frame.SettingsFrame) and "ACK" not in f.flags), {})
    statuses = {str(f.stream_id): int(dict(f.fields)[":status"])
                for f in frames if isinstance(f, hyperframe.frame.HeadersFrame)}
    order = [type(f).__name__ for f in frames]
    return {"resets": {str(k): v for k, v in resets.items()}, "goaway": goaway, "closed": closed,
            "statuses": statuses, "frames": order,
            "server_settings": {str(k): v for k, v in settings.items()}}


def scenario_streams(args):
    sock = connect(args.port)
    encoder = hpack.Encoder()
    out = PREFACE + hyperframe.frame.SettingsFrame(0).serialize()
    for index in range(args.count):
        frame = hyperframe.frame.HeadersFrame(1 + 2 * index, flags=["END_HEADERS"] + (["END_STREAM"] if args.end else []))
        frame.data = encoder.encode([(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                                     (":path", args.path)])
        out += frame.serialize()
    sock.sendall(out)
    print(json.dumps(describe(*read_frames(sock, args.seconds))))


def scenario_zerowindow(args):
    sock = connect(args.port)
    encoder = hpack.Encoder()
    settings = hyperframe.frame.SettingsFrame(0)
    settings.settings = {hyperframe.frame.SettingsFrame.INITIAL_WINDOW_SIZE: 0}
    headers = hyperframe.frame.HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
    headers.data = encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"),
                                   (":path", args.path)])
    sock.sendall(PREFACE + settings.serialize() + headers.serialize())
    started = time.time()
    result = describe(*read_frames(sock, args.seconds))
    result["elapsed"] = time.time() - started
    print(json.dumps(result))


def scenario_emptydata(args):
    sock = connect(args.port)
    encoder = hpack.Encoder()
    headers = hyperframe.frame.HeadersFrame(1, flags=["END_HEADERS"])
    headers.data = encoder.encode([(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                                   (":path", args.path)])
    empty = hyperframe.frame.DataFrame(1).serialize()
    try:
        sock.sendall(PREFACE + hyperframe.frame.SettingsFrame(0).serialize() + headers.serialize() + empty * args.count)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before it has read them all
    print(json.dumps(describe(*read_frames(sock, args.seconds))))


def scenario_malformed(args):
    sock = connect(args.port)
    bad_settings = b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00"
    sock.sendall(PREFACE + hyperframe.frame.SettingsFrame(0).serialize() + bad_settings)
    print(json.dumps(describe(*read_frames(sock, 5))))


def scenario_reset(args):
    sock, conn = connect(args.port), new_connection()
    conn.initiate_connection()
    exchange = Exchange(sock, conn)
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", args.path), ("content-length", "10000")])
    exchange.track(1)
    conn.send_data(1, b"x" * 1000)
    exchange.flush()
    exchange.pump(0.2)
    conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    exchange.flush()
    exchange.pump(0.2)
    exchange.start(3, {"method": "GET", "path": "/ok"})
    deadline = time.time() + 10
    while not exchange.done(3) and not exchange.closed and time.time() < deadline:
        exchange.pump(0.05)
    print(json.dumps({"responses": exchange.report([1, 3]), "goaway": exchange.goaway}))


def scenario_flow(args):
    sock, conn = connect(args.port), new_connection()
    conn.initiate_connection()
    exchange = Exchange(sock, conn)
    ids = []
    for index in range(args.count):
        stream_id = conn.get_next_available_stream_id()
        exchange.start(stream_id, {"method": "POST", "path": "/hold",
                                   "body_b64": base64.b64encode(bytes([index % 256]) * args.size).decode()})
        ids.append(stream_id)
    total = args.count * args.size
    blocked_at = None
    last_progress = time.time()
    sent_before = -1
    deadline = time.time() + 30
    while time.time() < deadline and not exchange.closed and not all(exchange.done(i) for i in ids):
        exchange.pump(0.05)
        unsent = sum(len(b) - o for b, o in exchange.bodies.values())
        sent = total - unsent
        if sent != sent_before:
            sent_before, last_progress = sent, time.time()
        elif blocked_at is None and unsent > 0 and time.time() - last_progress > 1.0:
            blocked_at = sent
            print(json.dumps({"blocked": sent, "connection_window": conn.outbound_flow_control_window}), flush=True)
    print(json.dumps({"blocked": blocked_at, "responses": exchange.report(ids), "goaway": exchange.goaway}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["requests", "streams", "malformed", "reset", "flow", "zerowindow",
                                             "emptydata"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upgrade", action="store_true")
    parser.add_argument("--end", action="store_true")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--path", default="/hold")
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    {"requests": scenario_requests, "streams": scenario_streams, "malformed": scenario_malformed,
     "reset": scenario_reset, "flow": scenario_flow, "zerowindow": scenario_zerowindow,
     "emptydata": scenario_emptydata}[args.scenario](args)


if __name__ == "__main__":
    main()
