"""events/auth.py: the shared secret (local broker) and Knative's OIDC sender identity, both
checked for real (a JWKS served over HTTP on 127.0.0.1, tokens signed with a real RSA key)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from events.auth import check_sender, sender_headers
from shared.config import Settings


@pytest.fixture(scope="module")
def jwks() -> Iterator[tuple[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    doc = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(doc)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/openid/v1/jwks", key
    server.shutdown()


TRIGGER = "system:serviceaccount:deeplens:oidc-eventing.knative.dev-trigger-index-vector"


def _token(key: Any, **claims: Any) -> str:
    body = {"aud": "deeplens-index-vector", "exp": int(time.time()) + 60, "sub": TRIGGER}
    body.update(claims)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def test_shared_secret(tmp_path: Path) -> None:
    s = Settings.from_env({"DEEPLENS_DATA_DIR": str(tmp_path)})
    headers = sender_headers(s)
    assert check_sender(s, headers["authorization"])
    assert not check_sender(s, None)
    assert not check_sender(s, "Bearer " + "x" * 43)
    fixed = Settings.from_env({"DEEPLENS_EVENTS_TOKEN": "a-long-shared-secret"})
    assert check_sender(fixed, "Bearer a-long-shared-secret")
    assert not check_sender(fixed, "a-long-shared-secret")  # not a bearer token
    prod = Settings.from_env(
        {
            "DEEPLENS_ENV": "production",
            "DEEPLENS_DATABASE_URL": "postgresql://u:pw-not-default@db/x",
            "DEEPLENS_JWT__PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----",
        }
    )
    assert sender_headers(prod) == {} and not check_sender(prod, "Bearer anything")


def test_oidc_sender_identity(jwks: tuple[str, Any]) -> None:
    url, key = jwks
    s = Settings.from_env(
        {
            "DEEPLENS_EVENTS_AUTH": "oidc",
            "DEEPLENS_EVENTS_OIDC_JWKS_URL": url,
            "DEEPLENS_EVENTS_OIDC_AUDIENCE": "deeplens-index-vector",
        }
    )
    assert check_sender(s, f"Bearer {_token(key)}")
    assert not check_sender(s, f"Bearer {_token(key, aud='deeplens-sweeper')}")
    assert not check_sender(s, f"Bearer {_token(key, exp=int(time.time()) - 10)}")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not check_sender(s, f"Bearer {_token(other)}")
    unsigned = jwt.encode({"aud": "deeplens-index-vector"}, "", algorithm="none")  # no key
    assert not check_sender(s, f"Bearer {unsigned}")
    no_audience = Settings.from_env(
        {"DEEPLENS_EVENTS_AUTH": "oidc", "DEEPLENS_EVENTS_OIDC_JWKS_URL": url}
    )
    assert not check_sender(no_audience, f"Bearer {_token(key)}")
    # The sender must be one of Knative Eventing's identities (both namings), not any pod
    # that minted a projected token for the audience.
    newer = "system:serviceaccount:deeplens:index-vector-oidc-eventing.knative.dev-trigger"
    assert check_sender(s, f"Bearer {_token(key, sub=newer)}")
    pod = "system:serviceaccount:deeplens:deeplens-extract"
    assert not check_sender(s, f"Bearer {_token(key, sub=pod)}")
    no_sub = jwt.encode(
        {"aud": "deeplens-index-vector", "exp": int(time.time()) + 60},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    assert not check_sender(s, f"Bearer {no_sub}")
