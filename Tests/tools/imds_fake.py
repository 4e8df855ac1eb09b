#!/usr/bin/env python3
"""A strict IMDSv2 endpoint serving one role's temporary keys (the EC2 instance metadata service).

usage: imds_fake.py PORT ACCESS_KEY_ID SECRET_ACCESS_KEY SESSION_TOKEN EXPIRATION

PUT /latest/api/token needs X-aws-ec2-metadata-token-ttl-seconds (1..21600) and returns a session
token; every GET needs X-aws-ec2-metadata-token with a token it issued (else 401, as IMDSv2-only
instances answer). GET /latest/meta-data/iam/security-credentials/ lists the role; GET .../ROLE
returns {Code, LastUpdated, Type, AccessKeyId, SecretAccessKey, Token, Expiration}. GET /_stats
(no token) counts token and credential requests, so tests can see the client's caching.
"""
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, key_id, secret, token, expiration = int(sys.argv[1]), *sys.argv[2:6]
ROLE = "persistor-role"
issued = set()
stats = {"tokens": 0, "credentials": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/latest/api/token":
            return self.answer(404, "not found")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.answer(400, "missing or invalid X-aws-ec2-metadata-token-ttl-seconds")
        session = secrets.token_urlsafe(24)
        with lock:
            issued.add(session)
            stats["tokens"] += 1
        self.answer(200, session)

    def do_GET(self):
        if self.path == "/_stats":
            with lock:
                return self.answer(200, json.dumps(stats), "application/json")
        with lock:
            known = self.headers.get("X-aws-ec2-metadata-token") in issued
        if not known:
            return self.answer(401, "")
        if self.path == "/latest/meta-data/iam/security-credentials/":
            return self.answer(200, ROLE)
        if self.path == "/latest/meta-data/iam/security-credentials/" + ROLE:
            with lock:
                stats["credentials"] += 1
            return self.answer(200, json.dumps({
                "Code": "Success", "LastUpdated": "2026-11-26T19:00:00Z", "Type": "AWS-HMAC",
                "AccessKeyId": key_id, "SecretAccessKey": secret, "Token": token, "Expiration": expiration,
            }), "application/json")
        self.answer(404, "not found")

    def log_message(self, format, *args):
        sys.stderr.write("imds_fake: " + (format % args) + "\n")


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
