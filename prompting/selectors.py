"""Reads the clinical record into the method's de-identified PatientHistory, as of a date."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from django.db.models import Q

from patients import models as m
from patients.selectors import age_on
from prompting.pmlm import codes
from prompting.pmlm.history import (
    Allergy,
    CareExperience,
    Diagnosis,
    Habit,
    Medication,
    PatientHistory,
    ProcedureDone,
    Reading,
    Visit,
)


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.utc)


def _append_diagnoses(histories: dict, conditions, at, end):
    """Each patient's diagnoses as they stood at `end`, from a Condition queryset (refuted or
    entered-in-error ones left out; abated after `end` means still active then)."""
    for pid, code, display, onset, abatement, status in conditions.exclude(
        verification_status__in=("entered-in-error", "refuted")
    ).values_list("patient_id", "code", "display", "onset_at", "abatement_at", "clinical_status"):
        if onset is not None and onset >= end:
            continue
        abated = abatement is not None and abatement < end
        histories[pid].diagnoses.append(
            Diagnosis(
                code,
                display,
                _days_ago(at, onset),
                _days_ago(at, abatement) if abated else None,
                status if abated or status not in ("resolved", "inactive") else "active",
            )
        )


def _days_ago(at: date, when) -> int | None:
    if when is None:
        return None
    return (at - (when.date() if isinstance(when, datetime) else when)).days


def patient_history(patient: m.Patient, at: date) -> PatientHistory:
    return patient_histories([patient], at)[patient.pk]


def patient_histories(patients: list[m.Patient], at: date) -> dict[int, PatientHistory]:
    """Histories of several patients in a fixed number of queries; nothing after `at` is read."""
    end = _end_of(at)
    ids = [p.pk for p in patients]
    histories = {
        p.pk: PatientHistory(
            age_years=age_on(p.birth_date, at),
            language=p.language,
            deceased=p.deceased_at is not None and p.deceased_at < end,
        )
        for p in patients
    }
    _append_readings(histories, ids, at, end)
    _append_diagnoses(histories, m.Condition.objects.filter(patient_id__in=ids), at, end)
    _append_procedures_and_medicines(histories, ids, at, end)
    _append_visits(histories, ids, at, end)
    _append_habits_and_care(histories, ids, at, end)
    return histories


def _reading(row: dict, days_ago: int | None, encounter, sequence: int) -> Reading:
    """An observation's value (or one component's, which carries the same names) as the method reads it."""
    return Reading(
        code=row.get("code", ""),
        system=row.get("code_system", ""),
        display=row.get("display", ""),
        days_ago=days_ago,
        quantity=row.get("value_quantity"),
        unit=row.get("value_unit", row.get("unit", "")),
        value_code=row.get("value_code", ""),
        value_display=row.get("value_display", ""),
        value_string=row.get("value_string", ""),
        value_boolean=row.get("value_boolean"),
        encounter=encounter,
        sequence=sequence,
    )


def _append_readings(histories: dict, ids: list[int], at: date, end) -> None:
    """Observations in the order they were made; a panel's components are readings of their own; the last
    menstrual period dates her pregnancy instead."""
    observations = (
        m.Observation.objects.filter(patient_id__in=ids, effective_at__lt=end)
        .exclude(status__in=("entered-in-error", "cancelled"))
        .order_by("effective_at", "issued_at", "pk")
        .values(
            "patient_id",
            "code",
            "code_system",
            "display",
            "effective_at",
            "encounter_id",
            "value_quantity",
            "value_unit",
            "value_code",
            "value_display",
            "value_string",
            "value_boolean",
            "components",
        )
    )
    for sequence, row in enumerate(observations):
        h = histories[row["patient_id"]]
        days = _days_ago(at, row["effective_at"])
        if row["code"] == codes.LAST_MENSTRUAL_PERIOD and row["value_string"]:
            lmp = _parse_day(row["value_string"])
            if lmp is not None and lmp <= at:
                h.lmp_days_ago = (at - lmp).days
            continue
        if row["components"]:
            h.readings += [_reading(c, days, row["encounter_id"], sequence) for c in row["components"]]
            if (
                row["value_quantity"] is None
                and not row["value_code"]
                and not row["value_string"]
                and row["value_boolean"] is None
            ):
                continue
        h.readings.append(_reading(row, days, row["encounter_id"], sequence))


def _append_procedures_and_medicines(histories: dict, ids: list[int], at: date, end) -> None:
    for pid, code, display, performed in (
        m.Procedure.objects.filter(patient_id__in=ids, performed_start__lt=end)
        .exclude(status__in=("entered-in-error", "not-done"))
        .values_list("patient_id", "code", "display", "performed_start")
    ):
        histories[pid].procedures.append(ProcedureDone(code, display, _days_ago(at, performed)))
    for pid, code, display, status, authored in m.MedicationRequest.objects.filter(
        patient_id__in=ids, authored_at__lt=end
    ).values_list("patient_id", "code", "display", "status", "authored_at"):
        histories[pid].medications.append(Medication(code, display, status, _days_ago(at, authored), "prescribed"))
    for pid, code, display, status, started in m.MedicationStatement.objects.filter(
        patient_id__in=ids, effective_start__lt=end
    ).values_list("patient_id", "code", "display", "status", "effective_start"):
        histories[pid].medications.append(Medication(code, display, status, _days_ago(at, started), "reported"))
    for pid, code, display, criticality, category, recorded in m.AllergyIntolerance.objects.filter(
        patient_id__in=ids
    ).values_list("patient_id", "code", "display", "criticality", "category", "recorded_at"):
        if recorded is None or recorded < end:
            histories[pid].allergies.append(Allergy(code, display, criticality, category))


def _append_visits(histories: dict, ids: list[int], at: date, end) -> None:
    for pk, pid, code, display, start, reason in m.Encounter.objects.filter(
        patient_id__in=ids, period_start__lt=end
    ).values_list("pk", "patient_id", "code", "display", "period_start", "reason_code"):
        # WHO's antenatal records type the encounter "ANC contact" and give the prenatal visit as its reason.
        prenatal = code in codes.PRENATAL_VISITS or reason in codes.PRENATAL_VISITS
        histories[pid].visits.append(Visit(code, display, _days_ago(at, start), prenatal, pk))


def _append_habits_and_care(histories: dict, ids: list[int], at: date, end) -> None:
    labels = dict(m.LifestyleKind.choices)
    for pid, kind, value, quantity, unit, recorded in m.LifestyleRecord.objects.filter(
        patient_id__in=ids, recorded_at__lt=end
    ).values_list("patient_id", "kind", "value", "quantity", "unit", "recorded_at"):
        histories[pid].habits.append(
            Habit(
                kind, labels.get(kind, kind), value, _days_ago(at, recorded), quantity, unit, kind in m.PREFERENCE_KINDS
            )
        )
    for pid, slug, name, rating, rated_on in m.CareRating.objects.filter(
        patient_id__in=ids, rated_on__lte=at
    ).values_list("patient_id", "care_item__slug", "care_item__name", "rating", "rated_on"):
        histories[pid].care.append(CareExperience(slug, name, rating, _days_ago(at, rated_on)))


PREGNANCY_DATING_READINGS = codes.GESTATIONAL_AGE | codes.PREGNANCY_ONLY_FINDINGS | {codes.LAST_MENSTRUAL_PERIOD}
PREGNANCY_EPISODE_CONDITIONS = codes.PREGNANCY_CONDITIONS | codes.PREGNANCY_ENDING_CONDITIONS


def pregnancy_histories(patient_ids: list[int], at: date, chunk: int = 500) -> dict[int, PatientHistory]:
    """Only what dates each patient's pregnancies — gestational age, pregnancy-only findings, last
    menstrual period, pregnancy conditions and what ended them, antenatal and postnatal encounters —
    as of `at`, for many patients in a few queries: enough to tell her pregnancy on any earlier day
    (`PatientHistory.as_of`) without reading her whole record."""
    end = _end_of(at)
    histories = {pid: PatientHistory(age_years=None) for pid in patient_ids}
    for start in range(0, len(patient_ids), chunk):
        ids = patient_ids[start : start + chunk]
        for pid, code, when, quantity, unit, v_string in (
            m.Observation.objects.filter(patient_id__in=ids, effective_at__lt=end, code__in=PREGNANCY_DATING_READINGS)
            .exclude(status__in=("entered-in-error", "cancelled"))
            .order_by("effective_at", "issued_at", "pk")
            .values_list("patient_id", "code", "effective_at", "value_quantity", "value_unit", "value_string")
        ):
            h = histories[pid]
            if code == codes.LAST_MENSTRUAL_PERIOD:
                lmp = _parse_day(v_string) if v_string else None
                if lmp is not None and lmp <= at:
                    h.lmp_days_ago = (at - lmp).days
            else:
                h.readings.append(Reading(code=code, days_ago=_days_ago(at, when), quantity=quantity, unit=unit))
        _append_diagnoses(
            histories, m.Condition.objects.filter(patient_id__in=ids, code__in=PREGNANCY_EPISODE_CONDITIONS), at, end
        )
        for pid, code, display, performed in (
            m.Procedure.objects.filter(
                patient_id__in=ids, performed_start__lt=end, code__in=codes.PREGNANCY_ENDING_PROCEDURES
            )
            .exclude(status__in=("entered-in-error", "not-done"))
            .values_list("patient_id", "code", "display", "performed_start")
        ):
            histories[pid].procedures.append(ProcedureDone(code, display, _days_ago(at, performed)))
        for pk, pid, code, display, when, reason in m.Encounter.objects.filter(
            Q(code__in=codes.PRENATAL_VISITS | codes.POSTNATAL_VISITS) | Q(reason_code__in=codes.PRENATAL_VISITS),
            patient_id__in=ids,
            period_start__lt=end,
        ).values_list("pk", "patient_id", "code", "display", "period_start", "reason_code"):
            prenatal = code in codes.PRENATAL_VISITS or reason in codes.PRENATAL_VISITS
            histories[pid].visits.append(Visit(code, display, _days_ago(at, when), prenatal, pk))
    return histories


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def patient_identifiers(patient: m.Patient) -> list[str]:
    """Every identifying string held for her: the de-identification guard removes them from prompts."""
    found = [patient.given_names, patient.family_name, patient.display_name, patient.external_id]
    found += patient.given_names.split()
    found += [i.get("value", "") for i in patient.identifiers]
    found += [t.get("value", "") for t in patient.telecom]
    for address in patient.address:
        found += list(address.get("line", [])) + [address.get("city", ""), address.get("postalCode", "")]
    if patient.birth_date:
        b = patient.birth_date
        found += [
            b.isoformat(),
            b.strftime("%d/%m/%Y"),
            b.strftime("%m/%d/%Y"),
            b.strftime("%d %B %Y"),
            b.strftime("%B %d, %Y"),
            f"{b.day} {b.strftime('%B %Y')}",
            f"{b.strftime('%B')} {b.day}, {b.year}",
        ]
    return sorted({s.strip() for s in found if s and len(s.strip()) >= 2}, key=len, reverse=True)
