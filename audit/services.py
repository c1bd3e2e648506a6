"""Recording, verifying, sealing, anchoring, exporting and purging the audit trail.

Every surface records through `audit_record`. Who and through which request come from the audit
context the middleware (pages, admin), the API views and the commands set; services that write
patient data record their own event, so the page, the API, a command and a worker are all covered
by one call.

The chain is keyed (HMAC-SHA256, `audit.chain`) with PMLM_AUDIT_KEY, which never enters the
database; in development a key is derived from SECRET_KEY. `audit_anchor` writes the signed head
to a file outside the database (PMLM_AUDIT_ANCHOR_DIR) and `audit_verify` checks the latest one.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from audit import chain, in_flight
from audit.chain import GENESIS
from audit.models import AuditAction, AuditEvent, AuditHead, AuditInbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditContext:
    actor: object = None  # a user, or None for the system
    organisation_id: int | None = None
    request_id: str = ""
    surface: str = "system"


_context: contextvars.ContextVar[AuditContext] = contextvars.ContextVar("audit_context", default=AuditContext())


def current_context() -> AuditContext:
    return _context.get()


@contextmanager
def audit_context(**fields):
    """Within this block, events are attributed to these fields (the rest stays as it was)."""
    base = _context.get()
    token = _context.set(AuditContext(**{**base.__dict__, **fields}))
    try:
        yield
    finally:
        _context.reset(token)


def set_context(context: AuditContext):
    return _context.set(context)


def reset_context(token):
    _context.reset(token)


def _payload(event: AuditEvent) -> dict:
    """What the hash covers: ids, codes and counts; never a name, an identifier or free text about a patient."""
    return {
        "at": event.at.isoformat(),
        "actor": event.actor_id,
        "actor_name": event.actor_name,
        "organisation": event.organisation_id,
        "action": event.action,
        "surface": event.surface,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "request_id": event.request_id,
        "details": event.details,
    }


DEVELOPMENT_KEY_LABEL = "pmlm-audit-chain-development-key"


def audit_keyring() -> chain.Keyring:
    """PMLM_AUDIT_KEY (new entries) and PMLM_AUDIT_RETIRED_KEYS (older entries only). Without a key (debug only:
    production refuses to start) a stable development key is derived from SECRET_KEY; it is never stored."""
    return _keyring(
        getattr(settings, "PMLM_AUDIT_KEY", ""),
        tuple(getattr(settings, "PMLM_AUDIT_RETIRED_KEYS", ())),
        settings.SECRET_KEY,
    )


@lru_cache(maxsize=8)
def _keyring(current: str, retired: tuple[str, ...], secret_key: str) -> chain.Keyring:
    key = current.encode() if current else chain.derive_key(secret_key, DEVELOPMENT_KEY_LABEL)
    return chain.Keyring(key, tuple(k.encode() for k in retired if k))


def _lock_head() -> AuditHead | None:
    """Take the chain's lock first (a row lock on PostgreSQL, the write lock on SQLite), then read its head.
    A new chain gets its head here; a chain whose head is gone gets none (None: verify_audit reports it).
    Call inside a transaction."""
    if not AuditHead.objects.filter(pk=1).update(last_hash=F("last_hash")):
        if AuditEvent.objects.exists():
            return None
        keyring = audit_keyring()
        AuditHead.objects.get_or_create(
            pk=1,
            defaults={
                "last_hash": GENESIS,
                "anchor_hash": GENESIS,
                "key_id": keyring.current_id,
                "seal": chain.head_seal(keyring.current, GENESIS, GENESIS),
            },
        )
    return AuditHead.objects.select_for_update().get(pk=1)


def _head_sealed(keyring: chain.Keyring, head: AuditHead) -> bool:
    """The head's seal matches under a key this deployment holds (a head from before keying has none)."""
    if not head.seal:
        return True
    key = keyring.get(head.key_id)
    return key is not None and hmac.compare_digest(chain.head_seal(key, head.anchor_hash, head.last_hash), head.seal)


def _seal_head(*, anchor_hash: str, last_hash: str) -> None:
    keyring = audit_keyring()
    AuditHead.objects.filter(pk=1).update(
        anchor_hash=anchor_hash,
        last_hash=last_hash,
        key_id=keyring.current_id,
        seal=chain.head_seal(keyring.current, anchor_hash, last_hash),
    )


