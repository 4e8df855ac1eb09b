#!/usr/bin/env python3
"""Writes Tests/StoresTests/AzureFixtures.swift: SharedKey vectors signed by the official SDK's own
policy (azure.storage.blob._shared.authentication.SharedKeyCredentialPolicy), so the Swift signer is
checked byte for byte against the code the SDK (and the service's collation it copies) uses.

Each vector has the request as sent (method, URL, headers) and the SDK's string-to-sign and
Authorization. Vectors with `request` inputs describe one of the store's own requests: the Swift
test builds it from those inputs and must produce exactly these headers.

Usage: make_azure_fixtures.py  (run with the test venv's python; rewrites the Swift file)
"""
import base64, hashlib, os
from email.utils import formatdate

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"
OTHER_ACCOUNT = "persistortest"
OTHER_KEY = base64.b64encode(hashlib.sha512(b"persistor azure fixture key").digest()).decode()
DATE = 1795694400   # Thu, 26 Nov 2026 12:00:00 GMT
VERSION = "2025-11-05"


def sign(account, key, method, url, headers):
    """The SDK policy's string-to-sign and Authorization for the request."""
    req = HttpRequest(method, url, headers=dict(headers))
    captured = {}
    policy = SharedKeyCredentialPolicy(account, key)
    original = policy._add_authorization_header
    def capture(request, string_to_sign):
        captured["s"] = string_to_sign
        original(request, string_to_sign)
    policy._add_authorization_header = capture
    policy.on_request(PipelineRequest(req, PipelineContext(None)))
    return captured["s"], req.headers["Authorization"]


def quote(name):
    """The blob name as the URL path, as the store encodes it (unreserved characters and '/' kept;
    the dots of '.' and '..' segments encoded)."""
    from urllib.parse import quote as q
    return "/".join("%2E" * len(s) if s in (".", "..") else q(s, safe="-._~") for s in name.split("/"))


def meta_value(value):
    raw = value.encode()
    out = ""
    for i, b in enumerate(raw):
        edge = b == 0x20 and (i == 0 or i == len(raw) - 1)
        out += f"%{b:02X}" if b < 0x20 or b >= 0x7F or b == 0x25 or edge else chr(b)
    return out


def md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def store_request(name, store_url, endpoint, account, key, operation, blob_key, data, content_type="",
                  content_encoding=None, metadata=None, create_only=False, block_ids=()):
    """A vector for one of the store's requests, with the headers the store must send."""
    metadata = metadata or {}
    path_part = store_url[len("az://"):].split("/", 2)
    container, prefix = path_part[1], (path_part[2] if len(path_part) > 2 else "")
    blob_name = f"{prefix}/{blob_key}" if prefix else blob_key
    url = f"{endpoint}/{container}/{quote(blob_name)}"
    meta = [(f"x-ms-meta-{k}", meta_value(v)) for k, v in sorted(metadata.items())]
    if operation == "putBlob":
        headers = [("x-ms-blob-type", "BlockBlob"), ("Content-Type", content_type)]
        if content_encoding:
            headers.append(("Content-Encoding", content_encoding))
        headers += [("Content-MD5", md5(data))] + meta
        if create_only:
            headers.append(("If-None-Match", "*"))
        body = data
    elif operation == "putBlock":
        from urllib.parse import quote as q
        url += "?comp=block&blockid=" + q(block_ids[0], safe="-._~")
        headers, body = [("Content-MD5", md5(data))], data
    else:
        url += "?comp=blocklist"
        body = ('<?xml version="1.0" encoding="utf-8"?><BlockList>'
                + "".join(f"<Latest>{i}</Latest>" for i in block_ids) + "</BlockList>").encode()
        headers = [("Content-Type", "application/xml; charset=utf-8"), ("x-ms-blob-content-type", content_type)]
        if content_encoding:
            headers.append(("x-ms-blob-content-encoding", content_encoding))
        headers += meta
        if create_only:
            headers.append(("If-None-Match", "*"))
    headers += [("Content-Length", str(len(body))), ("x-ms-date", formatdate(DATE, usegmt=True)),
                ("x-ms-version", VERSION)]
    s, auth = sign(account, key, "PUT", url, headers)
    return dict(name=name, account=account, key=key, method="PUT", url=url, headers=headers, sts=s, auth=auth,
                request=dict(storeURL=store_url, endpoint=endpoint, operation=operation, key=blob_key, bytes=data,
                             contentType=content_type, contentEncoding=content_encoding, metadata=metadata,
                             createOnly=create_only, blockIDs=list(block_ids)))


def plain(name, account, key, method, url, headers):
    s, auth = sign(account, key, method, url, headers)
    return dict(name=name, account=account, key=key, method=method, url=url, headers=headers, sts=s, auth=auth,
                request=None)


