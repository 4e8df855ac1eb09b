#!/usr/bin/env python3
"""Mints test tokens with the official libraries: google-auth for the Pub/Sub push (Google OIDC)
shapes and PyJWT for the Microsoft Entra shapes, all RS256 with a fresh RSA key whose JWKS is
written to DIR/jwks.json (served to Persistor by a local HTTP server in the test).

usage: mint_tokens.py DIR AUDIENCE TENANT
prints: {"kid": ..., "tokens": {name: token, ...}}
"""
import json
import sys
import time

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt
from google.auth import jwt as google_jwt

EVENT_GRID_APP_ID = "4962773b-9cdb-44cf-a8bf-237846a00ab7"


def b64url_uint(value):
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    import base64
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def main():
    directory, audience, tenant = sys.argv[1], sys.argv[2], sys.argv[3]
    kid = "test-key-1"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    numbers = key.public_key().public_numbers()
    with open(f"{directory}/jwks.json", "w") as f:
        json.dump({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                             "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}]}, f)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()

    now = int(time.time())
    signer = crypt.RSASigner.from_string(pem, key_id=kid)
    other_signer = crypt.RSASigner.from_string(other_pem, key_id=kid)

    def google(**overrides):
        claims = {"aud": audience, "azp": "1234567890", "email": "pusher@proj.iam.gserviceaccount.com",
                  "email_verified": True, "iat": now, "exp": now + 3600,
                  "iss": "https://accounts.google.com", "sub": "1234567890"}
        claims.update(overrides)
        return google_jwt.encode(signer, claims).decode()

    def entra(version="1.0", **overrides):
        if version == "1.0":
            claims = {"aud": audience, "iss": f"https://sts.windows.net/{tenant}/", "appid": EVENT_GRID_APP_ID,
                      "tid": tenant, "ver": "1.0"}
        else:
            claims = {"aud": audience, "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
                      "azp": EVENT_GRID_APP_ID, "tid": tenant, "ver": "2.0"}
        claims.update({"iat": now, "nbf": now, "exp": now + 86400, "oid": "x", "sub": "x"})
        claims.update(overrides)
        return pyjwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})

    tokens = {
        "google_valid": google(),
        "google_bare_issuer": google(iss="accounts.google.com"),
        "google_wrong_aud": google(aud="https://elsewhere.example.com"),
        "google_wrong_iss": google(iss="https://evil.example.com"),
        "google_expired": google(iat=now - 7200, exp=now - 3600),
        "google_wrong_email": google(email="intruder@proj.iam.gserviceaccount.com"),
        "google_unverified_email": google(email_verified=False),
        "google_other_key": google_jwt.encode(other_signer, {"aud": audience, "email": "pusher@proj.iam.gserviceaccount.com",
                                                              "email_verified": True, "iat": now, "exp": now + 3600,
                                                              "iss": "https://accounts.google.com"}).decode(),
        "entra_v1_valid": entra("1.0"),
        "entra_v2_valid": entra("2.0"),
        "entra_foreign_appid": entra("1.0", appid="11111111-2222-3333-4444-555555555555"),
        "entra_other_tenant": entra("1.0", iss="https://sts.windows.net/99999999-9999-9999-9999-999999999999/",
                                    tid="99999999-9999-9999-9999-999999999999"),
        "hs256": pyjwt.encode({"aud": audience, "iss": "https://accounts.google.com", "exp": now + 3600,
                               "iat": now, "email": "pusher@proj.iam.gserviceaccount.com", "email_verified": True},
                              "a-shared-secret-that-is-long-enough-for-hs256", algorithm="HS256", headers={"kid": kid}),
    }
    json.dump({"kid": kid, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
