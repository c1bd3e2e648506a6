"""Writes a parsed bundle into the clinical record of one organisation.

Called inside one transaction by `patients.services.patient_import_bundle`; raises FhirError for
anything the database would refuse, so the caller rolls the whole bundle back with a message.
Upserts on (organisation, FHIR id): a re-import updates rows in place and creates nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models
from django.utils import timezone

from patients import models as m

from .parse import FhirError, ParsedBundle, ParsedRecord

MODEL_FOR = {
    "Encounter": m.Encounter,
    "Observation": m.Observation,
    "Condition": m.Condition,
    "MedicationRequest": m.MedicationRequest,
    "MedicationStatement": m.MedicationStatement,
    "AllergyIntolerance": m.AllergyIntolerance,
    "Procedure": m.Procedure,
    "Immunization": m.Immunization,
    "CarePlan": m.CarePlan,
}
# Encounters first: the other resources point at them.
STORE_ORDER = [
    "Encounter",
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "AllergyIntolerance",
    "Procedure",
    "Immunization",
    "CarePlan",
]
BATCH = 500


def store_bundle(organisation: m.Organisation, parsed: ParsedBundle) -> dict:
    """Store every record; returns {"Observation": {"created": n, "updated": n}, ..., "skipped": {...}}."""
    counts: dict = {}
    patients = parsed.of_type("Patient")
    for record in parsed.records:
        _check_values(record)

    patient_pks = _upsert(
        m.Patient,
        organisation,
        key_field="external_id",
        rows={r.fhir_id: r.fields for r in patients},
        counts=counts.setdefault("Patient", {"created": 0, "updated": 0}),
    )
    _resolve_outside(organisation, m.Patient, "external_id", parsed.records, "patient", patient_pks, required=True)

    encounter_pks: dict[str, int] = {}
    for resource_type in STORE_ORDER:
        records = parsed.of_type(resource_type)
        if not records:
            continue
        model = MODEL_FOR[resource_type]
        if resource_type != "Encounter":
            _resolve_outside(organisation, m.Encounter, "fhir_id", records, "encounter", encounter_pks, required=False)
        has_encounter = any(f.name == "encounter" for f in model._meta.fields)
        rows = {}
        for record in records:
            fields = dict(record.fields, patient_id=patient_pks[record.patient.fhir_id])
            if has_encounter:
                # A dangling "Encounter/x" outside the bundle is tolerated: the link stays empty.
                fields["encounter_id"] = encounter_pks.get(record.encounter.fhir_id) if record.encounter else None
            rows[record.fhir_id] = fields
        pks = _upsert(
            model,
            organisation,
            key_field="fhir_id",
            rows=rows,
            counts=counts.setdefault(resource_type, {"created": 0, "updated": 0}),
        )
        if resource_type == "Encounter":
            encounter_pks.update(pks)
    if parsed.skipped:
        counts["skipped"] = dict(parsed.skipped)
    return counts


def _upsert(model, organisation, *, key_field: str, rows: dict[str, dict], counts: dict) -> dict[str, int]:
    if not rows:
        return {}
    keys = list(rows)
    existing = set(_existing(model, organisation, key_field, keys))
    now = timezone.now()
    objects = []
    for key, fields in rows.items():
        obj = model(**fields, **{key_field: key})
        obj.organisation = organisation
        obj.updated_at = now
        objects.append(obj)
    # get_field() knows attnames too, so "patient_id" maps to the field "patient".
    update_fields = sorted({model._meta.get_field(k).name for fields in rows.values() for k in fields} | {"updated_at"})
    model.objects.bulk_create(
        objects,
        batch_size=BATCH,
        update_conflicts=True,
        unique_fields=["organisation", key_field],
        update_fields=update_fields,
    )
    counts["created"] += len(keys) - len(existing)
    counts["updated"] += len(existing)
    return _existing(model, organisation, key_field, keys)


def _existing(model, organisation, key_field: str, keys: Iterable[str]) -> dict[str, int]:
    found = {}
    keys = list(keys)
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        found.update(
            model.objects.filter(organisation=organisation, **{f"{key_field}__in": chunk}).values_list(key_field, "pk")
        )
    return found


def _resolve_outside(
    organisation, model, key_field, records: list[ParsedRecord], attr: str, pks: dict[str, int], *, required: bool
):
    """References to records already held ("Patient/123" not in the bundle) resolve to stored rows."""
    wanted = {
        getattr(r, attr).fhir_id
        for r in records
        if getattr(r, attr) is not None and getattr(r, attr).fhir_id not in pks
    }
    if not wanted:
        return
    pks.update(_existing(model, organisation, key_field, wanted))
    if required:
        for record in records:
            ref = getattr(record, attr)
            if ref is not None and ref.fhir_id not in pks:
                raise FhirError(
                    (
                        f"refers to {ref.resource_type}/{ref.fhir_id}, which is neither in this bundle nor held for "
                        "this organisation"
                    ),
                    resource=record.label,
                    field="subject",
                )


def _check_values(record: ParsedRecord):
    """Catch what the database would refuse, naming the field, before anything is written."""
    model = m.Patient if record.resource_type == "Patient" else MODEL_FOR[record.resource_type]
    for name, value in record.fields.items():
        field = model._meta.get_field(name)
        if isinstance(value, str):
            if isinstance(field, models.CharField) and len(value) > field.max_length:
                raise FhirError(f"is longer than {field.max_length} characters", resource=record.label, field=name)
        if _has_nul(value):
            raise FhirError("contains a NUL character", resource=record.label, field=name)
    if len(record.fhir_id) > 64:
        raise FhirError("is longer than 64 characters", resource=record.label, field="id")


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
