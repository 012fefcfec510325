"""The ledger's Ed25519 signing key: read from LEDGER_SIGNING_KEY, and the checkpoints it signs."""

import base64
import binascii
import hashlib
import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime

from agency_shared.checkpoints import ALGORITHM, checkpoint_message, key_id, reference_public_key, reference_sign
from agency_shared.events import Checkpoint
from agency_shared.receipt_verifier import timestamp

# The DER prefix of an Ed25519 private key in PKCS#8 (RFC 8410): the 32-byte seed follows it.
PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
# Outside production, without LEDGER_SIGNING_KEY: a fixed key anyone can read here, so every
# local process (the service, `verify`) agrees on it. Production refuses to start without its own.
DEVELOPMENT_SEED = hashlib.sha256(b"local-development-only-ledger-signing-key").digest()
GENERATE_KEY = "openssl genpkey -algorithm ed25519"


def parse_time(text: str) -> datetime:
    """A time as records and checkpoints write it (``agency_shared.receipt_verifier.timestamp``)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class InvalidSigningKey(ValueError):
    """LEDGER_SIGNING_KEY is neither a PEM Ed25519 private key nor the base64 of a 32-byte seed."""


def cryptography_installed() -> bool:
    return importlib.util.find_spec("cryptography") is not None


def parse_seed(text: str) -> bytes:
    """The 32-byte Ed25519 private key (seed) in ``text``: PEM (PKCS#8, as openssl writes it) or base64 of the seed."""
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSigningKey("not base64 or PEM") from None
    if len(raw) == 32:
        return raw
    if len(raw) == len(PKCS8_ED25519_PREFIX) + 32 and raw.startswith(PKCS8_ED25519_PREFIX):
        return raw[len(PKCS8_ED25519_PREFIX) :]
    raise InvalidSigningKey("not an Ed25519 private key (PKCS#8 PEM) nor a 32-byte seed")


@dataclass(frozen=True)
class LedgerKey:
    """The private key agreements signs checkpoints with, and the public keys receipts are checked with."""

    seed: bytes
    # Public keys of earlier signing keys: receipts and checkpoints they signed still verify.
    retired: tuple[bytes, ...] = ()

    @property
    def public_key(self) -> bytes:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        except ImportError:
            return reference_public_key(self.seed)
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        raw: bytes = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return raw

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def public_keys(self) -> dict[str, bytes]:
        """Every key a checkpoint of this ledger may be signed with, by key id: the current one and the retired."""
        return {key_id(raw): raw for raw in (self.public_key, *self.retired)}

    def sign(self, message: bytes) -> bytes:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        except ImportError:
            # Only outside production (the settings refuse production without cryptography).
            return reference_sign(self.seed, message)
        signature: bytes = Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)
        return signature

    def checkpoint(self, sequence: int, record_hash: str, at: datetime) -> Checkpoint:
        """The signed statement that link ``sequence`` hashes to ``record_hash``, as of ``at``.

        Ed25519 is deterministic: the same link and time always give the same checkpoint.
        """
        time = timestamp(at)
        signature = self.sign(checkpoint_message(sequence, record_hash, time, self.key_id))
        return Checkpoint(
            sequence=sequence,
            record_hash=record_hash,
            time=time,
            key_id=self.key_id,
            signature=base64.b64encode(signature).decode(),
        )

    def described(self) -> dict[str, object]:
        """GET /v1/ledger/public-key: the current key, and the retired ones older receipts were signed with."""

        def one(raw: bytes) -> dict[str, str]:
            return {"key_id": key_id(raw), "algorithm": ALGORITHM, "public_key": base64.b64encode(raw).decode()}

        return {**one(self.public_key), "retired": [one(raw) for raw in self.retired]}