def _user_id(actor) -> int | None:
    return actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None


def _content(row) -> dict:
    return {name: getattr(row, name) for name in CONTENT_FIELDS}


# What an inbox entry carries into the chain: every field of AuditContent, read off the model so the two never drift.
CONTENT_FIELDS = tuple(field.attname for field in AuditInbox._meta.concrete_fields if not field.primary_key)


class _Backlog:
    """What this process has written since it last linked: linking is due after PMLM_AUDIT_LINK_EVERY entries or
    PMLM_AUDIT_LINK_SECONDS after the oldest of them (beat links the rest every few seconds)."""

    def __init__(self):
        self.count = 0
        self.since: float | None = None

    def wrote(self) -> bool:
        """Count one entry; True when this process should link now."""
        now = time.monotonic()
        self.count += 1
        self.since = self.since if self.since is not None else now
        return self.count >= settings.PMLM_AUDIT_LINK_EVERY or now - self.since >= settings.PMLM_AUDIT_LINK_SECONDS

    def linked(self) -> None:
        self.count, self.since = 0, None


_backlog = _Backlog()


def audit_record(
    action: str,
    *,
    obj=None,
    object_type: str = "",
    object_id="",
    details: dict | None = None,
    actor=None,
    organisation_id: int | None = None,
    surface: str = "",
) -> AuditEvent | AuditInbox:
    """Write one event (inside the caller's transaction: a rolled-back write leaves no event). It goes to the inbox
    in one INSERT and is linked into the chain with the entries written before it when linking is due
    (`_Backlog`); returns the chain's entry when it was linked now, else the inbox's."""
    written = _inbox_entry(action, obj, object_type, object_id, details, actor, organisation_id, surface)
    written.save(force_insert=True)
    return _written(written)


@contextmanager
def audit_recorded_while(
    action: str,
    *,
    obj=None,
    object_type: str = "",
    object_id="",
    details: dict | None = None,
    actor=None,
    organisation_id: int | None = None,
    surface: str = "",
):
    """`audit_record` for a read, its commit overlapping the block (the page or answer being rendered from what was
    read); when the block ends the entry is on disk, before anything leaves. The block must not use the database
    (refused: `audit.in_flight`). On SQLite or inside a transaction the entry is written before the block."""
    written = _inbox_entry(action, obj, object_type, object_id, details, actor, organisation_id, surface)
    pending = in_flight.send(written)
    if pending is None:
        written.save(force_insert=True)
        yield
    else:
        try:
            with connection.execute_wrapper(in_flight.refuse_queries):
                yield
        finally:
            written.pk = pending.collect()  # also after a failed block: the connection is left idle
    _written(written)


def _inbox_entry(action, obj, object_type, object_id, details, actor, organisation_id, surface) -> AuditInbox:
    if action not in AuditAction.values:
        raise ValueError(f"Unknown audit action {action!r}.")
    context = _context.get()
    actor = actor if actor is not None else context.actor
    if obj is not None:
        object_type = object_type or obj._meta.label
        object_id = object_id or obj.pk
        organisation_id = organisation_id or getattr(obj, "organisation_id", None)
    return AuditInbox(
        at=timezone.now(),
        actor_id=_user_id(actor),
        actor_name=getattr(actor, "username", "")[:150] if _user_id(actor) else "",
        organisation_id=organisation_id or context.organisation_id,
        action=action,
        surface=surface or context.surface,
        object_type=object_type[:60],
        object_id=str(object_id or "")[:64],
        request_id=context.request_id[:64],
        details=details or {},
    )


def _written(written: AuditInbox) -> AuditEvent | AuditInbox:
    if _backlog.wrote():
        linked = audit_link()
        return next((event for event, inbox_id in linked if inbox_id == written.pk), written)
    return written


LINK_BATCH = 1000


def audit_link() -> list[tuple[AuditEvent, int]]:
    """Move every entry waiting in the inbox into the chain, oldest first, under the head's lock: each is hashed with
    the previous one, and the head is sealed once per batch. Idempotent and atomic: an entry leaves the inbox in the
    transaction that chains it. Returns the chained entries with the inbox ids they had."""
    keyring = audit_keyring()
    linked = []
    with transaction.atomic():
        head = _lock_head()
        if head is None or not _head_sealed(keyring, head):
            # Sealing again would legitimise a rewritten or missing head: the entries wait in the inbox, and
            # verify_audit says why.
            logger.error("Audit entries were not linked: the chain's head is missing or its seal does not match.")
            _backlog.linked()  # tried: the next try comes with the next batch, not with every request
            return []
        last_hash = head.last_hash
        while batch := list(AuditInbox.objects.order_by("id")[:LINK_BATCH]):
            events = []
            for row in batch:
                event = AuditEvent(**_content(row), prev_hash=last_hash, key_id=keyring.current_id)
                event.hash = last_hash = chain.entry_hash(keyring.current, event.prev_hash, _payload(event))
                events.append(event)
            AuditEvent.objects.bulk_create(events)
            ids = [event.pk for event in events]
            if ids != sorted(ids) or (linked and ids[0] < linked[-1][0].pk):  # the walk follows ids
                raise RuntimeError("The database numbered linked audit entries out of order; nothing was linked.")
            AuditInbox.objects.filter(id__in=[row.pk for row in batch]).delete()
            linked += zip(events, [row.pk for row in batch], strict=True)
        if linked:
            _seal_head(anchor_hash=head.anchor_hash, last_hash=last_hash)
    _backlog.linked()
    return linked


def audit_waiting() -> int:
    """How many written entries wait to be linked into the chain."""
    return AuditInbox.objects.count()


def audit_denied(*, object_type: str, object_id="", reason: str, surface: str = "") -> AuditEvent:
    """Record a refused attempt: an object of another organisation, or one that does not exist there.
    The id is the one asked for (cut to 64 characters, NULs removed), never a name."""
    return audit_record(
        AuditAction.ACCESS_DENIED,
        object_type=object_type,
        object_id=str(object_id).replace("\x00", ""),
        details={"reason": reason[:200]},
        surface=surface,
    )


@dataclass
class ChainBreak:
    event_id: int | None
    reason: str


class AuditChainBroken(Exception):
    def __init__(self, checked: int, broken: ChainBreak):
        where = f"entry {broken.event_id}" if broken.event_id else "the chain's end"
        super().__init__(f"Audit trail broken at {where}: {broken.reason} ({checked} entries before it are intact).")
        self.checked, self.broken = checked, broken


def _entries(event_model=AuditEvent, chunk: int = 2000):
    """Every entry in chain order, read a page at a time (safe to update the rows already read)."""
    after = 0
    while True:
        page = list(event_model.objects.filter(id__gt=after).order_by("id")[:chunk])
        if not page:
            return
        for event in page:
            yield chain.Entry(event.id, event.prev_hash, event.hash, event.key_id, _payload(event))
        after = page[-1].id


@dataclass
class _Verified:
    checked: int
    broken: ChainBreak | None
    last_id: int | None = None
    last_hash: str = GENESIS
    first_id: int | None = None


def _verify() -> _Verified:
    audit_link()  # the entries written so far, in the chain first
    keyring = audit_keyring()
    head = AuditHead.objects.filter(pk=1).first()
    start = head.anchor_hash if head else GENESIS
    ends = {"first": None, "last": None}

    def tracked():
        for entry in _entries():
            ends["first"] = ends["first"] or entry.id
            ends["last"] = entry.id
            yield entry

    checked, last_hash, broken = chain.walk(tracked(), start, keyring)
    if broken is not None:
        return _Verified(checked, ChainBreak(broken.entry_id, broken.reason))
    done = _Verified(checked, None, ends["last"], last_hash, ends["first"])
    if head is None:
        if checked:
            done.broken = ChainBreak(None, "the chain's head is missing")
        return done
    # The head read before the walk must be in the walked chain (entries appended since follow it).
    if head.last_hash != start and not AuditEvent.objects.filter(hash=head.last_hash).exists():
        done.broken = ChainBreak(None, "the newest entries are missing (the chain's head is not the last entry)")
        return done
    if not head.seal or not _head_sealed(keyring, head):
        done.broken = ChainBreak(
            None, "the chain's head was rewritten (its seal does not match; entries were dropped or the start moved)"
        )
        return done
    done.broken = _check_anchor(keyring, done.first_id)
    return done


