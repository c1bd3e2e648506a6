"""Reads of the clinical record, always within the organisation of the person asking."""

from __future__ import annotations

from datetime import date, timedelta

from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, Q, QuerySet, Value, When
from django.http import Http404

from audit.services import audit_denied
from patients import models as m
from patients.pregnancy import PregnancyStatus, pregnancy_status, start_window_for_trimester
from prompting.pmlm.codes import MAX_PREGNANCY_DAYS, UNDATED_PREGNANCY_EVIDENCE_DAYS
from prompting.pmlm.trends import care_engagement

PAGE_ROLES = {m.Role.CLINICIAN, m.Role.CURATOR, m.Role.ADMIN}
CURATION_ROLES = {m.Role.CURATOR, m.Role.ADMIN}


def membership_for(user) -> m.Membership:
    """The caller's membership; people without one (or partner accounts on pages) get nothing."""
    membership = getattr(user, "membership", None) if user.is_authenticated else None
    if membership is None:
        raise PermissionDenied("Your account is not a member of any organisation.")
    return membership


def page_membership_for(user) -> m.Membership:
    membership = membership_for(user)
    if membership.role not in PAGE_ROLES:
        raise PermissionDenied("Partner service accounts use the API, not the clinic's pages.")
    return membership


def curation_membership_for(user) -> m.Membership:
    """Curators and admins: they train, compare and promote the models the clinic uses."""
    membership = page_membership_for(user)
    if membership.role not in CURATION_ROLES:
        raise PermissionDenied("Only curators and admins manage the clinic's models.")
    return membership


# What a row of a patient list shows, on the page and in the API, and what scoping and ordering need: never her
# identifiers, address or contact details (JSON a list does not show).
ROW_FIELDS = (
    "pk",
    "organisation_id",
    "external_id",
    "given_names",
    "family_name",
    "birth_date",
    "gender",
    "deceased_at",
    "language",
    "pregnancy_start",
    "pregnancy_end",
    "pregnancy_evidence_at",
    "last_encounter_at",
    "updated_at",
)


def patient_rows(patients: QuerySet[m.Patient]) -> QuerySet:
    """Her list's rows as named tuples of ROW_FIELDS: read as a patient's attributes (`row.family_name`), without a
    model instance built for each (a sixth of the API list's time went there). For showing only: a row has no
    methods and cannot be saved."""
    return patients.values_list(*ROW_FIELDS, named=True)


def patient_list(
    *,
    organisation: m.Organisation,
    query: str = "",
    pregnant: bool | None = None,
    trimester: int | None = None,
    on: date,
    living_only: bool = False,
    pregnant_first: bool = False,
) -> QuerySet[m.Patient]:
    """Her organisation's patients matching the filters, by name; the clinic's pages ask for living
    patients with current pregnancies first (the API lists everyone by name)."""
    patients = m.Patient.objects.filter(organisation=organisation)
    if living_only:
        patients = patients.filter(deceased_at__isnull=True)
    for term in query.replace("\x00", "").split():  # PostgreSQL refuses NUL in any string
        patients = patients.filter(
            Q(given_names__icontains=term) | Q(family_name__icontains=term) | Q(external_id__istartswith=term)
        )
    dated_now = Q(pregnancy_start__lte=on, pregnancy_start__gt=on - timedelta(days=MAX_PREGNANCY_DAYS)) & (
        Q(pregnancy_end__isnull=True) | Q(pregnancy_end__gt=on)
    )
    # Pregnant, gestational age not recorded: antenatal care or a pregnancy-only finding in the last 8 weeks.
    undated_now = Q(
        pregnancy_start__isnull=True,
        pregnancy_evidence_at__lte=on,
        pregnancy_evidence_at__gte=on - timedelta(days=UNDATED_PREGNANCY_EVIDENCE_DAYS),
    )
    pregnant_now = dated_now | undated_now
    if trimester is not None:
        lower, upper = start_window_for_trimester(trimester, on)
        patients = patients.filter(dated_now, pregnancy_start__gt=lower, pregnancy_start__lte=upper)
    elif pregnant is True:
        patients = patients.filter(pregnant_now)
    elif pregnant is False:
        patients = patients.exclude(pregnant_now)
    if pregnant_first:
        patients = patients.alias(pregnant_now=Case(When(pregnant_now, then=Value(0)), default=Value(1)))
        return patients.order_by("pregnant_now", "family_name", "given_names", "pk")
    return patients.order_by("family_name", "given_names", "pk")


