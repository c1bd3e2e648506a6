"""A patient's record as a FHIR R4 transaction Bundle, built from the stored fields.

The inverse of parse.py for everything the record keeps, so export → import reproduces the
same rows (tests/test_fhir_roundtrip.py). References use urn:uuid fullUrls within the bundle.
"""

from __future__ import annotations

from datetime import date, datetime

from patients import models as m


def _when(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _concept(system: str, code: str, display: str) -> dict:
    concept: dict = {}
    if code:
        coding = {"system": system, "code": code} if system else {"code": code}
        if display:
            coding["display"] = display
        concept["coding"] = [coding]
    if display:
        concept["text"] = display
    return concept


def _record_concept(row) -> dict:
    return _concept(row.code_system, row.code, row.display)


def _drop_empty(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if v not in (None, "", [], {})}


def _urn(resource_type: str, fhir_id: str) -> str:
    # Stable within one export; the id itself travels in resource.id.
    return f"urn:uuid:{resource_type.lower()}-{fhir_id}"


def _status_concept(code: str, system: str) -> dict | None:
    return {"coding": [{"system": system, "code": code}]} if code else None


def _value(prefix_source) -> dict:
    """value[x] from an Observation row or a component dict (which names the unit "unit")."""
    get = prefix_source.get if isinstance(prefix_source, dict) else lambda k, d=None: getattr(prefix_source, k, d)
    quantity = get("value_quantity")
    if quantity is not None:
        unit = get("unit", None) if isinstance(prefix_source, dict) else get("value_unit")
        q = {"value": quantity}
        if unit:
            q.update(unit=unit, system="http://unitsofmeasure.org", code=unit)
        return {"valueQuantity": q}
    if get("value_code") or get("value_display"):
        return {
            "valueCodeableConcept": _concept(
                get("value_code_system") or "", get("value_code") or "", get("value_display") or ""
            )
        }
    if get("value_string"):
        return {"valueString": get("value_string")}
    if get("value_boolean") is not None:
        return {"valueBoolean": get("value_boolean")}
    return {}


def _patient(p: m.Patient) -> dict:
    name = _drop_empty(
        {
            "use": "official",
            "family": p.family_name,
            "given": p.given_names.split() if p.given_names else [],
            "prefix": p.name_prefix.split() if p.name_prefix else [],
        }
    )
    identifiers = []
    for ident in p.identifiers:
        entry = _drop_empty({"system": ident.get("system"), "value": ident.get("value")})
        if ident.get("type"):
            entry["type"] = {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": ident["type"]}]
            }
        identifiers.append(entry)
    return _drop_empty(
        {
            "resourceType": "Patient",
            "id": p.external_id,
            "identifier": identifiers,
            "name": [name] if len(name) > 1 else [],
            "telecom": [_drop_empty(t) for t in p.telecom],
            "gender": p.gender,
            "birthDate": _when(p.birth_date),
            "deceasedDateTime": _when(p.deceased_at),
            "address": [_drop_empty(a) for a in p.address],
            "maritalStatus": {"text": p.marital_status} if p.marital_status else None,
            "communication": [{"language": {"text": p.language}}] if p.language else [],
        }
    )


def patient_bundle(patient: m.Patient) -> dict:
    subject = {"reference": _urn("Patient", patient.external_id)}
    entries = [_entry(_patient(patient))]
    encounters = {e.pk: e.fhir_id for e in patient.encounter_set.all()}

    def encounter_ref(row):
        return (
            {"reference": _urn("Encounter", encounters[row.encounter_id])} if row.encounter_id in encounters else None
        )

    for e in patient.encounter_set.order_by("period_start"):
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "Encounter",
                        "id": e.fhir_id,
                        "status": e.status,
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": e.class_code}
                        if e.class_code
                        else None,
                        "type": [_record_concept(e)] if e.code or e.display else [],
                        "subject": subject,
                        "period": _drop_empty({"start": _when(e.period_start), "end": _when(e.period_end)}),
                        "reasonCode": [_concept("http://snomed.info/sct", e.reason_code, e.reason_display)]
                        if e.reason_code
                        else [],
                    }
                )
            )
        )
    for o in patient.observation_set.order_by("effective_at", "fhir_id"):
        components = [
            _drop_empty(
                {"code": _concept(c.get("code_system", ""), c.get("code", ""), c.get("display", "")), **_value(c)}
            )
            for c in o.components
        ]
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "Observation",
                        "id": o.fhir_id,
                        "status": o.status,
                        "category": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                        "code": o.category,
                                    }
                                ]
                            }
                        ]
                        if o.category
                        else [],
                        "code": _record_concept(o),
                        "subject": subject,
                        "encounter": encounter_ref(o),
                        "effectiveDateTime": _when(o.effective_at),
                        "issued": _when(o.issued_at),
                        **_value(o),
                        "component": components,
                    }
                )
            )
        )
    for c in patient.condition_set.all():
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "Condition",
                        "id": c.fhir_id,
                        "clinicalStatus": _status_concept(
                            c.clinical_status, "http://terminology.hl7.org/CodeSystem/condition-clinical"
                        ),
                        "verificationStatus": _status_concept(
                            c.verification_status, "http://terminology.hl7.org/CodeSystem/condition-ver-status"
                        ),
                        "code": _record_concept(c),
                        "subject": subject,
                        "encounter": encounter_ref(c),
                        "onsetDateTime": _when(c.onset_at),
                        "abatementDateTime": _when(c.abatement_at),
                        "recordedDate": _when(c.recorded_at),
                    }
                )
            )
        )
    for r in patient.medicationrequest_set.all():
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "MedicationRequest",
                        "id": r.fhir_id,
                        "status": r.status,
                        "intent": r.intent,
                        "medicationCodeableConcept": _record_concept(r),
                        "subject": subject,
                        "encounter": encounter_ref(r),
                        "authoredOn": _when(r.authored_at),
                        "dosageInstruction": [{"text": r.dosage_text}] if r.dosage_text else [],
                    }
                )
            )
        )
    for s in patient.medicationstatement_set.all():
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "MedicationStatement",
                        "id": s.fhir_id,
                        "status": s.status,
                        "medicationCodeableConcept": _record_concept(s),
                        "subject": subject,
                        "effectivePeriod": _drop_empty(
                            {"start": _when(s.effective_start), "end": _when(s.effective_end)}
                        ),
                        "dosage": [{"text": s.dosage_text}] if s.dosage_text else [],
                    }
                )
            )
        )
    for a in patient.allergyintolerance_set.all():
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "AllergyIntolerance",
                        "id": a.fhir_id,
                        "clinicalStatus": _status_concept(
                            a.clinical_status, "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
                        ),
                        "verificationStatus": _status_concept(
                            a.verification_status,
                            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        ),
                        "type": a.allergy_type,
                        "category": a.category.split(",") if a.category else [],
                        "criticality": a.criticality,
                        "code": _record_concept(a),
                        "patient": subject,
                        "recordedDate": _when(a.recorded_at),
                    }
                )
            )
        )
    for p in patient.procedure_set.all():
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "Procedure",
                        "id": p.fhir_id,
                        "status": p.status,
                        "code": _record_concept(p),
                        "subject": subject,
                        "encounter": encounter_ref(p),
                        "performedPeriod": _drop_empty(
                            {"start": _when(p.performed_start), "end": _when(p.performed_end)}
                        ),
                    }
                )
            )
        )
    for i in patient.immunization_set.all():
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "Immunization",
                        "id": i.fhir_id,
                        "status": i.status,
                        "vaccineCode": _record_concept(i),
                        "patient": subject,
                        "encounter": encounter_ref(i),
                        "occurrenceDateTime": _when(i.occurred_at),
                    }
                )
            )
        )
    for c in patient.careplan_set.all():
        entries.append(
            _entry(
                _drop_empty(
                    {
                        "resourceType": "CarePlan",
                        "id": c.fhir_id,
                        "status": c.status,
                        "intent": c.intent,
                        "category": [_record_concept(c)] if c.code or c.display else [],
                        "subject": subject,
                        "encounter": encounter_ref(c),
                        "period": _drop_empty({"start": _when(c.period_start), "end": _when(c.period_end)}),
                        "activity": [
                            {
                                "detail": _drop_empty(
                                    {
                                        "code": _concept(
                                            a.get("code_system", ""), a.get("code", ""), a.get("display", "")
                                        ),
                                        "status": a.get("status"),
                                    }
                                )
                            }
                            for a in c.activities
                        ],
                    }
                )
            )
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _entry(resource: dict) -> dict:
    return {
        "fullUrl": _urn(resource["resourceType"], resource["id"]),
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }
