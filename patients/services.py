"""Writes to the clinical record. Every surface (command, admin, API, task) calls these."""

from __future__ import annotations

import gzip
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from audit.models import AuditAction
from audit.services import audit_record
from patients.fhir.parse import FhirError, ParsedBundle, parse_bundle
from patients.fhir.store import store_bundle
from patients.jobs import job_claim, job_claimed, job_fail, job_finish
from patients.models import (
    BundleImport,
    Condition,
    Encounter,
    ImportJob,
    ImportStatus,
    Organisation,
    Patient,
    Procedure,
)
from patients.pregnancy import pregnancy_status
from patients.tasks import run_import_job
from pmlm_site import safejson
from prompting.pmlm import codes

logger = logging.getLogger(__name__)


@dataclass
class BundleResult:
    source: str
    ok: bool
    error: str = ""
    error_resource: str = ""  # for a FHIR error: which resource and field (an API answers with an OperationOutcome)
    error_field: str = ""
    counts: dict = field(default_factory=dict)
    patient_external_ids: list[str] = field(default_factory=list)
    bundle_import_id: int | None = None

    def summary(self) -> str:
        if not self.ok:
            return f"REJECTED {self.source}: {self.error}"
        created = sum(c["created"] for k, c in self.counts.items() if k != "skipped")
        updated = sum(c["updated"] for k, c in self.counts.items() if k != "skipped")
        skipped = sum(self.counts.get("skipped", {}).values())
        return f"imported {self.source}: {created} created, {updated} updated, {skipped} skipped"


def organisation_get_or_create(*, slug: str, name: str = "") -> Organisation:
    slug = slugify(slug)
    if not slug:
        raise ValueError("An organisation needs a slug of letters, digits or hyphens.")
    organisation, _ = Organisation.objects.get_or_create(
        slug=slug, defaults={"name": name or slug.replace("-", " ").title()}
    )
    return organisation


