"""Periodic audit work: beat links written entries into the chain every few seconds, and writes the chain's signed
head outside the database every hour."""

from celery import shared_task


@shared_task
def anchor_audit_task() -> str:
    """Verify the chain and anchor its head (nothing new is written when the head has not moved)."""
    from audit.services import audit_anchor

    path = audit_anchor()
    return str(path) if path else ""


@shared_task(expires=30)
def link_audit_task() -> int:
    """Link the entries waiting in the inbox (those no request linked: the last ones before a quiet spell)."""
    from audit.services import audit_link

    return len(audit_link())
