#!/usr/bin/env python3
"""Writes Tests/StoresTests/S3Fixtures.swift: SigV4 vectors from botocore's S3SigV4Auth
(docs/development.md#signing-oracles).

usage: make_s3_fixtures.py [OUTPUT]   (default: Tests/StoresTests/S3Fixtures.swift next to this script)

Two kinds of case:
- signer cases: method, canonical URI, query, headers, payload hash in; canonical request,
  string-to-sign and Authorization out (AWS's published GET vector among them);
- PutObject cases: a store URL, environment and blob in; the request URL boto3 itself would use
  (its endpoint resolution and key encoding), and botocore's signature over the headers Persistor
  sends: Content-Type, Content-Encoding, If-None-Match, x-amz-content-sha256, x-amz-date,
  x-amz-checksum-sha256 (computed by botocore's own Sha256Checksum) with x-amz-sdk-checksum-algorithm,
  as boto3 sends them for ChecksumAlgorithm="SHA256" over http, x-amz-security-token, x-amz-meta-*
  (metadata names lower-cased; non-ASCII, control bytes, '%', and edge spaces of values
  percent-encoded as UTF-8), and Host.
"""
import calendar
import datetime
import hashlib
import os
import sys
import time
from urllib.parse import quote, urlsplit

import boto3
import botocore
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpchecksum import Sha256Checksum

AKID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EMPTY_HASH = hashlib.sha256(b"").hexdigest()


def sigv4(method, url, headers, akid, secret, token, region, amz_date, payload_hash, params=None):
    req = AWSRequest(method=method, url=url, headers=dict(headers), params=params or {})
    req.headers["X-Amz-Date"] = amz_date
    req.headers["X-Amz-Content-SHA256"] = payload_hash
    req.context["timestamp"] = amz_date
    auth = S3SigV4Auth(Credentials(akid, secret, token), "s3", region)
    cr = auth.canonical_request(req)
    sts = auth.string_to_sign(req, cr)
    sig = auth.signature(sts, req)
    signed = auth.signed_headers(auth.headers_to_sign(req))
    return cr, sts, (f"AWS4-HMAC-SHA256 Credential={akid}/{amz_date[:8]}/{region}/s3/aws4_request, "
                     f"SignedHeaders={signed}, Signature={sig}")


def boto3_put_url(bucket, key, region, endpoint):
    """The URL boto3's own PutObject goes to (captured before sending)."""
    os.environ["AWS_S3_US_EAST_1_REGIONAL_ENDPOINT"] = "regional"
    config = Config(s3={"addressing_style": "path" if endpoint else "auto"}, retries={"max_attempts": 0})
    client = boto3.client("s3", region_name=region, endpoint_url=endpoint, config=config,
                          aws_access_key_id="x", aws_secret_access_key="x")

    class Captured(Exception):
        pass

    def capture(request, **_):
        raise Captured(request.url)

    client.meta.events.register("before-send.s3.PutObject", capture)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
    except Captured as captured:
        return captured.args[0]
    raise AssertionError("boto3 sent nothing")


def header_safe(value):
    out = []
    raw = value.encode()
    for i, b in enumerate(raw):
        edge = b == 0x20 and (i == 0 or i == len(raw) - 1)
        out.append(f"%{b:02X}" if b < 0x20 or b > 0x7E or b == 0x25 or edge else chr(b))
    return "".join(out)


