"""Strict parsing of FHIR R4 Bundles into plain records, with no Django import.

Only what the clinical record stores is read, and that is checked strictly: a wrong type, a
non-numeric quantity, a missing required field or a reference to a bundle entry that does not
exist raises `FhirError` naming the resource and the field. Resource types the record does not
keep are counted as skipped. References that the record does not use (claims, devices,
reasons) are never followed, so a slimmed bundle with dangling ones imports fine.

A hand-written parser rather than a FHIR model library: it reads only the fields the record
stores, checks each strictly, and names the bundle entry and field in every error.
fhir.resources defaults to R5, where R4's MedicationRequest.medicationCodeableConcept silently
disappears. The strictness here is tested in tests/test_fhir_parse.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from . import codes

SUPPORTED_BUNDLE_TYPES = {"transaction", "batch", "collection", "searchset", "document"}
# What the clinical record keeps; everything else in a bundle is counted as skipped.
STORED_TYPES = (
    "Patient",
    "Encounter",
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "AllergyIntolerance",
    "Procedure",
    "Immunization",
    "CarePlan",
)

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class FhirError(ValueError):
    """A bundle that cannot be imported: says which resource, which field and why."""

    def __init__(self, message: str, *, resource: str = "", field: str = ""):
        self.resource = resource
        self.field = field
        self.reason = message
        where = " ".join(part for part in (resource, f"field '{field}'" if field else "") if part)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass
class Reference:
    """A reference as written: resolved to (type, id) by the bundle index, or left for the store."""

    resource_type: str
    fhir_id: str
    in_bundle: bool


@dataclass
class ParsedRecord:
    resource_type: str
    fhir_id: str
    fields: dict
    patient: Reference | None = None
    encounter: Reference | None = None

    @property
    def label(self) -> str:
        return f"{self.resource_type}/{self.fhir_id}"


@dataclass
class ParsedBundle:
    records: list[ParsedRecord]
    skipped: dict[str, int] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> list[ParsedRecord]:
        return [r for r in self.records if r.resource_type == resource_type]


# --- field readers -----------------------------------------------------------------------


class _Reader:
    """Reads one resource's fields, naming the resource and field in every error."""

    def __init__(self, resource: dict, label: str):
        self.resource = resource
        self.label = label

    def fail(self, field_name: str, message: str):
        raise FhirError(message, resource=self.label, field=field_name)

    def get(self, name: str, kind: type | tuple, required: bool = False):
        value = self.resource.get(name)
        if value is None:
            if required:
                self.fail(self.path(name), "is required")
            return None
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(self.path(name), f"must be a number, got {type(value).__name__} {value!r:.40}")
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(self.path(name), f"must be {expected_article(expected)}, got {type(value).__name__}")
        return value

    def string(self, name: str, required: bool = False, default: str = "") -> str:
        value = self.get(name, str, required)
        return default if value is None else value

    def sub(self, name: str, value, index: int | None = None) -> "_Reader":
        if not isinstance(value, dict):
            self.fail(self.path(_path(name, index)), f"must be an object, got {type(value).__name__}")
        reader = _Reader(value, self.label)
        reader.prefix = self.path(_path(name, index))
        return reader

    prefix = ""

    def path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    # Typed readers used by the resource parsers ------------------------------------------

    def datetime(self, name: str, required: bool = False) -> datetime | None:
        value = self.get(name, str, required)
        return None if value is None else parse_datetime(value, self.label, self.path(name))

    def date(self, name: str, required: bool = False) -> date | None:
        value = self.get(name, str, required)
        if value is None:
            return None
        parsed = parse_datetime(value, self.label, self.path(name))
        return parsed.date()

    def period(self, name: str) -> tuple[datetime | None, datetime | None]:
        value = self.get(name, dict)
        if value is None:
            return None, None
        period = self.sub(name, value)
        return period.datetime("start"), period.datetime("end")

    def codeable(self, name: str, required: bool = False) -> codes.Coding | None:
        value = self.get(name, dict, required)
        return None if value is None else self._codeable(value, self.path(name), required)

    def _codeable(self, value: dict, where: str, required: bool) -> codes.Coding | None:
        coding_list = value.get("coding", [])
        if not isinstance(coding_list, list):
            self.fail(f"{where}.coding", "must be a list")
        text = value.get("text")
        if text is not None and not isinstance(text, str):
            self.fail(f"{where}.text", "must be a string")
        codings = []
        for i, c in enumerate(coding_list):
            if not isinstance(c, dict):
                self.fail(f"{where}.coding[{i}]", "must be an object")
            for key in ("system", "code", "display"):
                if c.get(key) is not None and not isinstance(c[key], str):
                    self.fail(f"{where}.coding[{i}].{key}", "must be a string")
            if c.get("code"):
                codings.append(
                    codes.Coding(c.get("system") or "", c["code"], codes.clean_display(c.get("display") or ""))
                )
        if codings:
            chosen = codes.preferred_coding(codings)
            if not chosen.display and text:
                chosen = codes.Coding(chosen.system, chosen.code, codes.clean_display(text))
            return chosen
        if text:
            return codes.Coding("", "", codes.clean_display(text))
        if required:
            self.fail(where, "needs a coding with a code, or text")
        return None

    def first_codeable(self, name: str, required: bool = False) -> codes.Coding | None:
        """A list of CodeableConcepts (category, type, reasonCode): the first one that has a code."""
        value = self.get(name, list, required)
        for i, item in enumerate(value or []):
            if not isinstance(item, dict):
                self.fail(self.path(_path(name, i)), "must be an object")
            coding = self._codeable(item, self.path(_path(name, i)), False)
            if coding:
                return coding
        if required:
            self.fail(self.path(name), "needs at least one coded entry")
        return None

    def code(self, name: str, allowed: frozenset[str], required: bool = False) -> str:
        """A FHIR `code` from a required value set (statuses, intents)."""
        value = self.string(name, required)
        if value and value not in allowed:
            self.fail(self.path(name), f"{value!r:.30} is not one of: {', '.join(sorted(allowed))}")
        return value

    def status_code(self, name: str, required: bool = False) -> str:
        """A status given as a code (R4) or as a CodeableConcept (clinicalStatus)."""
        value = self.resource.get(name)
        if isinstance(value, dict):
            coding = self._codeable(value, self.path(name), required)
            return coding.code if coding else ""
        return self.string(name, required)

    def reference(self, name: str, required: bool = False) -> str | None:
        value = self.get(name, dict, required)
        if value is None:
            return None
        ref = value.get("reference")
        if ref is None:
            if required:
                self.fail(f"{self.path(name)}.reference", "is required")
            return None
        if not isinstance(ref, str) or not ref:
            self.fail(f"{self.path(name)}.reference", "must be a non-empty string")
        return ref


