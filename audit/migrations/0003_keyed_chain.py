"""Seal the existing audit chain under PMLM_AUDIT_KEY: verify it by the plain SHA-256 rule it was
written with, and only when it is intact re-hash every entry under the key. A broken chain is left
as it is (sealing would make a forgery permanent) and verify_audit keeps reporting it."""

import sys

from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from audit.services import AuditChainBroken, audit_keyring, chain_seal

    event_model, head_model = apps.get_model("audit", "AuditEvent"), apps.get_model("audit", "AuditHead")
    if not event_model.objects.exists() and not head_model.objects.exists():
        return
    try:
        chain_seal(event_model, head_model, audit_keyring())
    except AuditChainBroken as exc:
        sys.stderr.write(f"\n  The audit chain was NOT sealed under PMLM_AUDIT_KEY. {exc}\n"
                         "  verify_audit reports it; investigate before anything else, then run seal_audit once it is resolved.\n")


def unseal(apps, schema_editor):
    """Back to plain SHA-256, for the release before keying (only from an intact keyed chain)."""
    from audit.services import audit_keyring, chain_seal

    event_model, head_model = apps.get_model("audit", "AuditEvent"), apps.get_model("audit", "AuditHead")
    if event_model.objects.exists() or head_model.objects.exists():
        chain_seal(event_model, head_model, audit_keyring(), unkeyed=True)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_access_denied_and_role_change")]
    operations = [
        migrations.AddField(
            model_name="auditevent", name="key_id",
            field=models.CharField(blank=True, default="", max_length=16, help_text=(
                "Fingerprint of the key that hashed it (never the key); empty: plain SHA-256, before keying."))),
        migrations.AddField(model_name="audithead", name="key_id", field=models.CharField(blank=True, default="", max_length=16)),
        migrations.AddField(model_name="audithead", name="seal", field=models.CharField(
            blank=True, default="", max_length=64, help_text="HMAC of anchor_hash and last_hash.")),
        migrations.RunPython(seal_existing, unseal),
    ]
