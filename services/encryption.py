"""Symmetric encryption of secrets at rest (service tokens, AccessKey secrets, kubeconfigs)."""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=1)
def _fernet() -> Fernet:
    if settings.FERRY_ENCRYPTION_KEY:
        return Fernet(settings.FERRY_ENCRYPTION_KEY.encode())
    # Derived, so an installation needs no extra setting; domain-separated from other uses of SECRET_KEY.
    digest = hashlib.sha256(b"ferry-encryption:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("cannot decrypt: the encryption key changed or the value is corrupt") from exc
