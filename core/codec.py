"""Payload encryption: every payload and failure leaves the process AES-GCM encrypted.

Histories hold customer ids, click URLs, relay replies and bounce reasons; with this codec
the Temporal server (and whoever reads its database) sees ``binary/encrypted`` payloads only.
The codec server (``starter/codec_server.py``) decodes them for the Temporal UI and CLI.

- Keys: ``PAYLOAD_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"``. The first key encrypts,
  every key decrypts, so rotation is: put the new key first, keep the old ones until no
  history needs them (the namespace's retention after the last run that used them closed).
- Each payload names its key (``encryption-key-id`` metadata); the nonce is random per payload.
- A payload without ``encoding: binary/encrypted`` passes through as it is: histories recorded
  before encryption (tests/histories) replay, and a worker with keys reads old runs.

After temporalio/samples-python ``encryption/codec.py``, with a key ring instead of one key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE = 12


class PayloadKeyError(ValueError):
    """PAYLOAD_KEYS is malformed, or a payload names a key we do not have."""


@dataclass(frozen=True)
class KeyRing:
    """Named AES-256 keys; ``current`` encrypts, all decrypt."""

    current: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> KeyRing | None:
        """``"k2:<base64>,k1:<base64>"`` -> a ring (None for an empty text: no encryption)."""
        entries = [part.strip() for part in text.split(",") if part.strip()]
        if not entries:
            return None
        keys: dict[str, bytes] = {}
        for entry in entries:
            key_id, sep, encoded = entry.partition(":")
            if not sep or not key_id:
                raise PayloadKeyError(
                    f"PAYLOAD_KEYS entry {key_id or entry[:8]!r}: want <id>:<base64>"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise PayloadKeyError(f"PAYLOAD_KEYS key {key_id!r} is not base64") from exc
            if len(key) != 32:
                raise PayloadKeyError(
                    f"PAYLOAD_KEYS key {key_id!r} has {len(key)} bytes, want 32 (AES-256); "
                    "make one with: python -c 'import os,base64; "
                    "print(base64.b64encode(os.urandom(32)).decode())'"
                )
            if key_id in keys:
                raise PayloadKeyError(f"PAYLOAD_KEYS names key {key_id!r} twice")
            keys[key_id] = key
        return cls(current=entries[0].partition(":")[0], keys=keys)


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self._ring.current
        cipher = self._ciphers[key_id]
        out = []
        for p in payloads:
            nonce = os.urandom(_NONCE)
            data = nonce + cipher.encrypt(nonce, p.SerializeToString(), key_id.encode())
            out.append(Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=data))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                out.append(p)  # recorded before encryption, or never encrypted
                continue
            key_id = p.metadata.get(KEY_ID, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise PayloadKeyError(
                    f"payload encrypted with key {key_id!r}, not in PAYLOAD_KEYS "
                    f"(have {', '.join(self._ciphers)})"
                )
            nonce, sealed = p.data[:_NONCE], p.data[_NONCE:]
            out.append(Payload.FromString(cipher.decrypt(nonce, sealed, key_id.encode())))
        return out


def encrypted_converter(base: DataConverter, ring: KeyRing | None) -> DataConverter:
    """``base`` with payloads and failures encrypted (messages and stack traces move into
    the encrypted failure attributes), or ``base`` unchanged without keys."""
    if ring is None:
        return base
    return dataclasses.replace(
        base,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