def audit_verify() -> tuple[int, ChainBreak | None]:
    """Walk the chain from its trusted start under the keys; check the head's seal and the latest anchor.
    Return how many entries were checked and the first break, if any."""
    verified = _verify()
    return verified.checked, verified.broken


# Anchors: the signed head, outside the database.


def _anchor_dir() -> Path:
    return Path(getattr(settings, "PMLM_AUDIT_ANCHOR_DIR", "") or settings.VAR_DIR / "audit-anchors")


def audit_latest_anchor() -> tuple[Path, dict] | None:
    folder = _anchor_dir()
    names = sorted(folder.glob("anchor-*.json")) if folder.is_dir() else []
    for path in reversed(names):
        try:
            return path, json.loads(path.read_text())
        except (OSError, ValueError):
            return path, {}
    return None


def _check_anchor(keyring: chain.Keyring, first_id: int | None) -> ChainBreak | None:
    latest = audit_latest_anchor()
    if latest is None:
        return None
    path, record = latest
    key = keyring.get(str(record.get("key_id", "")))
    if key is None or not hmac.compare_digest(chain.anchor_mac(key, record), str(record.get("mac", ""))):
        return ChainBreak(None, f"the anchor {path.name} is not signed by a key this deployment holds (it was altered)")
    entry_id = int(record["entry"])
    found = AuditEvent.objects.filter(pk=entry_id).values_list("hash", flat=True).first()
    if found is None:
        if first_id is not None and entry_id < first_id:
            return None  # purged past retention since it was anchored
        return ChainBreak(
            None, f"entries up to entry {entry_id}, anchored at {record.get('at')} in {path.name}, are missing"
        )
    if found != record["hash"]:
        return ChainBreak(
            entry_id,
            f"it differs from the anchor written at {record.get('at')} in {path.name} (the chain was rewritten)",
        )
    return None


def audit_anchor() -> Path | None:
    """Verify the chain, then write its signed head (newest entry's id and hash, the count, the time) to a new file in
    PMLM_AUDIT_ANCHOR_DIR. Returns the file, the latest one when nothing changed since, or None for an empty chain."""
    verified = _verify()
    if verified.broken is not None:
        raise AuditChainBroken(verified.checked, verified.broken)
    if verified.last_id is None:
        return None
    latest = audit_latest_anchor()
    if latest and latest[1].get("entry") == verified.last_id and latest[1].get("hash") == verified.last_hash:
        return latest[0]
    keyring = audit_keyring()
    now = timezone.now()
    record = {
        "entry": verified.last_id,
        "hash": verified.last_hash,
        "entries": verified.checked,
        "at": now.isoformat(),
        "key_id": keyring.current_id,
    }
    record["mac"] = chain.anchor_mac(keyring.current, record)
    folder = _anchor_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"anchor-{now:%Y%m%dT%H%M%S%fZ}-{verified.last_id}.json"
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, path)
    return path


# Sealing: re-hash the chain under the current key (the upgrade from plain SHA-256, and key rotation).


