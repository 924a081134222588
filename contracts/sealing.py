"""Service tokens in the routing table: sealed for the gateway, never in plain text in Redis.

The gateway needs each service's token itself, not only a way to recognise it: it verifies EAS signatures
(HMAC-SHA1 keyed by the token) and presents the token to the instance (`Authorization: <token>`, which the
model server checks). So a route entry carries
- `token_digest`: HMAC-SHA256 of the token under the route key, which the gateway compares (in constant time)
  with the same HMAC of a presented plain or Bearer token; keyed, so that whoever reads Redis cannot test
  guesses of a weak, user-chosen token against it;
- `token_sealed`: the token encrypted with AES-256-GCM under the route key, bound to its cluster and service
  name (the associated data), so a sealed token moved into another entry does not open;
- `upstream_token_sealed` (a pool model's entry only): the token the instances check when it is not the entry's
  own (the pool's), sealed the same way; the gateway presents it to the instances and never accepts it from a
  client.

The route key is shared by the control plane (which seals) and the gateway (which opens) and is never in Redis:
`FERRY_ROUTE_KEY` (32 bytes, urlsafe base64), else the file `route-key` in FERRY_VAR_DIR, made (mode 0600) by
whichever process needs it first. It is a key of its own, not the control plane's encryption key: the gateway
holds what it needs to serve (the tokens), not what decrypts every stored secret. No Django here.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from pathlib import Path

KEY_SETTING = "FERRY_ROUTE_KEY"
KEY_FILE = "route-key"
_VERSION = "v1:"


class SealError(ValueError):
    """A sealed token that does not open with this key (another key, another route, or corrupt)."""


def _var_dir() -> Path:
    return Path(os.environ.get("FERRY_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")


def decode_key(text: str, origin: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode() + b"==")
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValueError(f"{origin} must be 32 bytes in urlsafe base64 (make one with: python -c \"import secrets, "
                         "base64; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())\")")
    return key


def route_key(var_dir: Path | None = None) -> bytes:
    """FERRY_ROUTE_KEY, else var/route-key (created at first use, mode 0600, atomically: concurrent first uses
    agree on one key). Raises ValueError naming the setting when it is malformed."""
    configured = os.environ.get(KEY_SETTING, "").strip()
    if configured:
        return decode_key(configured, KEY_SETTING)
    directory = var_dir or _var_dir()
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        draft = directory / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
        try:
            os.link(draft, path)  # fails if another process linked its key first: then that one is the key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return decode_key(path.read_text(), str(path))


def digest(key: bytes, token: bytes) -> bytes:
    """What a route entry's `token_digest` holds (as hex) and what the gateway computes from a presented token."""
    return hmac.digest(key, token, "sha256")


def _aad(cluster: str, service: str) -> bytes:
    return f"ferry-route-token:{cluster}/{service}".encode()


def seal(key: bytes, token: str, cluster: str, service: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, token.encode(), _aad(cluster, service))
    return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(key: bytes, sealed: str, cluster: str, service: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not sealed.startswith(_VERSION):
        raise SealError("the sealed token has an unknown format")
    try:
        raw = base64.urlsafe_b64decode(sealed[len(_VERSION):].encode())
        return AESGCM(key).decrypt(raw[:12], raw[12:], _aad(cluster, service))
    except (InvalidTag, binascii.Error, ValueError):
        raise SealError("the sealed token does not open with this route key (FERRY_ROUTE_KEY or var/route-key "
                        "differs between the control plane and the gateway?)") from None


def token_fields(key: bytes, token: str, cluster: str, service: str) -> dict:
    """The two fields of a route entry that stand for the token."""
    return {"token_digest": digest(key, token.encode()).hex(), "token_sealed": seal(key, token, cluster, service)}


def upstream_token_fields(key: bytes, upstream_token: str, cluster: str, service: str) -> dict:
    """The route entry field for the token the gateway presents to the instances when it is not the entry's own
    (a pool model's instances are the pool's, which check the pool's token): sealed exactly as `token_sealed`,
    bound to this entry's cluster and service name, so it opens only in this entry. No digest: clients never
    present it (they present the entry's own token)."""
    return {"upstream_token_sealed": seal(key, upstream_token, cluster, service)}
