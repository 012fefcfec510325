"""Signed checkpoints of the acceptance ledger: what is signed, key ids, and checking an Ed25519 signature.

A checkpoint says "link ``sequence`` of the chain hashes to ``record_hash``", signed by
agreements' ledger key (Ed25519). Sent out of the system (an archive mailbox, a client's
receipt), it is remembered where no database writer reaches: a chain rewritten later
disagrees with it at ``sequence``.

Standard library only, like the hash chain: the one-file receipt verifier carries this
module too (``agency_shared.receipts.standalone_verifier``). Signatures are checked with the
``cryptography`` package when it is installed, otherwise with the RFC 8032 reference
arithmetic below (slow and not constant-time, which only matters for signing: the services
sign with ``cryptography``; see ``agreements.signing``).
"""

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from agency_shared.chain import canonical_json

ALGORITHM = "Ed25519"
# Prefixed to what is signed, so a checkpoint signature can never be taken for a signature of anything else.
CHECKPOINT_CONTEXT = b"wechat-agency ledger checkpoint v1\n"
CHECKPOINT_FIELDS = ("sequence", "record_hash", "time", "key_id")


def key_id(public_key: bytes) -> str:
    """A key's name: the first 16 hex digits of the SHA-256 of its 32 raw public-key bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def checkpoint_message(sequence: int, record_hash: str, time: str, signer_key_id: str) -> bytes:
    """The bytes signed: the context line, then the canonical JSON of the four fields (as the chain hashes)."""
    fields = {"sequence": sequence, "record_hash": record_hash, "time": time, "key_id": signer_key_id}
    return CHECKPOINT_CONTEXT + canonical_json(fields)


def public_keys_by_id(keys: list[Any]) -> dict[str, bytes]:
    """``{key_id: raw public key}`` from ``[{"public_key": base64, ...}, ...]`` (GET /v1/ledger/public-key's keys)."""
    found: dict[str, bytes] = {}
    for entry in keys:
        raw = base64.b64decode(entry["public_key"], validate=True)
        found[key_id(raw)] = raw
    return found


def checkpoint_problems(checkpoint: Any, public_keys: Mapping[str, bytes] | None) -> list[str]:
    """Why ``checkpoint`` is not a checkpoint signed by one of ``public_keys``; empty when it is.

    ``public_keys`` None: only its form is checked (no key to check the signature with).
    """
    if not isinstance(checkpoint, dict):
        return ["the checkpoint is not an object"]
    sequence, digest, time, signer = (checkpoint.get(name) for name in CHECKPOINT_FIELDS)
    if not isinstance(sequence, int) or not all(isinstance(value, str) for value in (digest, time, signer)):
        return ["the checkpoint lacks one of sequence, record_hash, time, key_id, or has one of the wrong type"]
    digest, time, signer = str(digest), str(time), str(signer)
    try:
        signature = base64.b64decode(str(checkpoint.get("signature")), validate=True)
    except ValueError:
        return ["the checkpoint's signature is not base64"]
    if public_keys is None:
        return []
    public_key = public_keys.get(signer)
    if public_key is None:
        return [f"the checkpoint is signed with key {signer}, which is not one of the ledger's keys"]
    if not ed25519_valid(public_key, checkpoint_message(sequence, digest, time, signer), signature):
        return [f"the checkpoint's signature is not key {signer}'s signature of link {sequence} at {digest}"]
    return []


def chain_disagrees(checkpoint: Any, stored_hash: str | None, public_keys: Mapping[str, bytes]) -> str | None:
    """Why the chain, whose link at the checkpoint's sequence hashes to ``stored_hash`` (None: there is no
    such link), contradicts ``checkpoint``, or the checkpoint is not the ledger's; None when they agree."""
    if problems := checkpoint_problems(checkpoint, public_keys):
        return (
            f"checkpoint of link {checkpoint.get('sequence') if isinstance(checkpoint, dict) else '?'}: {problems[0]}"
        )
    sequence, signed, time = checkpoint["sequence"], checkpoint["record_hash"], checkpoint["time"]
    if stored_hash is None:
        return f"link {sequence} was signed at {time} but the chain no longer has it: links were removed"
    if stored_hash != signed:
        return (
            f"link {sequence} hashes to {stored_hash}, but key {checkpoint['key_id']} signed it as {signed} at "
            f"{time}: the chain was rewritten at or before link {sequence}"
        )
    return None


def ed25519_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return _reference_verify(public_key, message, signature)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- Ed25519 as RFC 8032 section 6 writes it (points in extended coordinates) ---
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple[int, int, int, int]


def _sha512_int(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little")


def _add(a: _Point, b: _Point) -> _Point:
    x = (a[1] - a[0]) * (b[1] - b[0]) % _P
    y = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c, d = 2 * a[3] * b[3] * _D % _P, 2 * a[2] * b[2] % _P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int, point: _Point) -> _Point:
    result: _Point = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point, scalar = _add(point, point), scalar >> 1
    return result


def _equal(a: _Point, b: _Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    return _P - x if (x & 1) != sign else x


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0) or 0
_G: _Point = (_GX, _GY, 1, _GX * _GY % _P)


def _compress(point: _Point) -> bytes:
    z_inverse = pow(point[2], _P - 2, _P)
    x, y = point[0] * z_inverse % _P, point[1] * z_inverse % _P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _decompress(data: bytes) -> _Point | None:
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


def _secret_scalar(seed: bytes) -> tuple[int, bytes]:
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def reference_public_key(seed: bytes) -> bytes:
    """The public key of a 32-byte private key (seed), by the reference arithmetic."""
    return _compress(_multiply(_secret_scalar(seed)[0], _G))


def reference_sign(seed: bytes, message: bytes) -> bytes:
    """An Ed25519 signature by the reference arithmetic: for tests and development only (not constant-time)."""
    scalar, prefix = _secret_scalar(seed)
    public_key = _compress(_multiply(scalar, _G))
    r = _sha512_int(prefix + message) % _L
    big_r = _compress(_multiply(r, _G))
    h = _sha512_int(big_r + public_key + message) % _L
    return big_r + int.to_bytes((r + h * scalar) % _L, 32, "little")


def _reference_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, big_r = _decompress(public_key), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or big_r is None or s >= _L:
        return False
    h = _sha512_int(signature[:32] + public_key + message) % _L
    return _equal(_multiply(s, _G), _add(big_r, _multiply(h, a)))
