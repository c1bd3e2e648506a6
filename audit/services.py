"""Recording, verifying, exporting and purging the audit trail.

Every surface records through `audit_record`. Who and through which request come from the audit
context the middleware (pages, admin), the API views and the commands set; services that write
patient data record their own event, so the page, the API, a command and a worker are all covered
by one call.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.chain import GENESIS, chain_hash
from audit.models import AuditAction, AuditEvent, AuditHead


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
    return {"at": event.at.isoformat(), "actor": event.actor_id, "actor_name": event.actor_name,
            "organisation": event.organisation_id, "action": event.action, "surface": event.surface,
            "object_type": event.object_type, "object_id": event.object_id, "request_id": event.request_id,
            "details": event.details}


def _lock_head() -> AuditHead:
    """Take the chain's lock first (a row lock on PostgreSQL, the write lock on SQLite), then read its head.
    Call inside a transaction."""
    if not AuditHead.objects.filter(pk=1).update(last_hash=F("last_hash")):
        AuditHead.objects.get_or_create(pk=1, defaults={"last_hash": GENESIS, "anchor_hash": GENESIS})
    return AuditHead.objects.select_for_update().get(pk=1)


def _user_id(actor) -> int | None:
    return actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None


def audit_record(action: str, *, obj=None, object_type: str = "", object_id="", details: dict | None = None, actor=None,
                 organisation_id: int | None = None, surface: str = "") -> AuditEvent:
    """Append one event to the chain (inside the caller's transaction: a rolled-back write leaves no event)."""
    if action not in AuditAction.values:
        raise ValueError(f"Unknown audit action {action!r}.")
    context = _context.get()
    actor = actor if actor is not None else context.actor
    if obj is not None:
        object_type = object_type or obj._meta.label
        object_id = object_id or obj.pk
        organisation_id = organisation_id or getattr(obj, "organisation_id", None)
    with transaction.atomic():
        head = _lock_head()
        event = AuditEvent(
            at=timezone.now(), actor_id=_user_id(actor), actor_name=getattr(actor, "username", "")[:150] if _user_id(actor) else "",
            organisation_id=organisation_id or context.organisation_id, action=action, surface=surface or context.surface,
            object_type=object_type[:60], object_id=str(object_id or "")[:64], request_id=context.request_id[:64],
            details=details or {}, prev_hash=head.last_hash)
        event.hash = chain_hash(event.prev_hash, _payload(event))
        event.save()
        AuditHead.objects.filter(pk=1).update(last_hash=event.hash)
    return event


@dataclass
class ChainBreak:
    event_id: int | None
    reason: str


def audit_verify() -> tuple[int, ChainBreak | None]:
    """Walk the chain from its anchor; return how many entries were checked and the first break, if any."""
    head = AuditHead.objects.filter(pk=1).first()
    expected = head.anchor_hash if head else GENESIS
    checked = 0
    last = None
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != expected:
            return checked, ChainBreak(event.id, "it does not follow the entry before it (an entry was removed or inserted)")
        if chain_hash(event.prev_hash, _payload(event)) != event.hash:
            return checked, ChainBreak(event.id, "its content no longer matches its hash (it was edited)")
        expected, last = event.hash, event
        checked += 1
    if head is not None and head.last_hash != (last.hash if last else head.anchor_hash):
        return checked, ChainBreak(None, "the newest entries are missing (the chain's head is not the last entry)")
    return checked, None


def audit_purge(*, older_than_days: int | None = None) -> int:
    """Delete entries past retention; the oldest kept entry's prev_hash becomes the trusted anchor."""
    days = older_than_days if older_than_days is not None else settings.PMLM_AUDIT_RETENTION_DAYS
    cutoff = timezone.now() - timedelta(days=days)
    with transaction.atomic():
        _lock_head()
        old = AuditEvent.objects.filter(at__lt=cutoff)
        count = old.count()
        if not count:
            return 0
        oldest_kept = AuditEvent.objects.filter(at__gte=cutoff).order_by("id").first()
        anchor = oldest_kept.prev_hash if oldest_kept else AuditHead.objects.get(pk=1).last_hash
        old.delete()
        AuditHead.objects.filter(pk=1).update(anchor_hash=anchor)
        audit_record(AuditAction.RETENTION_PURGE, details={"deleted": count, "retention_days": days}, surface="system")
    return count


FHIR_ACTIONS = {"view": "R", "export": "R", "api_read": "R", "build": "C", "request": "C", "rate": "C", "ab": "C",
                "import": "C", "admin_change": "U", "admin_delete": "D", "admin_view": "R", "sign": "E", "retention": "D"}


def audit_event_fhir(event: AuditEvent) -> dict:
    """One entry as a FHIR R4 AuditEvent."""
    code = next((c for prefix, c in FHIR_ACTIONS.items() if event.action.startswith(prefix)), "E")
    resource = {
        "resourceType": "AuditEvent", "id": str(event.id),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "urn:pmlm:audit-action", "code": event.action, "display": event.get_action_display()}],
        "action": code, "recorded": event.at.isoformat(), "outcome": "0",
        "agent": [{"who": {"identifier": {"system": "urn:pmlm:user", "value": event.actor_name or "system"}},
                   "requestor": True, "network": {"address": event.request_id or "-", "type": "5"}}],
        "source": {"site": event.surface, "observer": {"display": "PMLM clinic"}},
        "extension": [{"url": "urn:pmlm:audit-hash", "valueString": event.hash}],
    }
    if event.object_type:
        resource["entity"] = [{"what": {"reference": f"{event.object_type}/{event.object_id}"}}]
    return resource


def audit_bundle(events) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": audit_event_fhir(e)} for e in events]}