body32 = b"\x1f\x8b" + b"x" * 30
vectors = [
    # docs/development.md#signing-oracles: the SDK's Authorization is
    # SharedKey devstoreaccount1:2PLGKTO73Dzh7WIJwPDbR7QwA3W4rYxM2WepIgakyNo=
    plain("worked vector (Azurite key, fixed date, 32-byte body)", DEV_ACCOUNT, DEV_KEY, "PUT",
          f"http://127.0.0.1:10000/{DEV_ACCOUNT}/logs/2026/a.json.gz?timeout=30",
          [("x-ms-blob-type", "BlockBlob"), ("x-ms-version", VERSION), ("x-ms-date", "Thu, 26 Nov 2026 12:00:00 GMT"),
           ("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("Content-Length", "32"),
           ("If-None-Match", "*"), ("x-ms-meta-origin", "test")]),
    plain("query parameters: sorted by name, values decoded", DEV_ACCOUNT, DEV_KEY, "GET",
          f"{DEV_ENDPOINT}/logs?restype=container&comp=list&prefix=a%2Fb%20c&timeout=30",
          [("x-ms-date", "Thu, 26 Nov 2026 12:00:00 GMT"), ("x-ms-version", VERSION)]),
    plain("collation differs from ASCII: '_' before digits, '-' ignored first", OTHER_ACCOUNT, OTHER_KEY, "PUT",
          f"https://{OTHER_ACCOUNT}.blob.core.windows.net/c/k",
          [("x-ms-meta-a1", "1"), ("x-ms-meta-a_1", "2"), ("x-ms-meta-ab", "3"), ("x-ms-meta-a_b", "4"),
           ("x-ms-meta-_z", "5"), ("x-ms-meta-z9", "6"), ("x-ms-meta-Zz", "7"), ("x-ms-meta-a", "8"),
           ("x-ms-blob-content-type", "t"), ("x-ms-blob-type", "BlockBlob"), ("x-ms-date", "d"),
           ("x-ms-version", VERSION), ("Content-Length", "0")]),
    store_request("Put Blob, create-only, path-style endpoint", f"az://{DEV_ACCOUNT}/archive-c/archive", DEV_ENDPOINT,
                  DEV_ACCOUNT, DEV_KEY, "putBlob", "pubsub/2026/11/26/42.gz", body32, "application/octet-stream", "gzip",
                  {"id": "42", "source": "pubsub", "route": "pubsub", "formatVersion": "1"}, create_only=True),
    store_request("probe, virtual-host endpoint, empty prefix", f"az://{OTHER_ACCOUNT}/probe-c",
                  f"https://{OTHER_ACCOUNT}.blob.core.windows.net", OTHER_ACCOUNT, OTHER_KEY, "putBlob",
                  "_persistor/probe", b"ok", "text/plain"),
    store_request("Put Blob, empty body (Content-Length 0 signs as empty)", f"az://{DEV_ACCOUNT}/c01/p", DEV_ENDPOINT,
                  DEV_ACCOUNT, DEV_KEY, "putBlob", "empty", b"", "application/octet-stream"),
    store_request("Put Blob, a name that needs encoding", f"az://{DEV_ACCOUNT}/c01/p/q", DEV_ENDPOINT,
                  DEV_ACCOUNT, DEV_KEY, "putBlob", "dt=2026-11-26/a b+%2E\u00e9/./../x~y", b"{}", "application/json"),
    store_request("Put Block", f"az://{DEV_ACCOUNT}/c01/archive", DEV_ENDPOINT, DEV_ACCOUNT, DEV_KEY, "putBlock",
                  "pubsub/big.ndjson.gz", bytes(range(256)) * 4,
                  block_ids=[base64.b64encode(b"00000000000000ff-000001").decode()]),
    store_request("Put Block List with metadata in collation order, create-only", f"az://{OTHER_ACCOUNT}/c01/archive",
                  f"https://{OTHER_ACCOUNT}.blob.core.windows.net", OTHER_ACCOUNT, OTHER_KEY, "putBlockList",
                  "pubsub/big.ndjson.gz", b"", "application/x-ndjson", "gzip",
                  {"a1": "plain", "a_1": "\u00e9 100%", "firstReceivedAt": "2026-11-26T12:00:00.000Z", "Z_z": " edge "},
                  create_only=True,
                  block_ids=[base64.b64encode(f"00000000000000ff-00000{i}".encode()).decode() for i in range(2)]),
]


def lit(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def headers_lit(headers, indent):
    return "[\n" + "".join(f"{indent}    ({lit(n)}, {lit(v)}),\n" for n, v in headers) + f"{indent}]"


out = ["// GENERATED by Tests/tools/make_azure_fixtures.py from azure-storage-blob's SharedKeyCredentialPolicy.",
       "// Do not edit; rerun the script (with the test venv's python) instead.", "",
       "let azureSigningVectors: [AzureSigningVector] = ["]
for v in vectors:
    r = v["request"]
    request = "nil"
    if r:
        request = (f"AzureRequestInputs(\n            storeURL: {lit(r['storeURL'])}, endpoint: {lit(r['endpoint'])}, "
                   f"date: {DATE}, operation: .{r['operation']},\n"
                   f"            key: {lit(r['key'])}, bytesBase64: {lit(base64.b64encode(r['bytes']).decode())},\n"
                   f"            contentType: {lit(r['contentType'])}, "
                   f"contentEncoding: {lit(r['contentEncoding']) if r['contentEncoding'] else 'nil'},\n"
                   f"            metadata: [{', '.join(f'{lit(k)}: {lit(x)}' for k, x in sorted(r['metadata'].items())) or ':'}],\n"
                   f"            createOnly: {'true' if r['createOnly'] else 'false'}, "
                   f"blockIDs: [{', '.join(lit(i) for i in r['blockIDs'])}])")
    out += [
        "    AzureSigningVector(",
        f"        name: {lit(v['name'])},",
        f"        account: {lit(v['account'])}, key: {lit(v['key'])},",
        f"        method: {lit(v['method'])}, url: {lit(v['url'])},",
        f"        headers: {headers_lit(v['headers'], '        ')},",
        f"        stringToSign: {lit(v['sts'])},",
        f"        authorization: {lit(v['auth'])},",
        f"        request: {request}),",
    ]
out.append("]")
target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "StoresTests", "AzureFixtures.swift")
with open(target, "w") as f:
    f.write("\n".join(out) + "\n")
print(f"wrote {len(vectors)} vectors to {os.path.normpath(target)}")