def get_or_404_audited(queryset: QuerySet, *, object_id, anywhere: dict, **lookup):
    """The object the caller may reach (`lookup` within `queryset`), or 404. A refusal is audited
    (access_denied) with the id asked for, and whether the object exists at all (`anywhere`)."""
    model = queryset.model
    try:
        return queryset.get(**lookup)
    except model.DoesNotExist:
        pass
    held = model._default_manager.filter(**anywhere).exists()
    audit_denied(
        object_type=model._meta.label,
        object_id=object_id,
        reason="exists outside the caller's organisation or patient" if held else "no such object",
    )
    raise Http404(f"No such {model._meta.verbose_name} in your organisation.")


def patient_get(*, organisation: m.Organisation, pk: int) -> m.Patient:
    """A patient of this organisation; any other patient does not exist for the caller (404, audited)."""
    return get_or_404_audited(
        m.Patient.objects.all(), object_id=pk, anywhere={"pk": pk}, organisation=organisation, pk=pk
    )


def patient_pregnancy(patient: m.Patient, on: date) -> PregnancyStatus:
    return pregnancy_status(patient.pregnancy_start, patient.pregnancy_end, on, patient.pregnancy_evidence_at)


def age_on(birth_date: date | None, on: date) -> int | None:
    if birth_date is None:
        return None
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def patient_age(patient: m.Patient, on: date) -> int | None:
    """Her age today, or at death."""
    return age_on(patient.birth_date, patient.deceased_at.date() if patient.deceased_at else on)


KEY_OBSERVATIONS = (
    ("85354-9", "Blood pressure"),
    ("55284-4", "Blood pressure"),
    ("8480-6", "Systolic BP"),
    ("8462-4", "Diastolic BP"),
    ("29463-7", "Weight"),
    ("8302-2", "Height"),
    ("39156-5", "BMI"),
    ("718-7", "Haemoglobin"),
    ("2339-0", "Blood glucose"),
    ("2345-7", "Plasma glucose"),
    ("1558-6", "Fasting glucose"),
    ("72166-2", "Smoking status"),
    ("20454-5", "Urine protein"),
    ("55283-6", "Fetal heart rate"),
    ("11881-0", "Fundal height"),
    ("49051-6", "Gestational age"),
)


def patient_latest_observations(patient: m.Patient) -> list[tuple[str, m.Observation]]:
    """The latest value of each key vital and lab, in a clinician's reading order."""
    codes = [code for code, _ in KEY_OBSERVATIONS]
    latest: dict[str, m.Observation] = {}
    for obs in m.Observation.objects.filter(patient=patient, code__in=codes).order_by("code", "-effective_at"):
        latest.setdefault(obs.code, obs)
    shown, labels = [], set()
    for code, label in KEY_OBSERVATIONS:
        if code in latest and label not in labels:
            shown.append((label, latest[code]))
            labels.add(label)
    return shown


def patient_encounters(patient: m.Patient, limit: int = 40):
    return (
        m.Encounter.objects.filter(patient=patient)
        .annotate(observation_count=Count("observations"))
        .select_related("physician_recommendation")
        .order_by("-period_start")[:limit]
    )


def patient_lifestyle_timeline(patient: m.Patient) -> list[dict]:
    """Each behaviour or preference with its history, newest first, marking changes."""
    by_kind: dict[str, list[m.LifestyleRecord]] = {}
    for record in m.LifestyleRecord.objects.filter(patient=patient).order_by("kind", "recorded_at"):
        by_kind.setdefault(record.kind, []).append(record)
    timeline = []
    for kind, label in m.LifestyleKind.choices:
        records = by_kind.get(kind)
        if not records:
            continue
        timeline.append(
            {
                "kind": kind,
                "label": label,
                "current": records[-1],
                "history": list(reversed(records)),
                "preference": kind in m.PREFERENCE_KINDS,
                "changes": len(records) - 1,
            }
        )
    return timeline


def patient_care_history(patient: m.Patient) -> list[dict]:
    """Each care item she rated, with her ratings in time order and whether she kept it up."""
    by_item: dict[int, dict] = {}
    for rating in m.CareRating.objects.filter(patient=patient).select_related("care_item").order_by("rated_on", "pk"):
        entry = by_item.setdefault(rating.care_item_id, {"item": rating.care_item, "ratings": []})
        entry["ratings"].append(rating)
    history = []
    for entry in by_item.values():
        scores = [r.rating for r in entry["ratings"]]
        entry["latest"] = entry["ratings"][-1]
        entry["engagement"] = care_engagement(scores)
        history.append(entry)
    return sorted(history, key=lambda e: (-e["latest"].rating, e["item"].name))