def expected_article(kind: str) -> str:
    return {"str": "a string", "dict": "an object", "list": "a list", "int": "an integer", "bool": "true or false"}.get(
        kind, kind
    )


def _path(name: str, index: int | None) -> str:
    return name if index is None else f"{name}[{index}]"


def parse_datetime(value: str, label: str = "", field_name: str = "") -> datetime:
    """FHIR date, dateTime or instant; partial dates fall on the start of their period, in UTC."""
    m = _DATETIME_RE.match(value)
    if m:
        try:
            text = value.replace("Z", "+00:00")
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise FhirError(f"is not a valid dateTime: {value!r:.40}", resource=label, field=field_name) from None
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:  # 0001-01-01T00:00:00+14:00 falls before year 1 in UTC
            raise FhirError(
                f"is outside the dates that can be stored (years 1 to 9999 in UTC): {value!r:.40}",
                resource=label,
                field=field_name,
            ) from None
    m = _DATE_RE.match(value)
    if m:
        year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
        try:
            return datetime(year, month, day, tzinfo=timezone.utc)
        except ValueError:
            pass
    raise FhirError(f"is not a valid FHIR date or dateTime: {value!r:.40}", resource=label, field=field_name)


# --- required value sets (FHIR R4) -------------------------------------------------------------

