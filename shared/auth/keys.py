"""Asymmetric signing keys for access tokens, and the JWKS that publishes the public half.

Only the auth function holds the private key; every other function verifies with the public key.
In development a key pair is generated into the data dir on first run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from shared.errors import Unauthorized

log = logging.getLogger(__name__)
DEV_KEY_FILE = "jwt-ed25519.pem"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: PublicKeyTypes) -> dict[str, str]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "alg": "EdDSA", "use": "sig"}
        thumb_src = {"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}
    elif isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        n = _b64(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big"))
        e = _b64(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big"))
        jwk = {"kty": "RSA", "n": n, "e": e, "alg": "RS256", "use": "sig"}
        thumb_src = {"e": e, "kty": "RSA", "n": n}
    else:  # pragma: no cover - configuration error
        raise ValueError("only Ed25519 and RSA keys are supported")
    # RFC 7638 thumbprint as the key id, so rotation produces a new kid automatically.
    canon = json.dumps(thumb_src, separators=(",", ":"), sort_keys=True).encode()
    jwk["kid"] = _b64(hashlib.sha256(canon).digest())[:16]
    return jwk


@dataclass(frozen=True)
class Claims:
    sub: str
    tid: str | None
    role: str
    jti: str
    exp: int


class TokenKeys:
    """Signs (when it holds the private key) and verifies access tokens."""

    def __init__(
        self,
        *,
        private_pem: bytes | None,
        public_pems: list[bytes],
        issuer: str,
        audience: str,
        access_ttl: int,
    ):
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self._private: PrivateKeyTypes | None = None
        publics: list[PublicKeyTypes] = []
        if private_pem:
            self._private = serialization.load_pem_private_key(private_pem, password=None)
            publics.append(self._private.public_key())
        for pem in public_pems:
            publics.append(serialization.load_pem_public_key(pem))
        if not publics:
            raise ValueError("no JWT key configured")
        self._verify: dict[str, tuple[PublicKeyTypes, str]] = {}
        self.jwks: dict[str, list[dict[str, str]]] = {"keys": []}
        for pub in publics:
            jwk = public_jwk(pub)
            if jwk["kid"] not in self._verify:
                self._verify[jwk["kid"]] = (pub, jwk["alg"])
                self.jwks["keys"].append(jwk)
        self._signing_kid = public_jwk(publics[0])["kid"] if self._private else None

    @property
    def can_sign(self) -> bool:
        return self._private is not None

    def issue(self, *, user_id: str, tenant_id: str | None, role: str) -> tuple[str, int]:
        """A signed access token and its lifetime in seconds."""
        if self._private is None or self._signing_kid is None:
            raise RuntimeError("this function holds no signing key")
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "tid": tenant_id,
            "role": role,
            "iat": now,
            "exp": now + self.access_ttl,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": self.audience,
        }
        alg = self._verify[self._signing_kid][1]
        token = jwt.encode(
            claims,
            self._private,  # type: ignore[arg-type]
            algorithm=alg,
            headers={"kid": self._signing_kid},
        )
        return token, self.access_ttl

    def verify(self, token: str) -> Claims:
        """Verify signature, algorithm, expiry, issuer and audience; any failure is a 401."""
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if kid not in self._verify:
                raise Unauthorized("unknown signing key", code="invalid_token")
            key, alg = self._verify[kid]
            # The algorithm comes from our key, never from the token header ("alg: none",
            # HS256-with-public-key confusion).
            data = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("access token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid access token", code="invalid_token") from exc
        return Claims(
            sub=str(data["sub"]),
            tid=data.get("tid"),
            role=str(data.get("role")),
            jti=str(data["jti"]),
            exp=int(data["exp"]),
        )


def generate_dev_key(data_dir: Path) -> bytes:
    """Load or create the development Ed25519 key under the data dir (0600)."""
    path = data_dir / "keys" / DEV_KEY_FILE
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    log.info("generated a development signing key at %s", path)
    return pem
