#!/usr/bin/env python3
"""Reads every object under a prefix of a bucket with the official google-cloud-storage client
(anonymous, through STORAGE_EMULATOR_HOST) and prints JSON:
{"objects": [{"name", "contentType", "contentEncoding", "metadata", "crc32c", "base64"}]}, where
base64 holds the stored bytes as they are (raw_download: no decompression on either side) and
crc32c is the checksum the store keeps for the object (base64, big-endian).

Usage: gcs_read.py EMULATOR_URL BUCKET [PREFIX]
"""
import base64, json, os, sys

os.environ["STORAGE_EMULATOR_HOST"] = sys.argv[1]
from google.cloud import storage  # noqa: E402  (reads STORAGE_EMULATOR_HOST when the client is made)

client = storage.Client(project="test")
objects = []
for blob in client.list_blobs(sys.argv[2], prefix=sys.argv[3] if len(sys.argv) > 3 else None):
    data = blob.download_as_bytes(raw_download=True)
    objects.append({"name": blob.name, "contentType": blob.content_type, "contentEncoding": blob.content_encoding,
                    "metadata": blob.metadata or {}, "crc32c": blob.crc32c, "base64": base64.b64encode(data).decode()})
print(json.dumps({"objects": objects}))
