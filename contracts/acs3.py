"""ACS3-HMAC-SHA256: the signature the EAS SDK puts on control-plane requests made with an AccessKey pair, as
alibabacloud_tea_openapi's `Utils.get_authorization` computes it. The CLI signs with these functions
(cli/signing.py) and the REST API verifies with them (services/api/authentication.py), so the two cannot drift.

    canonical request = METHOD \\n path as sent \\n canonical query \\n "name:value\\n" for each signed header
                        \\n signed header names joined by ";" \\n hex SHA-256 of the body
    signature         = hex HMAC-SHA256(secret, "ACS3-HMAC-SHA256\\n" + hex SHA-256(canonical request))

How each side gets the canonical query differs (the client encodes its own parameters, the server the raw query
it received), so that stays with each side.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

ALGORITHM = "ACS3-HMAC-SHA256"


def canonical_request(*, method: str, path: str, query: str, headers: Sequence[tuple[str, str]],
                      payload_hash: str) -> str:
    """`path` still percent-encoded; `query` canonical already; `headers`: (name, value) of each signed header, in
    the order the signature names them."""
    return "\n".join([
        method.upper(),
        path,
        query,
        "".join(f"{name.lower()}:{value.strip()}\n" for name, value in headers),
        ";".join(name for name, _ in headers),
        payload_hash,
    ])


def signature(canonical: str, secret: str) -> str:
    """The hex signature of a canonical request under an AccessKey secret (never log the secret)."""
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(access_key_id: str, signed_headers: Sequence[str], hex_signature: str) -> str:
    """The Authorization header's value, which the server parses back into its three parts."""
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed_headers)},Signature={hex_signature}"
