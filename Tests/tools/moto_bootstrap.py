#!/usr/bin/env python3
"""Prepares a fresh moto server (docs/development.md#test-peers) and turns SigV4 verification on.

usage: moto_bootstrap.py PORT [BUCKET]

Seeds moto's random generator first, so a restarted moto bootstrapped again hands out the same
keys (a running Persistor keeps working after the restart). Creates an IAM user with an s3:*
policy and an access key, a role with the same policy and temporary keys for it (for the IMDS
test), the bucket (default `bkt`), and the bucket `locked` with Object Lock and a default retention
(whose PutObjects need a checksum header or Content-MD5); then switches auth on. Prints JSON:
{"accessKeyId", "secretAccessKey", "role": {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}}.
"""
import json
import sys
import urllib.request

import boto3

port = int(sys.argv[1])
bucket = sys.argv[2] if len(sys.argv) > 2 else "bkt"
E = f"http://127.0.0.1:{port}"
S3_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


def moto_api(path, body):
    urllib.request.urlopen(urllib.request.Request(E + path, data=body, method="POST",
                                                  headers={"Content-Type": "text/plain"}))


def client(service, key="x", secret="x"):
    return boto3.client(service, endpoint_url=E, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret)


moto_api("/moto-api/seed?a=42", b"")
iam = client("iam")
iam.create_user(UserName="ci")
iam.put_user_policy(UserName="ci", PolicyName="s3all", PolicyDocument=S3_ALL)
key = iam.create_access_key(UserName="ci")["AccessKey"]
iam.create_role(RoleName="persistor", AssumeRolePolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
iam.put_role_policy(RoleName="persistor", PolicyName="s3all", PolicyDocument=S3_ALL)
role = client("sts", key["AccessKeyId"], key["SecretAccessKey"]).assume_role(
    RoleArn="arn:aws:iam::123456789012:role/persistor", RoleSessionName="imds", DurationSeconds=3600)["Credentials"]
s3 = client("s3", key["AccessKeyId"], key["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
s3.put_object_lock_configuration(Bucket="locked", ObjectLockConfiguration={
    "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
moto_api("/moto-api/reset-auth", b"0")
print(json.dumps({
    "accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"],
    "role": {"AccessKeyId": role["AccessKeyId"], "SecretAccessKey": role["SecretAccessKey"],
             "Token": role["SessionToken"], "Expiration": role["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")},
}))
