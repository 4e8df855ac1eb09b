#!/usr/bin/env python3
"""Minimal Azure Blob fake for integration tests: real HTTP, in-memory, path-style
(http://127.0.0.1:PORT/<account>/<container>/<blob>), and it VERIFIES auth with the official
azure-storage-blob SDK code (SharedKey via SharedKeyCredentialPolicy, service SAS via
BlobSharedAccessSignature) or a fixed Bearer token (AZ_FAKE_BEARER).

Supports: Create Container (?restype=container), Put Blob (BlockBlob / AppendBlob),
Append Block (?comp=appendblock, x-ms-blob-condition-appendpos/maxsize), Get Blob / HEAD (Range),
Put Block (?comp=block&blockid=, ids of one blob must have equal lengths, at most 64 bytes),
Put Block List (?comp=blocklist, x-ms-blob-content-*, x-ms-meta-*), Get Block List (committed),
List Blobs (?restype=container&comp=list&prefix=, one page),
If-None-Match: * and If-Match on writes, Content-MD5 checked against the body when sent.
Env: AZ_FAKE_PORT (10000), AZ_FAKE_ACCOUNT / AZ_FAKE_KEY (Azurite defaults), AZ_FAKE_BEARER.
"""
import base64, binascii, hashlib, os, sys, threading, urllib.parse, uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape
from datetime import datetime, timezone
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from azure.storage.blob._shared_access_signature import BlobSharedAccessSignature

