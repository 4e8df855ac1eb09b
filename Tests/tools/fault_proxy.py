#!/usr/bin/env python3
"""An HTTP reverse proxy in front of a store emulator that can be told to misbehave.

usage: fault_proxy.py LISTEN_PORT UPSTREAM_PORT CONTROL_PORT

Requests to 127.0.0.1:LISTEN_PORT are forwarded unchanged (Host included, so signatures stay
valid) to 127.0.0.1:UPSTREAM_PORT. The control server on CONTROL_PORT takes:
  POST /mode {"mode": "pass"}                    forward (the default)
  POST /mode {"mode": "status", "status": 503}   answer every request with that status and an
                                                 S3-style XML error, without forwarding
  POST /mode {"mode": "delay", "seconds": 3}     wait, then forward (a slow store)
  POST /mode {"mode": "refuse"}                  stop listening and drop open connections
                                                 (connection refused until the next mode)
  GET  /stats                                    {"requests": {"METHOD /path": count}}: every
                                                 request that reached the listener (each attempt)
  POST /reset                                    clears the counts
"""
import http.client
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

listen_port, upstream_port, control_port = (int(a) for a in sys.argv[1:4])
lock = threading.Lock()
state = {"mode": "pass", "status": 503, "seconds": 0.0}
counts = {}
open_connections = set()
listener = None

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
CODES = {500: "InternalError", 503: "SlowDown"}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            open_connections.add(self.connection)

    def finish(self):
        with lock:
            open_connections.discard(self.connection)
        super().finish()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True

    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            key = f"{self.command} {self.path}"
            counts[key] = counts.get(key, 0) + 1
            mode = dict(state)
        if mode["mode"] == "refuse":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode["mode"] == "status":
            code = CODES.get(mode["status"], "ServiceUnavailable")
            data = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by fault_proxy</Message></Error>".encode()
            self.send_response(mode["status"])
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if mode["mode"] == "delay":
            time.sleep(mode["seconds"])
        upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        except OSError:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        finally:
            upstream.close()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

    def log_message(self, format, *args):
        pass


def start_listener():
    global listener
    server = ThreadingHTTPServer(("127.0.0.1", listen_port), Proxy, bind_and_activate=False)
    server.daemon_threads = True
    server.allow_reuse_address = True
    server.server_bind()
    server.server_activate()
    listener = server
    threading.Thread(target=server.serve_forever, daemon=True).start()


def stop_listener():
    global listener
    if listener is not None:
        listener.shutdown()
        listener.server_close()
        listener = None
    with lock:
        connections = list(open_connections)
    for connection in connections:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, payload):
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.answer({"requests": counts, "mode": state["mode"]})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/reset":
            with lock:
                counts.clear()
            return self.answer({})
        wanted = json.loads(body or b"{}")
        with lock:
            state.update(wanted)
        if wanted.get("mode") == "refuse":
            stop_listener()
        elif listener is None:
            start_listener()
        self.answer({"mode": state["mode"]})

    def log_message(self, format, *args):
        pass


control = ThreadingHTTPServer(("127.0.0.1", control_port), Control)
start_listener()
control.serve_forever()