def chain_seal(event_model, head_model, keyring: chain.Keyring, *, unkeyed: bool = False) -> int:
    """Check the whole chain as it stands (plain SHA-256 entries from before keying, keyed entries under any held key),
    then re-hash every entry under the current key and seal the head. Refuses a chain that is already broken: sealing
    it would make a forgery permanent. `unkeyed` re-hashes with plain SHA-256 instead (undoing the migration only).
    Takes models so a migration can pass its historical ones. Returns how many entries were re-hashed."""
    if unkeyed:
        rehash, key_id = chain.legacy_hash, chain.LEGACY
    else:
        key_id = keyring.current_id

        def rehash(prev_hash, payload):
            return chain.entry_hash(keyring.current, prev_hash, payload)

    with transaction.atomic():
        if not head_model.objects.filter(pk=1).update(last_hash=F("last_hash")):
            head_model.objects.create(pk=1, last_hash=GENESIS, anchor_hash=GENESIS)
        head = head_model.objects.select_for_update().get(pk=1)
        checked, broken = chain.walk_legacy(_entries(event_model), head.anchor_hash, keyring)
        if broken is not None:
            raise AuditChainBroken(checked, ChainBreak(broken.entry_id, broken.reason))
        last = event_model.objects.order_by("-id").values_list("hash", flat=True).first()
        if head.last_hash != (last or head.anchor_hash):
            raise AuditChainBroken(
                checked, ChainBreak(None, "the newest entries are missing (the chain's head is not the last entry)")
            )
        if head.seal:
            key = keyring.get(head.key_id)
            if key is None or not hmac.compare_digest(
                chain.head_seal(key, head.anchor_hash, head.last_hash), head.seal
            ):
                raise AuditChainBroken(
                    checked, ChainBreak(None, "the chain's head was rewritten (its seal does not match)")
                )
        new_last, batch = head.anchor_hash, []
        # Pages are read as the rows before them are rewritten: only their links change, never the hashed content.
        for entry_id, prev_hash, new_hash in chain.reseal(_entries(event_model), head.anchor_hash, rehash):
            batch.append(event_model(id=entry_id, prev_hash=prev_hash, hash=new_hash, key_id=key_id))
            new_last = new_hash
            if len(batch) >= 1000:
                event_model.objects.bulk_update(batch, ["prev_hash", "hash", "key_id"])
                batch = []
        if batch:
            event_model.objects.bulk_update(batch, ["prev_hash", "hash", "key_id"])
        seal = "" if unkeyed else chain.head_seal(keyring.current, head.anchor_hash, new_last)
        head_model.objects.filter(pk=1).update(last_hash=new_last, key_id=key_id, seal=seal)
    return checked


def audit_seal() -> int:
    """Seal the chain under PMLM_AUDIT_KEY (after an upgrade or a key rotation), then anchor it afresh."""
    audit_link()
    count = chain_seal(AuditEvent, AuditHead, audit_keyring())
    audit_anchor()
    return count


def audit_purge(*, older_than_days: int | None = None) -> int:
    """Delete entries past retention; the oldest kept entry's prev_hash becomes the trusted anchor."""
    days = older_than_days if older_than_days is not None else settings.PMLM_AUDIT_RETENTION_DAYS
    cutoff = timezone.now() - timedelta(days=days)
    with transaction.atomic():
        audit_link()  # under the head's lock until the purge commits
        old = AuditEvent.objects.filter(at__lt=cutoff)
        count = old.count()
        if not count:
            return 0
        oldest_kept = AuditEvent.objects.filter(at__gte=cutoff).order_by("id").first()
        anchor = oldest_kept.prev_hash if oldest_kept else AuditHead.objects.get(pk=1).last_hash
        old.delete()
        _seal_head(anchor_hash=anchor, last_hash=AuditHead.objects.get(pk=1).last_hash)
        audit_record(AuditAction.RETENTION_PURGE, details={"deleted": count, "retention_days": days}, surface="system")
        audit_link()
    return count


FHIR_ACTIONS = {
    "view": "R",
    "export": "R",
    "api_read": "R",
    "build": "C",
    "request": "C",
    "rate": "C",
    "ab": "C",
    "import": "C",
    "admin_change": "U",
    "admin_delete": "D",
    "admin_view": "R",
    "sign": "E",
    "retention": "D",
    "access_denied": "E",
    "role_change": "U",
}


def audit_event_fhir(event: AuditEvent) -> dict:
    """One entry as a FHIR R4 AuditEvent."""
    code = next((c for prefix, c in FHIR_ACTIONS.items() if event.action.startswith(prefix)), "E")
    resource = {
        "resourceType": "AuditEvent",
        "id": str(event.id),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": "urn:pmlm:audit-action", "code": event.action, "display": event.get_action_display()}],
        "action": code,
        "recorded": event.at.isoformat(),
        "outcome": "4" if event.action in (AuditAction.ACCESS_DENIED, AuditAction.SIGN_IN_FAILED) else "0",
        "agent": [
            {
                "who": {"identifier": {"system": "urn:pmlm:user", "value": event.actor_name or "system"}},
                "requestor": True,
                "network": {"address": event.request_id or "-", "type": "5"},
            }
        ],
        "source": {"site": event.surface, "observer": {"display": "PMLM clinic"}},
        "extension": [{"url": "urn:pmlm:audit-hash", "valueString": event.hash}],
    }
    if event.object_type:
        resource["entity"] = [{"what": {"reference": f"{event.object_type}/{event.object_id}"}}]
    return resource


def audit_bundle(events) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": audit_event_fhir(e)} for e in events],
    }
