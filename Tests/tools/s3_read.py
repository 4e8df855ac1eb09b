#!/usr/bin/env python3
"""Reads objects back with boto3 (the official SDK as the oracle) and prints them as JSON.

usage: s3_read.py ENDPOINT ACCESS_KEY_ID SECRET_ACCESS_KEY BUCKET [PREFIX]

Prints {"objects": [{"key", "bytesBase64", "contentType", "contentEncoding", "metadata",
"checksumSHA256"}]} for every object under PREFIX, with the bytes exactly as stored (no transparent
decompression) and the SHA-256 checksum S3 keeps with the object (HeadObject with ChecksumMode
ENABLED; null when it has none).
"""
import base64
import json
import sys

import boto3

endpoint, key_id, secret, bucket = sys.argv[1:5]
prefix = sys.argv[5] if len(sys.argv) > 5 else ""
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key_id, aws_secret_access_key=secret)
objects = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for entry in page.get("Contents", []):
        got = s3.get_object(Bucket=bucket, Key=entry["Key"])
        objects.append({
            "key": entry["Key"],
            "bytesBase64": base64.b64encode(got["Body"].read()).decode(),
            "contentType": got.get("ContentType"),
            "contentEncoding": got.get("ContentEncoding"),
            "metadata": got.get("Metadata", {}),
            "checksumSHA256": s3.head_object(Bucket=bucket, Key=entry["Key"], ChecksumMode="ENABLED").get("ChecksumSHA256"),
        })
print(json.dumps({"objects": objects}))
