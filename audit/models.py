"""The audit trail: who read or wrote which patient data, when, through which surface.

Entries form a keyed hash chain: each one's hash is an HMAC, under a key kept outside the database
(PMLM_AUDIT_KEY), of the previous hash and its own content, so an edited, inserted or deleted entry
breaks the chain at that point (`verify_audit`), even for someone who can rewrite every row. The chained
content holds ids and codes only, never a name, an identifier or clinical free text.
"""

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    VIEW_PATIENT_LIST = "view_patient_list", "Viewed the patient list"
    VIEW_PATIENT = "view_patient", "Viewed a patient's record"
    BUILD_PROMPT = "build_prompt", "Built a personalised prompt"
    REQUEST_GUIDANCE = "request_guidance", "Requested guidance"
    VIEW_GUIDANCE = "view_guidance", "Viewed guidance"
    RATE_GUIDANCE = "rate_guidance", "Rated guidance"
    AB_COMPARE = "ab_compare", "Started a blinded comparison"
    AB_PICK = "ab_pick", "Picked in a blinded comparison"
    IMPORT_BUNDLE = "import_bundle", "Imported a FHIR bundle"
    EXPORT_BUNDLE = "export_bundle", "Exported a patient as FHIR"
    EXPORT_CSV = "export_csv", "Exported rows as CSV"
    API_READ = "api_read", "Read through the API"
    ADMIN_VIEW = "admin_view", "Viewed in the admin"
    ADMIN_CHANGE = "admin_change", "Changed in the admin"
    ADMIN_DELETE = "admin_delete", "Deleted in the admin"
    SIGN_IN = "sign_in", "Signed in"
    SIGN_IN_FAILED = "sign_in_failed", "Sign-in failed"
    RETENTION_PURGE = "retention_purge", "Purged entries past retention"
    ACCESS_DENIED = "access_denied", "Was refused access outside their organisation"
    ROLE_CHANGE = "role_change", "Changed a member's role"
    CDS_HOOK = "cds_hook", "Answered an EHR's CDS Hooks call"
    CDS_HOOK_REFUSED = "cds_hook_refused", "Refused a CDS Hooks call that failed authentication"
    SMART_LAUNCH = "smart_launch", "Opened a workspace from an EHR launch"


class AuditContent(models.Model):
    """What an entry says: who, which organisation, what, through which surface, on which object. Ids and codes only."""

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="The username then (kept if the account goes).")
    organisation = models.ForeignKey(
        "patients.Organisation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=30, choices=AuditAction.choices, db_index=True)
    surface = models.CharField(max_length=20, help_text="page, api, admin, ehr, command or worker")
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="A database id, never a name or MRN."
    )
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True, help_text="Counts, codes and ids only.")

    class Meta:
        abstract = True


class AuditInbox(AuditContent):
    """Entries written but not yet linked into the chain. A request writes its entry here in one INSERT, inside its
    own transaction (a rolled-back write leaves none); `audit_link` moves them into the chain in batches, in the
    order they were written, under one lock. Verifying, anchoring, exporting and purging link first.

    No index but the key: it is written on every read of patient data and read only in order."""

    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    organisation = models.ForeignKey(
        "patients.Organisation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    action = models.CharField(max_length=30, choices=AuditAction.choices)
    object_id = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "audit inbox"


class AuditEvent(AuditContent):
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(
        max_length=16,
        blank=True,
        default="",
        help_text="Fingerprint of the key that hashed it (never the key); empty: plain SHA-256, before keying.",
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["organisation", "at"])]

    def __str__(self):
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} "
            f"{self.object_type} {self.object_id}"
        )


class AuditHead(models.Model):
    """A single row: the chain's last hash (appends lock it) and the anchor a retention purge leaves, sealed with
    the key."""

    last_hash = models.CharField(max_length=64)
    anchor_hash = models.CharField(
        max_length=64, help_text="prev_hash of the oldest kept entry, trusted after a purge."
    )
    key_id = models.CharField(max_length=16, blank=True, default="")
    seal = models.CharField(max_length=64, blank=True, default="", help_text="HMAC of anchor_hash and last_hash.")