def swift(value):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "[" + ", ".join(f"{swift(k)}: {swift(v)}" for k, v in value.items()) + "]" if value else "[:]"
    if isinstance(value, list):
        return "[" + ", ".join(swift(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(swift(v) for v in value) + ")"
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def signer_case(name, method, url, headers, payload_hash, region, amz_date, query=None,
                akid=AKID, secret=SECRET, expect_signature=None):
    cr, sts, authorization = sigv4(method, url, headers, akid, secret, None, region, amz_date, payload_hash, query)
    if expect_signature:
        assert authorization.endswith(expect_signature), authorization
    parts = urlsplit(url)
    all_headers = list(headers.items()) + [("Host", parts.netloc), ("X-Amz-Date", amz_date),
                                           ("X-Amz-Content-SHA256", payload_hash)]
    return (f"    SigV4Fixture(name: {swift(name)}, method: {swift(method)}, canonicalURI: {swift(parts.path)},\n"
            f"                 query: {swift(query) if query else '[]'},\n"
            f"                 headers: {swift(all_headers)},\n"
            f"                 payloadHash: {swift(payload_hash)}, accessKeyID: {swift(akid)}, secret: {swift(secret)},\n"
            f"                 region: {swift(region)}, amzDate: {swift(amz_date)},\n"
            f"                 canonicalRequest: {swift(cr)},\n"
            f"                 stringToSign: {swift(sts)},\n"
            f"                 authorization: {swift(authorization)})")


def put_case(name, store_url, environment, key, body, content_type, amz_date, content_encoding=None,
             metadata=None, create_only=False, token=None):
    rest = store_url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    region = environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = environment.get("AWS_ENDPOINT_URL_S3") or environment.get("AWS_ENDPOINT_URL")
    object_key = f"{prefix}/{key}" if prefix else key
    url = boto3_put_url(bucket, object_key, region, endpoint)
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"Content-Type": content_type, "x-amz-checksum-sha256": Sha256Checksum().handle(body),
               "x-amz-sdk-checksum-algorithm": "SHA256"}
    if content_encoding:
        headers["Content-Encoding"] = content_encoding
    if create_only:
        headers["If-None-Match"] = "*"
    if token:
        headers["X-Amz-Security-Token"] = token
    for k, v in (metadata or {}).items():
        headers["x-amz-meta-" + k.lower()] = header_safe(v)
    cr, sts, authorization = sigv4("PUT", url, headers, AKID, SECRET, token, region, amz_date, payload_hash)
    epoch = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    return (f"    S3PutFixture(name: {swift(name)}, storeURL: {swift(store_url)},\n"
            f"                 environment: {swift(environment)},\n"
            f"                 key: {swift(key)}, body: {swift(body.decode())}, contentType: {swift(content_type)},\n"
            f"                 contentEncoding: {swift(content_encoding)}, metadata: {swift(metadata or {})}, createOnly: {swift(create_only)},\n"
            f"                 accessKeyID: {swift(AKID)}, secret: {swift(SECRET)}, sessionToken: {swift(token)}, date: {epoch},\n"
            f"                 url: {swift(url)},\n"
            f"                 canonicalRequest: {swift(cr)},\n"
            f"                 stringToSign: {swift(sts)},\n"
            f"                 authorization: {swift(authorization)})")


signers = [
    # AWS's published example (GET Object with a Range header), sig-v4-header-based-auth.html.
    signer_case("AWS example: GET /test.txt with Range", "GET", "https://examplebucket.s3.amazonaws.com/test.txt",
                {"Range": "bytes=0-9"}, EMPTY_HASH, "us-east-1", "20130524T000000Z",
                expect_signature="f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    signer_case("query parameters: encoded, sorted by key then value, empty values", "GET",
                "https://bkt.s3.eu-west-1.amazonaws.com/",
                {}, EMPTY_HASH, "eu-west-1", "20261126T190000Z",
                query=[("prefix", "a b/é=%"), ("list-type", "2"), ("delimiter", "/"), ("max-keys", "10"), ("empty", ""),
                       ("start-after", "x~y*z+"), ("a", "2"), ("a", "1")]),
    signer_case("header values trimmed, inner whitespace collapsed; session token signed", "PUT",
                "http://127.0.0.1:9000/bkt/k", {"Content-Type": "  text/plain;   charset=utf-8 ",
                                                "X-Amz-Security-Token": "session/token+==", "X-Amz-Meta-A": "b"},
                hashlib.sha256(b"ok").hexdigest(), "us-east-1", "20261126T190000Z"),
]
puts = [
    put_case("path-style endpoint, ndjson batch with metadata", "s3://bkt/archive",
             {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"},
             "pubsub/2026/11/26/20261126T190000.123Z-abcdef012345-000001.ndjson.gz", b"batch bytes",
             "application/x-ndjson", "20261126T190000Z", content_encoding="gzip",
             metadata={"records": "3", "firstReceivedAt": "2026-11-26T19:00:00.123Z",
                       "lastReceivedAt": "2026-11-26T19:00:00.456Z", "formatVersion": "1"}),
    put_case("virtual-hosted AWS, create-only raw payload", "s3://my-archive/raw/", {"AWS_REGION": "eu-west-1"},
             "pubsub/2026/11/26/42.gz", b"payload", "application/octet-stream", "20261127T000102Z",
             content_encoding="gzip", metadata={"id": "42", "route": "orders"}, create_only=True),
    put_case("dotted bucket goes path-style on AWS; AWS_DEFAULT_REGION", "s3://my.archive.example/p",
             {"AWS_DEFAULT_REGION": "us-west-2"}, "k.json", b"{}", "application/json", "20261126T190000Z"),
    put_case("default region us-east-1, regional virtual host, empty prefix", "s3://bkt", {},
             "_persistor/probe", b"ok", "text/plain", "20261126T190000Z"),
    put_case("session token (temporary keys)", "s3://bkt/archive", {"AWS_ENDPOINT_URL": "http://localhost:4566"},
             "a.json", b"{}", "application/json", "20261126T190000Z",
             token="IQoJb3JpZ2luX2VjEXAMPLE/token+with=chars", create_only=True),
    put_case("metadata: unicode, percent, edge spaces, upper-case names", "s3://bkt/archive",
             {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"}, "m.json", b"{}", "application/json", "20261126T190000Z",
             metadata={"Route": "bestellungen-größe", "id": " 100% sure ", "Note": "tab\there", "emoji": "✓ ok"}),
    put_case("keys with spaces, unicode, '=', '%', '~', '+'", "s3://bkt/pre fix",
             {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000/"}, "dt=2026-11-26/a b/ünï/100%/x~y+z.json", b"{}",
             "application/json", "20261126T190000Z", create_only=True),
    put_case("endpoint with a path and an explicit default port", "s3://bkt/archive",
             {"AWS_ENDPOINT_URL_S3": "https://minio.example.com:443/s3/", "AWS_REGION": "eu-central-1"},
             "k.gz", b"gzip bytes", "application/octet-stream", "20261126T190000Z",
             content_encoding="gzip"),
    put_case("AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL; non-default port in Host", "s3://bkt/archive",
             {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"},
             "k.json", b"{}", "application/json", "20261126T190000Z"),
]

output = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "StoresTests", "S3Fixtures.swift")
with open(output, "w") as f:
    f.write(f"// Generated by Tests/tools/make_s3_fixtures.py with botocore {botocore.__version__} (S3SigV4Auth)\n"
            f"// and boto3 {boto3.__version__} (request URLs). Do not edit: change the script and run it again.\n\n")
    f.write("let sigV4Fixtures: [SigV4Fixture] = [\n" + ",\n".join(signers) + ",\n]\n\n")
    f.write("let s3PutFixtures: [S3PutFixture] = [\n" + ",\n".join(puts) + ",\n]\n")
print(f"wrote {len(signers)} signer and {len(puts)} PutObject cases to {os.path.normpath(output)}")
