#!/usr/bin/env python3
"""Writes a throwaway service-account key (docs/development.md#test-peers) for the
credential-flow tests: DIR/sa.json (token_uri = TOKEN_URI) and its public key DIR/sa.pub.pem, the
FAKE_SA_PUBKEY of fake_identity.py. Prints {"keyFile": …, "publicKey": …}.

Usage: make_gcs_test_sa.py DIR TOKEN_URI
"""
import json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

d, token_uri = sys.argv[1], sys.argv[2]
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
json.dump({"type": "service_account", "project_id": "test", "private_key_id": "test-kid", "private_key": pem,
           "client_email": "ci@test.iam.gserviceaccount.com", "client_id": "1",
           "token_uri": token_uri}, open(f"{d}/sa.json", "w"))
open(f"{d}/sa.pub.pem", "w").write(pub)
print(json.dumps({"keyFile": f"{d}/sa.json", "publicKey": f"{d}/sa.pub.pem"}))
