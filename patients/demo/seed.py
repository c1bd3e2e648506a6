"""The demo cohort: organisation, users, Synthea patients and generated data (seed_demo).

Re-running is safe: bundles upsert on FHIR ids, and generated rows (source "generated") are
replaced for each patient inside one transaction, so nothing is duplicated and nothing a
clinician entered is touched.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from patients import models as m
from patients.demo.synthea import SYNTHEA_DIR, days_since_export
from patients.fhir.parse import FhirError, parse_bundle
from patients.roles import SITE_ADMIN_GROUP, SITE_SETTINGS_MODELS, site_only_permissions
from patients.services import (
    bundle_paths,
    organisation_get_or_create,
    patient_import_bundle,
    patient_record_changed,
    read_bundle_file,
)
from prompting.pmlm import codes

from . import generator, synthetic
from .catalogue import CARE_ITEMS

DEMO_DATA_DIR = SYNTHEA_DIR
# The shipped Synthea export ends on 2021-03-31; the demo moves it so that it ended a week ago.
DEMO_USERS = (("demo-clinician", m.Role.CLINICIAN), ("demo-curator", m.Role.CURATOR), ("demo-partner", m.Role.PARTNER))
CURATOR_GROUP = "Curators"
CHUNK = 250

GENERATOR_CODES = ("8480-6", "8462-4", "718-7", "2339-0", "39156-5", "72166-2")
BP_PANELS = ("85354-9", "55284-4")


@dataclass
class SeedSummary:
    organisation: str
    password: str = ""
    password_generated: bool = False
    bundles_imported: int = 0
    bundles_rejected: list[str] = field(default_factory=list)
    synthetic_patients: int = 0
    patients: int = 0
    lifestyle_records: int = 0
    care_ratings: int = 0
    recommendations: int = 0
    date_shift_days: int = 0
    knowledge_documents: int = 0

    def lines(self) -> list[str]:
        lines = [
            f"Organisation: {self.organisation}",
            f"Bundles imported: {self.bundles_imported}; rejected: {len(self.bundles_rejected)}",
        ]
        lines += [f"  rejected {reason}" for reason in self.bundles_rejected]
        if self.date_shift_days:
            lines.append(f"Synthea dates moved forward by {self.date_shift_days} days so the record is current")
        if self.synthetic_patients:
            lines.append(f"Synthetic patients added: {self.synthetic_patients}")
        lines += [
            f"Patients: {self.patients}",
            f"Knowledge: {self.knowledge_documents} WHO antenatal decision rules",
            f"Generated: {self.lifestyle_records} lifestyle records, {self.care_ratings} care ratings, "
            f"{self.recommendations} physician recommendations",
            "Users: " + ", ".join(username for username, _ in DEMO_USERS),
            f"Password: {self.password}" + (" (generated)" if self.password_generated else ""),
        ]
        return lines


def demo_seed(
    *,
    seed: int = 7,
    limit: int | None = None,
    password: str | None = None,
    synthetic_patients: int = 0,
    time_shift: bool = True,
    knowledge: bool = True,
    progress=None,
) -> SeedSummary:
    progress = progress or (lambda message: None)
    organisation = organisation_get_or_create(slug=settings.PMLM_DEMO_ORGANISATION, name="Demo Women's Health Clinic")
    summary = SeedSummary(organisation=organisation.slug)
    summary.password_generated = password is None
    summary.password = password or secrets.token_urlsafe(12)
    demo_users_ensure(organisation=organisation, password=summary.password)
    care_items_ensure()

    today = timezone.now().date()
    shift = days_since_export(today) if time_shift else 0
    summary.date_shift_days = shift
    paths = bundle_paths([DEMO_DATA_DIR])
    if limit is not None:
        paths = paths[:limit]
    for number, path in enumerate(paths, 1):
        try:
            parsed = synthetic.shift_dates(parse_bundle(read_bundle_file(path)), shift)
        except FhirError as exc:
            summary.bundles_rejected.append(f"{path.name}: {exc}")
            continue
        result = patient_import_bundle(
            organisation=organisation, bundle=None, parsed=parsed, source=f"seed_demo:{path.name}"
        )
        if result.ok:
            summary.bundles_imported += 1
        else:
            summary.bundles_rejected.append(result.error)
        if number % 25 == 0 or number == len(paths):
            progress(f"Imported {number}/{len(paths)} Synthea bundles")

    for start in range(0, synthetic_patients, CHUNK):
        count = min(CHUNK, synthetic_patients - start)
        parsed = synthetic.synthetic_bundle(start, count, seed, today)
        result = patient_import_bundle(
            organisation=organisation,
            bundle=None,
            parsed=parsed,
            source=f"seed_demo:synthetic {start}-{start + count - 1}",
        )
        if not result.ok:
            raise RuntimeError(f"synthetic patients could not be stored: {result.error}")
        summary.synthetic_patients += count
        progress(f"Synthetic patients {start + count}/{synthetic_patients}")

    if knowledge:
        # The one import of prompting's services from patients, inside the demo seeder: prompting builds on the
        # record (it imports patients), so a top-level import would be a cycle; the knowledge base is prompting's.
        from prompting.knowledge import knowledge_load_who

        summary.knowledge_documents = knowledge_load_who()
        progress(f"Loaded {summary.knowledge_documents} WHO antenatal decision rules as demo knowledge")

    patient_ids = list(m.Patient.objects.filter(organisation=organisation).order_by("pk").values_list("pk", flat=True))
    summary.patients = len(patient_ids)
    for start in range(0, len(patient_ids), CHUNK):
        counts = demo_generate_for_patients(patient_ids=patient_ids[start : start + CHUNK], seed=seed)
        summary.lifestyle_records += counts["lifestyle"]
        summary.care_ratings += counts["ratings"]
        summary.recommendations += counts["recommendations"]
        progress(f"Generated demo data for {min(start + CHUNK, len(patient_ids))}/{len(patient_ids)} patients")
    return summary


def demo_users_ensure(*, organisation: m.Organisation, password: str):
    User = get_user_model()
    curators = curator_group_ensure()
    site_admin_group_ensure()
    for username, role in DEMO_USERS:
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_staff = role == m.Role.CURATOR
        user.first_name = {"demo-clinician": "Demo", "demo-curator": "Demo", "demo-partner": "Partner"}[username]
        user.last_name = {"demo-clinician": "Clinician", "demo-curator": "Curator", "demo-partner": "System"}[username]
        user.save()
        m.Membership.objects.update_or_create(user=user, defaults={"organisation": organisation, "role": role})
        if role == m.Role.CURATOR:
            user.groups.add(curators)


def curator_group_ensure() -> Group:
    """Curators may view, add, change and delete everything in the record, the prompting app, API tokens and the
    EHR clients, but only look at the settings every organisation shares (site administrators change those)."""
    group, _ = Group.objects.get_or_create(name=CURATOR_GROUP)
    group.permissions.set(
        Permission.objects.filter(content_type__app_label__in=("patients", "prompting", "api", "cdshooks")).exclude(
            pk__in=site_only_permissions(Permission)
        )
    )
    return group


def site_admin_group_ensure() -> Group:
    """Site administrators (the deployment's operators) change the settings every organisation shares."""
    group, _ = Group.objects.get_or_create(name=SITE_ADMIN_GROUP)
    group.permissions.set(
        site_only_permissions(Permission)
        | Permission.objects.filter(
            content_type__app_label__in=[app for app, _ in SITE_SETTINGS_MODELS],
            content_type__model__in=[model for _, model in SITE_SETTINGS_MODELS] + ["organisation"],
        )
    )
    return group


def care_items_ensure():
    for item in CARE_ITEMS:
        m.CareItem.objects.update_or_create(
            slug=item.slug, defaults={"name": item.name, "category": item.category, "description": item.description}
        )


def _snapshots(patient_ids: list[int]) -> dict[int, generator.Snapshot]:
    snapshots = {
        pk: generator.Snapshot(external_id=ext, birth_date=birth, language=language)
        for pk, ext, birth, language in m.Patient.objects.filter(pk__in=patient_ids).values_list(
            "pk", "external_id", "birth_date", "language"
        )
    }
    for pid, code, onset, abatement in m.Condition.objects.filter(patient_id__in=patient_ids).values_list(
        "patient_id", "code", "onset_at", "abatement_at"
    ):
        snapshots[pid].conditions.append((code, onset, abatement))
    prenatal = codes.PRENATAL_VISITS
    for pk, pid, code, start in m.Encounter.objects.filter(patient_id__in=patient_ids).values_list(
        "pk", "patient_id", "code", "period_start"
    ):
        snapshots[pid].visits.append(start)
        if code in prenatal:
            snapshots[pid].prenatal_encounters.append((pk, start))
    rows = m.Observation.objects.filter(patient_id__in=patient_ids, code__in=GENERATOR_CODES + BP_PANELS).values_list(
        "patient_id", "code", "effective_at", "value_quantity", "value_code", "components"
    )
    for pid, code, when, quantity, value_code, components in rows:
        if when is None:
            continue
        observations = snapshots[pid].observations
        if code in BP_PANELS:
            for c in components:
                if c.get("code") in ("8480-6", "8462-4") and c.get("value_quantity") is not None:
                    observations.setdefault(c["code"], []).append((when, c["value_quantity"]))
        elif quantity is not None:
            observations.setdefault(code, []).append((when, quantity))
        elif value_code:
            observations.setdefault(code, []).append((when, value_code))
    for pid, code, performed in m.Procedure.objects.filter(
        patient_id__in=patient_ids, code__in=codes.PREGNANCY_ENDING_PROCEDURES
    ).values_list("patient_id", "code", "performed_start"):
        if performed:
            snapshots[pid].pregnancy_ending_procedures.append((code, performed))
            if code == generator.CAESAREAN_CODE:
                snapshots[pid].caesarean_dates.append(performed)
    return snapshots


@transaction.atomic
def demo_generate_for_patients(*, patient_ids: list[int], seed: int) -> dict[str, int]:
    """Replace the generated lifestyle records, care ratings and recommendations of these patients."""
    generated = m.RecordSource.GENERATED
    m.LifestyleRecord.objects.filter(patient_id__in=patient_ids, source=generated).delete()
    m.CareRating.objects.filter(patient_id__in=patient_ids, source=generated).delete()
    m.PhysicianRecommendation.objects.filter(patient_id__in=patient_ids, source=generated).delete()
    written_by_clinicians = set(
        m.PhysicianRecommendation.objects.filter(patient_id__in=patient_ids).values_list("encounter_id", flat=True)
    )
    items = dict(m.CareItem.objects.values_list("slug", "pk"))
    lifestyle, ratings, recommendations = [], [], []
    for pid, snapshot in _snapshots(patient_ids).items():
        out = generator.generate(snapshot, seed)
        seen_times = defaultdict(set)
        for r in out.lifestyle:
            if r["recorded_at"] in seen_times[r["kind"]]:
                continue
            seen_times[r["kind"]].add(r["recorded_at"])
            lifestyle.append(m.LifestyleRecord(patient_id=pid, source=generated, **r))
        seen_ratings = set()
        for r in out.ratings:
            key = (r["item"], r["rated_on"])
            if key in seen_ratings or r["item"] not in items:
                continue
            seen_ratings.add(key)
            ratings.append(
                m.CareRating(
                    patient_id=pid,
                    care_item_id=items[r["item"]],
                    rating=r["rating"],
                    rated_on=r["rated_on"],
                    source=generated,
                )
            )
        for r in out.recommendations:
            if r["encounter"] in written_by_clinicians:
                continue
            recommendations.append(
                m.PhysicianRecommendation(
                    patient_id=pid,
                    encounter_id=r["encounter"],
                    text=r["text"],
                    author=r["author"],
                    written_at=r["written_at"],
                    source=generated,
                )
            )
    m.LifestyleRecord.objects.bulk_create(lifestyle, batch_size=1000)
    m.CareRating.objects.bulk_create(ratings, batch_size=1000)
    m.PhysicianRecommendation.objects.bulk_create(recommendations, batch_size=1000)
    patient_record_changed(patient_ids=patient_ids)
    return {"lifestyle": len(lifestyle), "ratings": len(ratings), "recommendations": len(recommendations)}