def read_bundle_file(path: Path) -> dict:
    """Read a .json or .json.gz bundle, refusing oversized files before decoding them."""
    limit = settings.PMLM_MAX_BUNDLE_BYTES
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(limit + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise FhirError(f"cannot be read: {exc}") from None
    if len(raw) > limit:
        raise FhirError(f"is larger than the {limit // (1024 * 1024)} MiB limit for one bundle")
    return decode_bundle(raw)


def decode_bundle(raw: bytes) -> dict:
    try:
        return safejson.loads(raw)
    except safejson.JsonTooDeep as exc:
        raise FhirError(f"is not a bundle this importer reads: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FhirError(f"is not valid JSON: {exc}") from None


def patient_import_bundle(
    *, organisation: Organisation, bundle, source: str, user=None, parsed: ParsedBundle | None = None
) -> BundleResult:
    """Import one Bundle all-or-nothing; the outcome is recorded as a BundleImport either way."""
    started = time.monotonic()
    result = BundleResult(source=source, ok=False)
    try:
        if parsed is None:
            try:
                parsed = parse_bundle(bundle, max_entries=settings.PMLM_MAX_BUNDLE_ENTRIES)
            except (TypeError, KeyError, AttributeError, IndexError, ValueError) as exc:
                if isinstance(exc, FhirError):
                    raise
                # A shape the parser did not foresee: still a clear refusal, and logged so the parser learns it.
                logger.exception("Unexpected bundle shape")
                raise FhirError(
                    f"has a shape this importer cannot read ({exc.__class__.__name__}: {str(exc)[:200]})"
                ) from None
        with transaction.atomic():
            result.counts = store_bundle(organisation, parsed)
            result.patient_external_ids = sorted({r.fhir_id for r in parsed.of_type("Patient")})
            touched = _touched_patient_ids(organisation, parsed)
            patient_refresh_summary(patient_ids=touched)
            result.ok = True
            _record(organisation, result, user, started)
    except FhirError as exc:
        result.error, result.error_resource, result.error_field = str(exc), exc.resource, exc.field
    except DatabaseError as exc:  # refused by the database after all: still nothing written
        result.ok, result.counts, result.patient_external_ids = False, {}, []
        result.error = f"the database refused the bundle: {exc}".strip()
    except (
        Exception
    ) as exc:  # a fault of ours: this bundle is refused and recorded (logged), the next ones still import
        logger.exception("Unexpected failure importing %s", source)
        result.ok, result.counts, result.patient_external_ids = False, {}, []
        result.error = (
            f"could not be imported because of an unexpected error ({exc.__class__.__name__}); it has been logged"
        )
    if not result.ok:
        _record(organisation, result, user, started)
    return result


def _record(organisation, result: BundleResult, user, started: float):
    """The import's own row, and its audit event (ids and counts only)."""
    _record_import(organisation, result, user, started)
    audit_record(
        AuditAction.IMPORT_BUNDLE,
        object_type="patients.BundleImport",
        object_id=result.bundle_import_id or "",
        actor=user,
        organisation_id=organisation.pk,
        details={"ok": result.ok, "patients": len(result.patient_external_ids)},
    )


def _record_import(organisation, result: BundleResult, user, started: float):
    result.bundle_import_id = BundleImport.objects.create(
        organisation=organisation,
        source=result.source[:500],
        status=ImportStatus.IMPORTED if result.ok else ImportStatus.REJECTED,
        error=result.error,
        counts=result.counts,
        patient_external_ids=result.patient_external_ids,
        imported_by=user if user is not None and user.is_authenticated else None,
        duration_ms=int((time.monotonic() - started) * 1000),
    ).pk


def _touched_patient_ids(organisation, parsed: ParsedBundle) -> list[int]:
    external = {r.fhir_id for r in parsed.of_type("Patient")} | {r.patient.fhir_id for r in parsed.records if r.patient}
    return list(
        Patient.objects.filter(organisation=organisation, external_id__in=external).values_list("pk", flat=True)
    )


def bundle_paths(paths: list[str | Path]) -> list[Path]:
    """Files named, and .json / .json.gz files inside folders named, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz"))))
        else:
            found.append(path)
    return found


def fhir_import_paths(
    *, organisation: Organisation, paths: list[str | Path], user=None, on_result=None
) -> list[BundleResult]:
    """Import every bundle; a bad one is rejected alone and the others still import."""
    results = []
    for path in bundle_paths(paths):
        try:
            bundle = read_bundle_file(path)
        except FhirError as exc:
            result = BundleResult(source=str(path), ok=False, error=f"{path.name} {exc}")
            _record(organisation, result, user, time.monotonic())
        else:
            result = patient_import_bundle(organisation=organisation, bundle=bundle, source=str(path), user=user)
            if not result.ok:
                result.error = f"{path.name}: {result.error}"
        results.append(result)
        if on_result:
            on_result(result)
    return results


def import_job_create(*, organisation: Organisation, upload, user=None) -> ImportJob:
    """Store an uploaded bundle and queue its import; the worker starts once the row is committed."""
    job = ImportJob.objects.create(organisation=organisation, upload=upload, created_by=user)
    import_job_queue(job=job)
    return job


def import_job_queue(*, job: ImportJob):
    transaction.on_commit(lambda: run_import_job.delay(job.pk))


def import_job_run(*, job_id: int) -> str:
    """Run one import job. Safe to repeat: a finished job is left alone, and imports upsert."""
    job = job_claim(ImportJob, job_id, progress=10, message="Importing")
    if job is None:
        return ImportJob.objects.get(pk=job_id).status
    results = fhir_import_paths(organisation=job.organisation, paths=[job.upload.path], user=job.created_by)
    result = results[0] if results else BundleResult(source=job.upload.name, ok=False, error="the upload is missing")
    # Only while it is still this claim's: a job the sweep failed meanwhile stays failed with the sweep's reason.
    if result.ok:
        job_finish(job, message=result.summary(), bundle_import_id=result.bundle_import_id)
    else:
        job_claimed(job).update(bundle_import_id=result.bundle_import_id)
        job_fail(job, result.error)
    return ImportJob.objects.get(pk=job.pk).status


# --- the patient summary kept for lists ---------------------------------------------------------


def patient_refresh_summary(*, patient_ids: list[int]):
    """Recompute what lists filter on: her pregnancy as her record page tells it, and the last encounter.

    Her pregnancy is read by the method itself (`current_pregnancy`, as of today), so the list and the API never
    call "not pregnant" a woman her record calls pregnant: dated by a gestational-age observation, her last
    menstrual period or the pregnancy episode (the start is stored, and her gestational age moves on with the
    days), or undated, proven by antenatal care or a pregnancy-only finding (the day of that evidence is stored:
    she counts as pregnant for 8 weeks after it). Not pregnant, the latest episode is kept as it was recorded."""
    if not patient_ids:
        return
    from prompting.pmlm.state import current_pregnancy  # the method: plain Python
    from prompting.selectors import pregnancy_histories  # what dates her pregnancies, a few queries for all

    today = timezone.now().date()
    starts: dict[int, list] = {}
    for pid, code, onset, abatement in Condition.objects.filter(
        patient_id__in=patient_ids, code__in=codes.PREGNANCY_CONDITIONS | codes.PREGNANCY_ENDING_CONDITIONS
    ).values_list("patient_id", "code", "onset_at", "abatement_at"):
        starts.setdefault(pid, []).append((code, onset, abatement))
    procedures: dict[int, list] = {}
    for pid, performed in Procedure.objects.filter(
        patient_id__in=patient_ids, code__in=codes.PREGNANCY_ENDING_PROCEDURES
    ).values_list("patient_id", "performed_start"):
        if performed:
            procedures.setdefault(pid, []).append(performed.date())
    last_encounters = dict(
        Encounter.objects.filter(patient_id__in=patient_ids)
        .values("patient_id")
        .annotate(last=Max("period_start"))
        .values_list("patient_id", "last")
    )
    histories = pregnancy_histories(list(patient_ids), today)
    patients = list(Patient.objects.filter(pk__in=patient_ids))
    for patient in patients:
        now = current_pregnancy(histories[patient.pk])
        start, end = pregnancy_episode(starts.get(patient.pk, []), procedures.get(patient.pk, []))
        evidence = None
        if now.dated:
            start, end = today - timedelta(days=now.gestational_days), None
        elif now.pregnant:
            start, end, evidence = None, None, today - timedelta(days=now.evidence_days_ago)
        elif pregnancy_status(start, end, today).pregnant:  # an episode the method does not read as ongoing
            start = end = None
        patient.pregnancy_start, patient.pregnancy_end, patient.pregnancy_evidence_at = start, end, evidence
        patient.last_encounter_at = last_encounters.get(patient.pk)
    Patient.objects.bulk_update(
        patients,
        ["pregnancy_start", "pregnancy_end", "pregnancy_evidence_at", "last_encounter_at"],
        batch_size=500,
    )
    patient_record_changed(patient_ids=patient_ids)


def patient_record_changed(*, patient_ids=None, organisation_id: int | None = None) -> int:
    """Raise the record version of these patients (or of every patient of an organisation): what was cached
    from their records is no longer read. Every write to a record calls it, in the writer's transaction:
    single rows through signals (patients.signals), bulk writes (imports, demo data, peer training) directly."""
    patients = Patient.objects.all()
    if patient_ids is not None:
        patients = patients.filter(pk__in=patient_ids if isinstance(patient_ids, QuerySet) else list(patient_ids))
    if organisation_id is not None:
        patients = patients.filter(organisation_id=organisation_id)
    if patient_ids is None and organisation_id is None:
        raise ValueError("Say whose records changed.")
    return patients.update(record_version=F("record_version") + 1)


def pregnancy_episode(conditions: list[tuple], end_procedures: list[date]) -> tuple[date | None, date | None]:
    """The latest pregnancy episode as (start, end) from (code, onset, abatement) conditions.

    It starts at the onset of the latest pregnancy condition, reaching back to the onset of an
    overlapping one (pre-eclampsia is recorded inside a normal pregnancy). It ends at the first
    of: that condition's abatement, a later pregnancy-ending condition (miscarriage, ectopic) or
    procedure (delivery, caesarean). End is None when nothing closed it; readers cap an open
    episode at MAX_PREGNANCY_DAYS.
    """
    episodes = [
        (onset.date(), abatement.date() if abatement else None)
        for code, onset, abatement in conditions
        if code in codes.PREGNANCY_CONDITIONS and onset
    ]
    if not episodes:
        return None, None
    latest = max(start for start, _ in episodes)
    span = timedelta(days=codes.MAX_PREGNANCY_DAYS)
    overlapping = [(s, e) for s, e in episodes if latest - span < s <= latest and (e is None or e >= latest)]
    start = min(s for s, _ in overlapping)
    ends = [e for s, e in overlapping if e is not None]
    ends += [
        onset.date()
        for code, onset, _ in conditions
        if code in codes.PREGNANCY_ENDING_CONDITIONS and onset and onset.date() >= start
    ]
    ends += [d for d in end_procedures if d >= start]
    return start, (min(ends) if ends else None)
