#!/usr/bin/env python3
"""Fake token endpoints for credential-flow tests (loopback only).

  POST /token                        Google OAuth2 JWT-bearer grant; verifies the RS256 assertion with
                                     google.auth.jwt.decode against FAKE_SA_PUBKEY (PEM file path)
  GET  /computeMetadata/v1/instance/service-accounts/default/token (and .../default/?recursive=true)
                                     needs Metadata-Flavor: Google
  GET  /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...   (Azure IMDS) needs Metadata: true
  GET  /msi/token?api-version=2019-08-01&resource=...   (App Service) needs X-IDENTITY-HEADER == FAKE_IDENTITY_HEADER
Every issued token is FAKE_ACCESS_TOKEN (default "fake-access-token").  Env FAKE_ID_PORT (default 8089).
"""
import json, os, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from google.auth import jwt as gjwt

TOKEN = os.environ.get("FAKE_ACCESS_TOKEN", "fake-access-token")
PUB = open(os.environ["FAKE_SA_PUBKEY"]).read() if os.environ.get("FAKE_SA_PUBKEY") else None
IDH = os.environ.get("FAKE_IDENTITY_HEADER", "fake-identity-header")


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/computeMetadata/"):
            self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if u.path != "/token":
            return self.send(404, {"error": "not_found"})
        form = urllib.parse.parse_qs(body)
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return self.send(400, {"error": "unsupported_grant_type"})
        try:
            claims = gjwt.decode(form["assertion"][0], certs=PUB, audience="https://oauth2.googleapis.com/token")
        except Exception as e:   # bad signature, expired, wrong aud ...
            return self.send(400, {"error": "invalid_grant", "error_description": str(e)})
        if not claims.get("scope") or not claims.get("iss"):
            return self.send(400, {"error": "invalid_scope"})
        self.send(200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/computeMetadata/v1/instance/service-accounts/default/":   # google-auth asks this first
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.send(403, {"error": "missing Metadata-Flavor"})
            return self.send(200, {"aliases": ["default"], "email": "ci@test.iam.gserviceaccount.com",
                                   "scopes": ["https://www.googleapis.com/auth/cloud-platform"]})
        if u.path == "/computeMetadata/v1/instance/service-accounts/default/token":
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.send(403, {"error": "missing Metadata-Flavor"})
            return self.send(200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})
        if u.path == "/metadata/identity/oauth2/token":
            if self.headers.get("Metadata") != "true" or q.get("api-version") != ["2018-02-01"] or "resource" not in q:
                return self.send(400, {"error": "invalid_request"})
            exp = int(time.time()) + 3600
            return self.send(200, {"access_token": TOKEN, "expires_in": "3600", "expires_on": str(exp),
                                   "resource": q["resource"][0], "token_type": "Bearer"})
        if u.path == "/msi/token":
            if self.headers.get("X-IDENTITY-HEADER") != IDH or q.get("api-version") != ["2019-08-01"]:
                return self.send(400, {"error": "invalid_request"})
            return self.send(200, {"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600),
                                   "resource": q.get("resource", [""])[0], "token_type": "Bearer"})
        self.send(404, {"error": "not_found"})


if __name__ == "__main__":
    port = int(os.environ.get("FAKE_ID_PORT", "8089"))
    print(f"fake-identity on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
