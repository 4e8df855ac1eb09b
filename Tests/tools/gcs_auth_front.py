#!/usr/bin/env python3
"""A reverse proxy in front of fake-gcs-server that insists on a bearer token (the emulator never
checks Authorization), so tests can prove the token reaches the storage endpoint.

Usage: gcs_auth_front.py LISTEN_PORT UPSTREAM_PORT EXPECTED_TOKEN   (both on 127.0.0.1)

A request without `Authorization: Bearer EXPECTED_TOKEN` gets 401 with a JSON API error body;
any other request is forwarded as received (method, path and query, headers, body bytes) and the
upstream answer relayed. Each request logs one line: `<METHOD> <path> auth=ok|missing|wrong -> <status>`.
"""
import http.client, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, UPSTREAM, TOKEN = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Front(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers, body, auth):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"{self.command} {self.path} auth={auth} -> {status}", flush=True)

    def handle_any(self):
        if "Transfer-Encoding" in self.headers:
            return self.answer(411, [], b"", "n/a")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        given = self.headers.get("Authorization")
        auth = "missing" if given is None else ("ok" if given == "Bearer " + TOKEN else "wrong")
        if auth != "ok":
            error = {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED",
                               "errors": [{"reason": "authError", "message": "Invalid Credentials"}]}}
            return self.answer(401, [("Content-Type", "application/json"), ("WWW-Authenticate", 'Bearer realm="front"')],
                               json.dumps(error).encode(), auth)
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders(body)
            response = upstream.getresponse()
            self.answer(response.status, response.getheaders(), response.read(), auth)
        except OSError:
            self.answer(502, [], b"upstream unreachable", auth)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


if __name__ == "__main__":
    print(f"gcs-auth-front on http://127.0.0.1:{LISTEN} -> 127.0.0.1:{UPSTREAM}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", LISTEN), Front).serve_forever()