OBSERVATION_STATUS = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
ENCOUNTER_STATUS = frozenset(
    {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}
)
MEDICATION_REQUEST_STATUS = frozenset(
    {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
)
MEDICATION_REQUEST_INTENT = frozenset(
    {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}
)
MEDICATION_STATEMENT_STATUS = frozenset(
    {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"}
)
PROCEDURE_STATUS = frozenset(
    {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
)
IMMUNIZATION_STATUS = frozenset({"completed", "entered-in-error", "not-done"})
CARE_PLAN_STATUS = frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"})
CARE_PLAN_INTENT = frozenset({"proposal", "plan", "order", "option"})


# --- resource parsers ------------------------------------------------------------------------


def _value_fields(r: _Reader, prefix_code: bool = False) -> dict:
    """value[x] of an Observation or of one of its components."""
    present = [key for key in r.resource if key.startswith("value")]
    if len(present) > 1:
        r.fail(r.path(present[1]), "only one value[x] may be given")
    out = {
        "value_quantity": None,
        "value_unit": "",
        "value_code_system": "",
        "value_code": "",
        "value_display": "",
        "value_string": "",
        "value_boolean": None,
    }
    if not present:
        return out
    key = present[0]
    value = r.resource[key]
    if key == "valueQuantity":
        q = r.sub(key, r.get(key, dict))
        number = q.get("value", float, required=True)
        out["value_quantity"] = number
        out["value_unit"] = q.string("unit") or q.string("code")
    elif key == "valueInteger":
        out["value_quantity"] = float(r.get(key, int))
    elif key == "valueCodeableConcept":
        coding = r.codeable(key, required=True)
        out["value_code_system"], out["value_code"], out["value_display"] = coding.system, coding.code, coding.display
    elif key in ("valueString", "valueDateTime", "valueTime"):
        out["value_string"] = codes.clean_display(r.string(key))
    elif key == "valueBoolean":
        out["value_boolean"] = r.get(key, bool)
    else:
        r.fail(r.path(key), "is a value type the record does not keep")
    del value
    return out


def _observation(r: _Reader) -> dict:
    code = r.codeable("code", required=True)
    components = []
    for i, raw in enumerate(r.get("component", list) or []):
        c = r.sub("component", raw, i)
        c_code = c.codeable("code", required=True)
        components.append(
            {"code_system": c_code.system, "code": c_code.code, "display": c_code.display, **_component_value(c)}
        )
    category = r.first_codeable("category")
    return {
        "code_system": code.system,
        "code": code.code,
        "display": code.display,
        "status": r.code("status", OBSERVATION_STATUS, required=True),
        "category": category.code if category else "",
        "effective_at": r.datetime("effectiveDateTime")
        or r.datetime("effectiveInstant")
        or r.period("effectivePeriod")[0],
        "issued_at": r.datetime("issued"),
        "components": components,
        **_value_fields(r),
    }


def _component_value(c: _Reader) -> dict:
    value = _value_fields(c)
    # Components are stored as JSON: keep only what is set, with the unit named "unit".
    out = {}
    if value["value_quantity"] is not None:
        out["value_quantity"] = value["value_quantity"]
        out["unit"] = value["value_unit"]
    for key in ("value_code_system", "value_code", "value_display", "value_string"):
        if value[key]:
            out[key] = value[key]
    if value["value_boolean"] is not None:
        out["value_boolean"] = value["value_boolean"]
    return out


def _patient(r: _Reader) -> dict:
    names = r.get("name", list) or []
    chosen = None
    for i, raw in enumerate(names):
        n = r.sub("name", raw, i)
        if chosen is None or n.resource.get("use") == "official":
            chosen = n
    given, family, prefix = "", "", ""
    if chosen is not None:
        given_list = chosen.get("given", list) or []
        if not all(isinstance(g, str) for g in given_list):
            chosen.fail(chosen.path("given"), "must be a list of strings")
        given = " ".join(given_list)
        family = chosen.string("family")
        prefix = " ".join(p for p in (chosen.get("prefix", list) or []) if isinstance(p, str))
    gender = r.string("gender")
    if gender and gender not in {"female", "male", "other", "unknown"}:
        r.fail(r.path("gender"), f"must be female, male, other or unknown, got {gender!r:.20}")
    identifiers = []
    for i, raw in enumerate(r.get("identifier", list) or []):
        ident = r.sub("identifier", raw, i)
        kind = ident.codeable("type")
        identifiers.append(
            {"system": ident.string("system"), "value": ident.string("value"), "type": kind.code if kind else ""}
        )
    addresses = []
    for i, raw in enumerate(r.get("address", list) or []):
        a = r.sub("address", raw, i)
        lines = a.get("line", list) or []
        addresses.append(
            {
                "line": [line for line in lines if isinstance(line, str)],
                "city": a.string("city"),
                "state": a.string("state"),
                "postalCode": a.string("postalCode"),
                "country": a.string("country"),
            }
        )
    telecom = []
    for i, raw in enumerate(r.get("telecom", list) or []):
        t = r.sub("telecom", raw, i)
        telecom.append({"system": t.string("system"), "value": t.string("value"), "use": t.string("use")})
    marital = r.codeable("maritalStatus")
    if marital and len(marital.display) <= 1:  # Synthea repeats the v3 code ("M") as its display
        marital = codes.Coding(marital.system, marital.code, MARITAL_STATUS.get(marital.code, marital.display))
    language = None
    for i, raw in enumerate(r.get("communication", list) or []):
        language = r.sub("communication", raw, i).codeable("language")
        if language:
            break
    deceased = r.datetime("deceasedDateTime")
    return {
        "given_names": given,
        "family_name": family,
        "name_prefix": prefix,
        "birth_date": r.date("birthDate"),
        "gender": gender or "unknown",
        "identifiers": identifiers,
        "address": addresses,
        "telecom": telecom,
        "deceased_at": deceased,
        "marital_status": (marital.display or marital.code) if marital else "",
        "language": (language.display or language.code) if language else "",
    }


MARITAL_STATUS = {
    "M": "Married",
    "S": "Never married",
    "D": "Divorced",
    "W": "Widowed",
    "A": "Annulled",
    "L": "Legally separated",
    "U": "Unmarried",
    "T": "Domestic partner",
    "I": "Interlocutory",
    "P": "Polygamous",
}


def _encounter(r: _Reader) -> dict:
    kind = r.first_codeable("type")
    start, end = r.period("period")
    if start is None:
        r.fail(r.path("period.start"), "is required")
    encounter_class = r.get("class", dict)
    class_code = ""
    if encounter_class is not None:
        class_code = r.sub("class", encounter_class).string("code")
    reason = r.first_codeable("reasonCode")
    return {
        "code_system": kind.system if kind else "",
        "code": kind.code if kind else "",
        "display": kind.display if kind else "",
        "status": r.code("status", ENCOUNTER_STATUS, required=True),
        "class_code": class_code,
        "period_start": start,
        "period_end": end,
        "reason_code": reason.code if reason else "",
        "reason_display": reason.display if reason else "",
    }


def _coded(coding: codes.Coding) -> dict:
    return {"code_system": coding.system, "code": coding.code, "display": coding.display}


def _condition(r: _Reader) -> dict:
    return {
        **_coded(r.codeable("code", required=True)),
        "clinical_status": r.status_code("clinicalStatus"),
        "verification_status": r.status_code("verificationStatus"),
        "onset_at": r.datetime("onsetDateTime") or r.period("onsetPeriod")[0],
        "abatement_at": r.datetime("abatementDateTime") or r.period("abatementPeriod")[1],
        "recorded_at": r.datetime("recordedDate"),
    }


def _medication(r: _Reader) -> dict:
    if "medicationCodeableConcept" in r.resource:
        return _coded(r.codeable("medicationCodeableConcept", required=True))
    if "medicationReference" in r.resource:
        ref = r.get("medicationReference", dict)
        display = ref.get("display") if isinstance(ref.get("display"), str) else ""
        return {"code_system": "", "code": "", "display": codes.clean_display(display)}
    r.fail(r.path("medication[x]"), "is required (medicationCodeableConcept or medicationReference)")


def _dosage_text(r: _Reader, name: str) -> str:
    parts = []
    for i, raw in enumerate(r.get(name, list) or []):
        d = r.sub(name, raw, i)
        text = d.string("text")
        if not text and d.resource.get("asNeededBoolean"):
            text = "as needed"
        if text:
            parts.append(text)
    return "; ".join(parts)


def _medication_request(r: _Reader) -> dict:
    return {
        **_medication(r),
        "status": r.code("status", MEDICATION_REQUEST_STATUS, required=True),
        "intent": r.code("intent", MEDICATION_REQUEST_INTENT, required=True),
        "authored_at": r.datetime("authoredOn"),
        "dosage_text": _dosage_text(r, "dosageInstruction"),
    }


def _medication_statement(r: _Reader) -> dict:
    start, end = r.period("effectivePeriod")
    return {
        **_medication(r),
        "status": r.code("status", MEDICATION_STATEMENT_STATUS, required=True),
        "effective_start": r.datetime("effectiveDateTime") or start,
        "effective_end": end,
        "dosage_text": _dosage_text(r, "dosage"),
    }


def _allergy(r: _Reader) -> dict:
    categories = r.get("category", list) or []
    if not all(isinstance(c, str) for c in categories):
        r.fail(r.path("category"), "must be a list of codes")
    return {
        **_coded(r.codeable("code", required=True)),
        "clinical_status": r.status_code("clinicalStatus"),
        "verification_status": r.status_code("verificationStatus"),
        "allergy_type": r.string("type"),
        "category": ",".join(categories),
        "criticality": r.string("criticality"),
        "recorded_at": r.datetime("recordedDate") or r.datetime("onsetDateTime"),
    }


def _procedure(r: _Reader) -> dict:
    start, end = r.period("performedPeriod")
    return {
        **_coded(r.codeable("code", required=True)),
        "status": r.code("status", PROCEDURE_STATUS, required=True),
        "performed_start": r.datetime("performedDateTime") or start,
        "performed_end": end,
    }


def _immunization(r: _Reader) -> dict:
    return {
        **_coded(r.codeable("vaccineCode", required=True)),
        "status": r.code("status", IMMUNIZATION_STATUS, required=True),
        "occurred_at": r.datetime("occurrenceDateTime"),
    }


def _care_plan(r: _Reader) -> dict:
    category = r.first_codeable("category")
    start, end = r.period("period")
    activities = []
    for i, raw in enumerate(r.get("activity", list) or []):
        a = r.sub("activity", raw, i)
        detail_raw = a.get("detail", dict)
        if detail_raw is None:
            continue
        detail = a.sub("detail", detail_raw)
        coding = detail.codeable("code")
        if coding:
            activities.append({**_coded(coding), "status": detail.string("status")})
    return {
        **(_coded(category) if category else {"code_system": "", "code": "", "display": ""}),
        "status": r.code("status", CARE_PLAN_STATUS, required=True),
        "intent": r.code("intent", CARE_PLAN_INTENT, required=True),
        "period_start": start,
        "period_end": end,
        "activities": activities,
    }


PARSERS = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Observation": _observation,
    "Condition": _condition,
    "MedicationRequest": _medication_request,
    "MedicationStatement": _medication_statement,
    "AllergyIntolerance": _allergy,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "CarePlan": _care_plan,
}
SUBJECT_FIELD = {"AllergyIntolerance": "patient", "Immunization": "patient"}  # others use "subject"
ENCOUNTER_FIELD = {"Encounter": None, "Patient": None, "AllergyIntolerance": None, "MedicationStatement": "context"}


# --- bundle ------------------------------------------------------------------------------------


def parse_bundle(bundle, *, max_entries: int | None = None) -> ParsedBundle:
    """Parse a Bundle (already decoded from JSON). Raises FhirError on the first problem."""
    if not isinstance(bundle, dict):
        raise FhirError(f"a FHIR Bundle must be a JSON object, got {type(bundle).__name__}")
    if bundle.get("resourceType") != "Bundle":
        raise FhirError(f"resourceType must be 'Bundle', got {bundle.get('resourceType')!r:.40}")
    bundle_type = bundle.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in SUPPORTED_BUNDLE_TYPES:
        raise FhirError(f"Bundle.type {bundle_type!r:.30} is not supported", field="type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError("must be a list", resource="Bundle", field="entry")
    if max_entries is not None and len(entries) > max_entries:
        raise FhirError(f"has {len(entries)} entries; the limit is {max_entries}", resource="Bundle", field="entry")

    # First pass: index every entry by fullUrl and by Type/id so references can be resolved.
    index: dict[str, tuple[str, str]] = {}
    resources = []
    for position, entry in enumerate(entries):
        where = f"Bundle.entry[{position}]"
        if not isinstance(entry, dict):
            raise FhirError("must be an object", resource=where)
        request = entry.get("request")
        if isinstance(request, dict) and request.get("method") == "DELETE":
            raise FhirError("DELETE entries are not accepted; retire records in the admin", resource=where)
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise FhirError("is required and must be an object", resource=where, field="resource")
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or not resource_type:
            raise FhirError("is required", resource=where, field="resource.resourceType")
        fhir_id = resource.get("id")
        if resource_type in PARSERS:
            if not isinstance(fhir_id, str) or not _ID_RE.fullmatch(fhir_id):
                raise FhirError(
                    "is required: 1–64 letters, digits, '-' or '.'", resource=f"{where} ({resource_type})", field="id"
                )
        full_url = entry.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            raise FhirError("must be a string", resource=where, field="fullUrl")
        if full_url:
            index[full_url] = (resource_type, fhir_id or "")
        if isinstance(fhir_id, str):
            index[f"{resource_type}/{fhir_id}"] = (resource_type, fhir_id)
        resources.append((resource_type, fhir_id, resource))

    parsed = ParsedBundle(records=[])
    seen: set[str] = set()
    for resource_type, fhir_id, resource in resources:
        parser = PARSERS.get(resource_type)
        if parser is None:
            parsed.skipped[resource_type] = parsed.skipped.get(resource_type, 0) + 1
            continue
        label = f"{resource_type}/{fhir_id}"
        if label in seen:
            raise FhirError("appears twice in the bundle", resource=label)
        seen.add(label)
        reader = _Reader(resource, label)
        record = ParsedRecord(resource_type, fhir_id, parser(reader))
        if resource_type != "Patient":
            subject_field = SUBJECT_FIELD.get(resource_type, "subject")
            record.patient = _resolve(reader, subject_field, index, expected="Patient", required=True)
            encounter_field = ENCOUNTER_FIELD.get(resource_type, "encounter")
            if encounter_field:
                record.encounter = _resolve(reader, encounter_field, index, expected="Encounter", required=False)
        parsed.records.append(record)
    return parsed


def _resolve(r: _Reader, name: str, index: dict, *, expected: str, required: bool) -> Reference | None:
    ref = r.reference(name, required=required)
    if ref is None:
        return None
    if ref in index:
        resource_type, fhir_id = index[ref]
        if resource_type != expected:
            r.fail(r.path(f"{name}.reference"), f"must point to a {expected}, but {ref!r:.60} is a {resource_type}")
        return Reference(resource_type, fhir_id, in_bundle=True)
    if ref.startswith("urn:uuid:") or ref.startswith("#"):
        # A bundle-local reference that names no entry: the bundle is inconsistent.
        r.fail(r.path(f"{name}.reference"), f"{ref!r:.60} names no entry in this bundle")
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == expected and _ID_RE.fullmatch(parts[-1]):
        # "Patient/123" outside the bundle: the store looks for it among records already held.
        return Reference(expected, parts[-1], in_bundle=False)
    r.fail(r.path(f"{name}.reference"), f"{ref!r:.60} is not a reference to a {expected}")
