"""Synthetic patients with full histories, for benchmarks at 10,000+ patients. No Django import.

They are produced as parsed FHIR records, so they enter the record through exactly the same
store as imported bundles. Dates are relative to `today`: about half are pregnant now.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

from patients.fhir import codes
from patients.fhir.parse import ParsedBundle, ParsedRecord, Reference

GIVEN = (
    "Amara",
    "Beatriz",
    "Chloe",
    "Dana",
    "Elif",
    "Fatima",
    "Grace",
    "Hana",
    "Ines",
    "Julia",
    "Keisha",
    "Leila",
    "Maya",
    "Nadia",
    "Olivia",
    "Priya",
    "Rosa",
    "Sofia",
    "Tamar",
    "Uma",
    "Valeria",
    "Wen",
    "Yara",
    "Zoe",
)
FAMILY = (
    "Adeyemi",
    "Bauer",
    "Castillo",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Mensah",
    "Nguyen",
    "Okafor",
    "Patel",
    "Quinn",
    "Rossi",
    "Silva",
    "Tanaka",
)
SMOKING = (("266919005", "Never smoked tobacco"), ("8517006", "Ex-smoker"), ("449868002", "Smokes tobacco daily"))


def _at(d: date, hour: int = 9) -> datetime:
    return datetime.combine(d, time(hour), tzinfo=timezone.utc)


class _Builder:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.records: list[ParsedRecord] = []
        self.counter = 0

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.prefix}-{kind}{self.counter}"

    def add(self, resource_type: str, fields: dict, patient: str | None = None, encounter: str | None = None) -> str:
        fhir_id = self.next_id(resource_type[:3].lower()) if resource_type != "Patient" else self.prefix
        self.records.append(
            ParsedRecord(
                resource_type,
                fhir_id,
                fields,
                patient=Reference("Patient", patient, True) if patient else None,
                encounter=Reference("Encounter", encounter, True) if encounter else None,
            )
        )
        return fhir_id


def _observation(code: str, display: str, when: datetime, **value) -> dict:
    fields = {
        "code_system": codes.LOINC,
        "code": code,
        "display": display,
        "status": "final",
        "category": "vital-signs",
        "effective_at": when,
        "issued_at": when,
        "components": [],
        "value_quantity": None,
        "value_unit": "",
        "value_code_system": "",
        "value_code": "",
        "value_display": "",
        "value_string": "",
        "value_boolean": None,
    }
    fields.update(value)
    return fields


def _encounter(code: str, display: str, when: datetime) -> dict:
    return {
        "code_system": codes.SNOMED,
        "code": code,
        "display": display,
        "status": "finished",
        "class_code": "AMB",
        "period_start": when,
        "period_end": when + timedelta(minutes=30),
        "reason_code": "",
        "reason_display": "",
    }


def _condition(code: str, display: str, onset: datetime, abatement: datetime | None = None) -> dict:
    return {
        "code_system": codes.SNOMED,
        "code": code,
        "display": display,
        "clinical_status": "resolved" if abatement else "active",
        "verification_status": "confirmed",
        "onset_at": onset,
        "abatement_at": abatement,
        "recorded_at": onset,
    }


def synthetic_patient(index: int, seed: int, today: date) -> list[ParsedRecord]:
    rng = random.Random(f"synthetic:{seed}:{index}")
    pid = f"synthetic-{seed}-{index:06d}"
    b = _Builder(pid)
    age = rng.randint(18, 44)
    b.add(
        "Patient",
        {
            "given_names": rng.choice(GIVEN),
            "family_name": rng.choice(FAMILY),
            "name_prefix": "Ms.",
            "birth_date": today - timedelta(days=age * 365 + rng.randint(0, 364)),
            "gender": "female",
            "identifiers": [{"system": "urn:pmlm:synthetic-mrn", "value": f"MRN{seed}{index:07d}", "type": "MR"}],
            "address": [
                {
                    "line": [f"{rng.randint(1, 200)} Synthetic Street"],
                    "city": "Testville",
                    "state": "",
                    "postalCode": f"{rng.randint(10000, 99999)}",
                    "country": "GB",
                }
            ],
            "telecom": [{"system": "phone", "value": f"+44 7700 {rng.randint(100000, 999999)}", "use": "mobile"}],
            "deceased_at": None,
            "marital_status": rng.choice(("Married", "Never Married", "")),
            "language": rng.choice(("English", "English", "Spanish")),
        },
    )
    height = rng.gauss(164, 7)
    weight = max(42.0, rng.gauss(68, 14))
    smoking = rng.choices(SMOKING, weights=(70, 15, 15))[0]
    hypertensive = rng.random() < 0.08
    for years_ago in range(4, 0, -1):
        when = _at(today - timedelta(days=365 * years_ago + rng.randint(0, 60)))
        enc = b.add("Encounter", _encounter("185349003", "Encounter for check up", when), pid)
        systolic = rng.gauss(132 if hypertensive else 114, 10)
        diastolic = rng.gauss(86 if hypertensive else 74, 7)
        b.add(
            "Observation",
            _observation(
                "85354-9",
                "Blood pressure panel",
                when,
                components=[
                    {
                        "code_system": codes.LOINC,
                        "code": "8480-6",
                        "display": "Systolic blood pressure",
                        "value_quantity": round(systolic),
                        "unit": "mm[Hg]",
                    },
                    {
                        "code_system": codes.LOINC,
                        "code": "8462-4",
                        "display": "Diastolic blood pressure",
                        "value_quantity": round(diastolic),
                        "unit": "mm[Hg]",
                    },
                ],
            ),
            pid,
            enc,
        )
        weight += rng.gauss(0.5, 1.5)
        b.add(
            "Observation",
            _observation("29463-7", "Body weight", when, value_quantity=round(weight, 1), value_unit="kg"),
            pid,
            enc,
        )
        b.add(
            "Observation",
            _observation("8302-2", "Body height", when, value_quantity=round(height, 1), value_unit="cm"),
            pid,
            enc,
        )
        b.add(
            "Observation",
            _observation(
                "39156-5",
                "Body mass index",
                when,
                value_quantity=round(weight / (height / 100) ** 2, 1),
                value_unit="kg/m2",
            ),
            pid,
            enc,
        )
        b.add(
            "Observation",
            _observation(
                "72166-2",
                "Tobacco smoking status",
                when,
                category="social-history",
                value_code_system=codes.SNOMED,
                value_code=smoking[0],
                value_display=smoking[1],
            ),
            pid,
            enc,
        )
        b.add(
            "Observation",
            _observation(
                "718-7",
                "Hemoglobin",
                when,
                category="laboratory",
                value_quantity=round(rng.gauss(12.6, 1.1), 1),
                value_unit="g/dL",
            ),
            pid,
            enc,
        )
        b.add(
            "Observation",
            _observation(
                "2339-0",
                "Glucose",
                when,
                category="laboratory",
                value_quantity=round(rng.gauss(92, 14)),
                value_unit="mg/dL",
            ),
            pid,
            enc,
        )
    if hypertensive:
        b.add("Condition", _condition("59621000", "Essential hypertension", _at(today - timedelta(days=4 * 365))), pid)
    if rng.random() < 0.1:
        past = _at(today - timedelta(days=rng.randint(2, 6) * 365))
        b.add(
            "Procedure",
            {
                "code_system": codes.SNOMED,
                "code": "11466000",
                "display": "Cesarean section",
                "status": "completed",
                "performed_start": past,
                "performed_end": past + timedelta(hours=1),
            },
            pid,
        )
    if rng.random() < 0.55:
        weeks = rng.randint(6, 41)
        onset = _at(today - timedelta(weeks=weeks))
        b.add("Condition", _condition("72892002", "Normal pregnancy", onset), pid)
        for visit_week in range(8, weeks + 1, 4):
            when = onset + timedelta(weeks=visit_week, hours=rng.randint(0, 6))
            code, display = (
                ("424441002", "Prenatal initial visit") if visit_week == 8 else ("424619006", "Prenatal visit")
            )
            enc = b.add("Encounter", _encounter(code, display, when), pid)
            pre_eclamptic = visit_week >= 20 and rng.random() < 0.04
            b.add(
                "Observation",
                _observation(
                    "85354-9",
                    "Blood pressure panel",
                    when,
                    components=[
                        {
                            "code_system": codes.LOINC,
                            "code": "8480-6",
                            "display": "Systolic blood pressure",
                            "value_quantity": round(rng.gauss(148 if pre_eclamptic else 116, 9)),
                            "unit": "mm[Hg]",
                        },
                        {
                            "code_system": codes.LOINC,
                            "code": "8462-4",
                            "display": "Diastolic blood pressure",
                            "value_quantity": round(rng.gauss(96 if pre_eclamptic else 74, 6)),
                            "unit": "mm[Hg]",
                        },
                    ],
                ),
                pid,
                enc,
            )
            b.add(
                "Observation",
                _observation(
                    "29463-7", "Body weight", when, value_quantity=round(weight + visit_week * 0.35, 1), value_unit="kg"
                ),
                pid,
                enc,
            )
            if pre_eclamptic:
                b.add("Condition", _condition("398254007", "Preeclampsia", when), pid, enc)
        if weeks >= 26 and rng.random() < 0.08:
            b.add("Condition", _condition("11687002", "Gestational diabetes", onset + timedelta(weeks=26)), pid)
        if rng.random() < 0.12:
            b.add("Condition", _condition("271737000", "Anemia", onset + timedelta(weeks=min(weeks, 12))), pid)
    return b.records


def synthetic_bundle(start: int, count: int, seed: int, today: date) -> ParsedBundle:
    records = []
    for index in range(start, start + count):
        records.extend(synthetic_patient(index, seed, today))
    return ParsedBundle(records=records)


def shift_dates(parsed: ParsedBundle, days: int) -> ParsedBundle:
    """Move every date in the records by `days`, keeping intervals (and ages) unchanged."""
    delta = timedelta(days=days)
    for record in parsed.records:
        for key, value in record.fields.items():
            if isinstance(value, (date, datetime)):
                record.fields[key] = value + delta
    return parsed
