#!/usr/bin/env python3
"""A reverse proxy in front of fake-gcs-server that insists on a bearer token and checks the
`crc32c` of multipart uploads (the emulator does neither: it ignores Authorization and computes its
own checksums), so tests can prove the token reaches the storage endpoint and that every upload
carries a checksum of exactly the bytes it sends.

Usage: gcs_auth_front.py LISTEN_PORT UPSTREAM_PORT EXPECTED_TOKEN   (both on 127.0.0.1;
       EXPECTED_TOKEN `-` admits requests without Authorization, as the emulator path sends them)

A request without `Authorization: Bearer EXPECTED_TOKEN` gets 401 with a JSON API error body. A
multipart upload whose JSON resource has a `crc32c` (base64, big-endian) that does not match the
CRC32C of its media part, computed with google-crc32c (google-cloud-storage's own), gets 400 as
from GCS. Any other request is forwarded as received (method, path and query, headers, body bytes)
and the upstream answer relayed. Each request logs one line:
`<METHOD> <path> auth=ok|missing|wrong crc32c=ok|missing|mismatch|n/a -> <status>`.
"""
import base64, http.client, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google_crc32c

LISTEN, UPSTREAM, TOKEN = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Front(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers, body, auth, crc="n/a"):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"{self.command} {self.path} auth={auth} crc32c={crc} -> {status}", flush=True)

    def crc32c_check(self, body):
        """ok / missing / mismatch for a multipart upload (RFC 2387: the resource, then the media)."""
        content_type = self.headers.get("Content-Type", "")
        if "uploadType=multipart" not in self.path or not content_type.startswith("multipart/related"):
            return "n/a"
        boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
        # Between delimiters: CRLF, headers, CRLF CRLF, content, CRLF (the CRLFs belong to the delimiters).
        parts = body.split(b"--" + boundary)[1:-1]
        resource, media = [part[2:-2].split(b"\r\n\r\n", 1)[1] for part in parts]
        given = json.loads(resource).get("crc32c")
        if given is None:
            return "missing"
        actual = base64.b64encode(google_crc32c.value(media).to_bytes(4, "big")).decode()
        return "ok" if given == actual else "mismatch"

    def handle_any(self):
        if "Transfer-Encoding" in self.headers:
            return self.answer(411, [], b"", "n/a")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        given = self.headers.get("Authorization")
        auth = "missing" if given is None else ("ok" if given == "Bearer " + TOKEN else "wrong")
        if TOKEN == "-" and given is None:
            auth = "ok"
        if auth != "ok":
            error = {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED",
                               "errors": [{"reason": "authError", "message": "Invalid Credentials"}]}}
            return self.answer(401, [("Content-Type", "application/json"), ("WWW-Authenticate", 'Bearer realm="front"')],
                               json.dumps(error).encode(), auth)
        crc = self.crc32c_check(body)
        if crc == "mismatch":
            error = {"error": {"code": 400, "message": "Provided CRC32C doesn't match calculated CRC32C.",
                               "errors": [{"reason": "invalid", "message": "Provided CRC32C doesn't match calculated CRC32C."}]}}
            return self.answer(400, [("Content-Type", "application/json")], json.dumps(error).encode(), auth, crc)
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders(body)
            response = upstream.getresponse()
            self.answer(response.status, response.getheaders(), response.read(), auth, crc)
        except OSError:
            self.answer(502, [], b"upstream unreachable", auth, crc)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


if __name__ == "__main__":
    print(f"gcs-auth-front on http://127.0.0.1:{LISTEN} -> 127.0.0.1:{UPSTREAM}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", LISTEN), Front).serve_forever()