ACCOUNT = os.environ.get("AZ_FAKE_ACCOUNT", "devstoreaccount1")
KEY = os.environ.get("AZ_FAKE_KEY", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
BEARER = os.environ.get("AZ_FAKE_BEARER")
containers, blobs, lock = set(), {}, threading.Lock()   # blobs[(c, b)] = dict(data, type, headers, etag, blocks)
staged = {}   # staged[(c, b)] = {block id: bytes}, uncommitted blocks


def blob_headers(headers, from_content_headers):
    """The stored properties and metadata of a Put Blob / Put Block List request; the request's own
    Content-Type / Content-Encoding / Content-MD5 count only for a block blob's Put Blob (whose
    Content-MD5 was checked against the body). Unlike Azure, which computes a Put Blob's MD5
    itself, the fake keeps only an MD5 it was sent, so a read-back shows what the client sent."""
    keep = {k: v for k, v in headers.items() if k.lower().startswith("x-ms-meta-")}
    for h, xh in (("Content-Type", "x-ms-blob-content-type"), ("Content-Encoding", "x-ms-blob-content-encoding"),
                  ("Cache-Control", "x-ms-blob-cache-control"), ("Content-MD5", "x-ms-blob-content-md5")):
        v = headers.get(xh) or (headers.get(h) if from_content_headers else None)
        if v:
            keep[h] = v
    return keep


def expected_sharedkey(method, raw_path, headers):
    req = HttpRequest(method, f"http://fake{raw_path}", headers={k.lower(): v for k, v in headers.items()})
    SharedKeyCredentialPolicy(ACCOUNT, KEY).on_request(PipelineRequest(req, PipelineContext(None)))
    return req.headers["Authorization"]


def sas_ok(q, container, blob):
    g = lambda k: q.get(k, [None])[0]
    if not g("sig") or not g("sv"):
        return False
    if g("se") and datetime.now(timezone.utc) > datetime.fromisoformat(g("se").replace("Z", "+00:00")):
        return False
    sas = BlobSharedAccessSignature(ACCOUNT, KEY)
    sas.x_ms_version = g("sv")
    common = dict(permission=g("sp"), expiry=g("se"), start=g("st"), policy_id=g("si"), ip=g("sip"),
                  protocol=g("spr"), cache_control=g("rscc"), content_disposition=g("rscd"),
                  content_encoding=g("rsce"), content_language=g("rscl"), content_type=g("rsct"))
    tok = (sas.generate_blob(container, blob, **common) if g("sr") == "b"
           else sas.generate_container(container, **common))
    return urllib.parse.parse_qs(tok).get("sig", [None])[0] == g("sig")


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, err=None, headers=None, body=b""):
        h = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": self.headers.get("x-ms-version", ""),
             "Date": formatdate(usegmt=True), **(headers or {})}
        if err:
            body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{err}</Code><Message>{err}</Message></Error>'.encode()
            h.update({"x-ms-error-code": err, "Content-Type": "application/xml"})
        if not (self.command == "HEAD" and "Content-Length" in h):
            h["Content-Length"] = str(len(body))
        self.send_response(code)
        for k, v in h.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        parts = [urllib.parse.unquote(p) for p in u.path.split("/", 3)[1:]]
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if not parts or parts[0] != ACCOUNT:
            return self.reply(400, "InvalidUri")
        container = parts[1] if len(parts) > 1 else ""
        blob = parts[2] if len(parts) > 2 else ""
        # ---- authentication -------------------------------------------------
        auth = self.headers.get("Authorization", "")
        if auth.startswith("SharedKey "):
            d = self.headers.get("x-ms-date") or self.headers.get("Date")
            if not d or abs((datetime.now(timezone.utc) - parsedate_to_datetime(d)).total_seconds()) > 900:
                return self.reply(403, "AuthenticationFailed")
            if auth != expected_sharedkey(self.command, self.path, dict(self.headers.items())):
                return self.reply(403, "AuthenticationFailed")
        elif auth.startswith("Bearer "):
            if not BEARER or auth[7:] != BEARER:
                return self.reply(401, "InvalidAuthenticationInfo")
        elif "sig" in q:
            if not sas_ok(q, container, blob):
                return self.reply(403, "AuthenticationFailed")
        else:
            return self.reply(403, "NoAuthenticationInformation")
        if not self.headers.get("x-ms-version"):
            return self.reply(400, "MissingRequiredHeader")
        # ---- operations -------------------------------------------------------
        with lock:
            if self.command == "PUT" and q.get("restype") == ["container"] and not blob:
                if container in containers:
                    return self.reply(409, "ContainerAlreadyExists")
                containers.add(container)
                return self.reply(201, headers={"ETag": f'"{uuid.uuid4().hex}"'})
            if container not in containers:
                return self.reply(404, "ContainerNotFound")
            if self.command == "GET" and q.get("restype") == ["container"] and q.get("comp") == ["list"] and not blob:
                prefix = q.get("prefix", [""])[0]
                items = "".join(
                    f"<Blob><Name>{escape(name)}</Name><Properties><Last-Modified>{formatdate(usegmt=True)}</Last-Modified>"
                    f"<Etag>{b['etag']}</Etag><Content-Length>{len(b['data'])}</Content-Length>"
                    f"<BlobType>{b['type']}</BlobType></Properties></Blob>"
                    for (c, name), b in sorted(blobs.items()) if c == container and name.startswith(prefix))
                xml = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://fake/{ACCOUNT}" '
                       f'ContainerName="{escape(container)}"><Prefix>{escape(prefix)}</Prefix><Blobs>{items}</Blobs>'
                       '<NextMarker /></EnumerationResults>').encode()
                return self.reply(200, headers={"Content-Type": "application/xml"}, body=xml)
            cur = blobs.get((container, blob))
            inm, im = self.headers.get("If-None-Match"), self.headers.get("If-Match")
            if self.command == "PUT":
                if self.headers.get("Content-Length") is None:
                    return self.reply(411, "MissingContentLengthHeader")
                md5 = self.headers.get("Content-MD5")
                if md5 is not None and md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
                    return self.reply(400, "Md5Mismatch")
                if q.get("comp") == ["block"]:
                    bid = q.get("blockid", [""])[0]
                    try:
                        raw = base64.b64decode(bid, validate=True)
                    except binascii.Error:
                        raw = b""
                    if not raw or len(raw) > 64:
                        return self.reply(400, "InvalidQueryParameterValue")
                    mine = staged.setdefault((container, blob), {})
                    if any(len(other) != len(bid) for other in mine):
                        return self.reply(400, "InvalidBlobOrBlock")
                    mine[bid] = body
                    return self.reply(201)
                if inm == "*" and cur:
                    return self.reply(409, "BlobAlreadyExists")
                if im and (not cur or (im != "*" and im != cur["etag"])):
                    return self.reply(412, "ConditionNotMet")
                if q.get("comp") == ["blocklist"]:
                    try:
                        ids = [(e.tag, e.text or "") for e in ET.fromstring(body)]
                    except ET.ParseError:
                        return self.reply(400, "InvalidXmlDocument")
                    mine, committed = staged.get((container, blob), {}), dict((cur or {}).get("blocks", []))
                    parts = []
                    for tag, bid in ids:
                        found = {"Uncommitted": mine.get(bid), "Committed": committed.get(bid),
                                 "Latest": mine.get(bid, committed.get(bid))}.get(tag)
                        if found is None:
                            return self.reply(400, "InvalidBlockList")
                        parts.append((bid, found))
                    etag = f'"{uuid.uuid4().hex}"'
                    blobs[(container, blob)] = dict(data=b"".join(p for _, p in parts), type="BlockBlob",
                                                    headers=blob_headers(self.headers, False), etag=etag,
                                                    blocks=parts)
                    staged.pop((container, blob), None)
                    return self.reply(201, headers={"ETag": etag, "Last-Modified": formatdate(usegmt=True)})
                if q.get("comp") == ["appendblock"]:
                    if not cur:
                        return self.reply(404, "BlobNotFound")
                    if cur["type"] != "AppendBlob":
                        return self.reply(409, "InvalidBlobType")
                    pos = self.headers.get("x-ms-blob-condition-appendpos")
                    if pos is not None and int(pos) != len(cur["data"]):
                        return self.reply(412, "AppendPositionConditionNotMet")
                    mx = self.headers.get("x-ms-blob-condition-maxsize")
                    if mx is not None and len(cur["data"]) + len(body) > int(mx):
                        return self.reply(412, "MaxBlobSizeConditionNotMet")
                    offset = len(cur["data"]); cur["data"] += body; cur["etag"] = f'"{uuid.uuid4().hex}"'
                    return self.reply(201, headers={"ETag": cur["etag"], "x-ms-blob-append-offset": str(offset),
                                                    "x-ms-blob-committed-block-count": "1"})
                btype = self.headers.get("x-ms-blob-type")
                if btype not in ("BlockBlob", "AppendBlob"):
                    return self.reply(400, "MissingRequiredHeader" if not btype else "InvalidHeaderValue")
                if btype == "AppendBlob" and body:
                    return self.reply(400, "InvalidHeaderValue")
                etag = f'"{uuid.uuid4().hex}"'
                blobs[(container, blob)] = dict(data=body, type=btype, headers=blob_headers(self.headers, btype == "BlockBlob"),
                                                etag=etag, blocks=[])
                staged.pop((container, blob), None)
                return self.reply(201, headers={"ETag": etag, "Last-Modified": formatdate(usegmt=True),
                                                "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                                                "x-ms-request-server-encrypted": "true"})
            if self.command in ("GET", "HEAD"):
                if not cur:
                    return self.reply(404, "BlobNotFound")
                if q.get("comp") == ["blocklist"]:
                    items = "".join(f"<Block><Name>{bid}</Name><Size>{len(p)}</Size></Block>" for bid, p in cur["blocks"])
                    xml = ('<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks>'
                           f'{items}</CommittedBlocks><UncommittedBlocks /></BlockList>').encode()
                    return self.reply(200, headers={"Content-Type": "application/xml", "ETag": cur["etag"],
                                                    "x-ms-blob-content-length": str(len(cur["data"]))}, body=xml)
                hdrs = {"Content-Type": "application/octet-stream", **cur["headers"], "ETag": cur["etag"],
                        "x-ms-blob-type": cur["type"], "Accept-Ranges": "bytes", "Content-Length": str(len(cur["data"]))}
                rng, data, total = self.headers.get("x-ms-range") or self.headers.get("Range"), cur["data"], len(cur["data"])
                if rng and rng.startswith("bytes=") and total:
                    a, _, z = rng[6:].partition("-")
                    a, z = int(a), min(int(z) if z else total - 1, total - 1)
                    hdrs.update({"Content-Range": f"bytes {a}-{z}/{total}", "Content-Length": str(z - a + 1)})
                    return self.reply(206, headers=hdrs, body=data[a:z + 1])
                return self.reply(200, headers=hdrs, body=data)
            return self.reply(400, "UnsupportedHttpVerb")

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = handle_any

    def log_message(self, fmt, *args):
        sys.stderr.write("azblob-fake: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(os.environ.get("AZ_FAKE_PORT", "10000"))
    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    print(f"azblob-fake listening on http://127.0.0.1:{port}/{ACCOUNT}", flush=True)
    srv.serve_forever()
