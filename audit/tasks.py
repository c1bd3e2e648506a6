"""The periodic anchor: beat writes the chain's signed head outside the database every hour."""

from celery import shared_task


@shared_task
def anchor_audit_task() -> str:
    """Verify the chain and anchor its head (nothing new is written when the head has not moved)."""
    from audit.services import audit_anchor

    path = audit_anchor()
    return str(path) if path else ""
