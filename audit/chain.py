"""The audit chain in plain Python: what is hashed, under which key, and how a chain is checked. No Django import.

Each entry's hash is an HMAC-SHA256, under a secret kept outside the database, of the previous
entry's hash and the entry's own content. Someone who can write to the database but does not hold
the key can edit an entry, yet cannot compute the hashes that would make the chain agree again.
Each entry records the id of its key (a fingerprint, never the key), so a rotated chain checks
every entry under the key it was written with. The head (the newest hash and the trusted start) is
sealed the same way, so dropping the newest entries and rewinding the head is noticed too.

Entries written before the chain was keyed carry an empty key id and a plain SHA-256 hash
(`legacy_hash`); they are only read to re-seal an intact legacy chain, never trusted as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

GENESIS = "0" * 64
LEGACY = ""  # the key id of entries hashed with plain SHA-256, before the chain was keyed


def canonical(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def legacy_hash(prev_hash: str, payload: dict) -> str:
    """The rule before keying (forgeable: anyone can recompute it). Used only to check a chain before re-sealing it."""
    return hashlib.sha256((prev_hash + canonical(payload)).encode()).hexdigest()


def _mac(key: bytes, label: str, *parts: str) -> str:
    message = "\x1f".join((label, *parts)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """A short public id for a key: names the key an entry was written with, reveals nothing of it."""
    return _mac(key, "pmlm-audit-key-id")[:12]


def entry_hash(key: bytes, prev_hash: str, payload: dict) -> str:
    return _mac(key, "pmlm-audit-entry", prev_hash, canonical(payload))


def head_seal(key: bytes, anchor_hash: str, last_hash: str) -> str:
    """Seals the head's two hashes: the trusted start (after a purge) and the newest entry's hash."""
    return _mac(key, "pmlm-audit-head", anchor_hash, last_hash)


def anchor_mac(key: bytes, record: dict) -> str:
    """Signs an anchor record (the head at a moment, written outside the database)."""
    return _mac(key, "pmlm-audit-anchor", canonical({k: v for k, v in record.items() if k != "mac"}))


def derive_key(secret: str, label: str) -> bytes:
    """A key derived from another secret with a domain-separation label (the development key)."""
    return hmac.new(secret.encode(), label.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Keyring:
    """The current key (new entries) and retired keys (kept only to check older entries)."""

    current: bytes
    retired: tuple[bytes, ...] = ()
    _by_id: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for key in (*self.retired, self.current):
            self._by_id[key_fingerprint(key)] = key

    @property
    def current_id(self) -> str:
        return key_fingerprint(self.current)

    def get(self, key_id: str) -> bytes | None:
        return self._by_id.get(key_id)


@dataclass(frozen=True)
class Entry:
    """What the chain knows of one entry."""

    id: int
    prev_hash: str
    hash: str
    key_id: str
    payload: dict


@dataclass(frozen=True)
class Break:
    entry_id: int | None
    reason: str


FOLLOWS = "it does not follow the entry before it (an entry was removed or inserted)"
EDITED = "its content no longer matches its hash (it was edited, or re-hashed without the key)"


def walk(entries: Iterable[Entry], start: str, keyring: Keyring) -> tuple[int, str, Break | None]:
    """Check entries in order from the trusted start; return how many passed, the last good hash, and the first
    break."""
    expected, checked = start, 0
    for entry in entries:
        if entry.prev_hash != expected:
            return checked, expected, Break(entry.id, FOLLOWS)
        if entry.key_id == LEGACY:
            return (
                checked,
                expected,
                Break(
                    entry.id,
                    "it is not keyed: it was written before PMLM_AUDIT_KEY and never sealed (manage.py seal_audit)",
                ),
            )
        key = keyring.get(entry.key_id)
        if key is None:
            return (
                checked,
                expected,
                Break(
                    entry.id,
                    f"its key ({entry.key_id}) is not one this deployment holds "
                    "(PMLM_AUDIT_KEY, PMLM_AUDIT_RETIRED_KEYS)",
                ),
            )
        if not hmac.compare_digest(entry_hash(key, entry.prev_hash, entry.payload), entry.hash):
            return checked, expected, Break(entry.id, EDITED)
        expected = entry.hash
        checked += 1
    return checked, expected, None


def walk_legacy(entries: Iterable[Entry], start: str, keyring: Keyring) -> tuple[int, Break | None]:
    """Check a chain that may begin with plain SHA-256 entries (before keying) followed by keyed ones.
    A legacy entry after a keyed one is a break: nobody writes those any more."""
    expected, checked, keyed = start, 0, False
    for entry in entries:
        if entry.prev_hash != expected:
            return checked, Break(entry.id, FOLLOWS)
        if entry.key_id == LEGACY:
            if keyed:
                return checked, Break(entry.id, "it is a plain SHA-256 entry after keyed ones (forged)")
            good = hmac.compare_digest(legacy_hash(entry.prev_hash, entry.payload), entry.hash)
        else:
            keyed = True
            key = keyring.get(entry.key_id)
            good = key is not None and hmac.compare_digest(entry_hash(key, entry.prev_hash, entry.payload), entry.hash)
        if not good:
            return checked, Break(entry.id, EDITED)
        expected = entry.hash
        checked += 1
    return checked, None


def reseal(entries: Iterable[Entry], start: str, rehash: Callable[[str, dict], str]) -> Iterable[tuple[int, str, str]]:
    """Re-hash a chain from the same start with `rehash(prev_hash, payload)` (one key's `entry_hash`, or `legacy_hash`
    to undo keying): yields (id, new prev_hash, new hash) in order."""
    prev = start
    for entry in entries:
        new = rehash(prev, entry.payload)
        yield entry.id, prev, new
        prev = new
