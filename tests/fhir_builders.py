"""Small, valid FHIR R4 transaction Bundles for tests, with helpers to corrupt them."""

import copy

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def patient(pid="pat-1", family="Rivera", given=("Ana", "Lucia")):
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "urn:mrn", "value": f"MRN-{pid}"}],
        "name": [{"use": "official", "family": family, "given": list(given), "prefix": ["Mrs."]}],
        "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
        "gender": "female",
        "birthDate": "1992-03-14",
        "address": [{"line": ["1 Clinic Road"], "city": "Springfield", "postalCode": "01234", "country": "US"}],
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es", "display": "Spanish"}]}}
        ],
    }


def encounter(eid="enc-1", pid="pat-1", start="2025-05-01T09:00:00Z", code="424619006", display="Prenatal visit"):
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": SNOMED, "code": code, "display": display}]}],
        "subject": {"reference": f"urn:uuid:{pid}"},
        "period": {"start": start, "end": start},
    }


def observation(
    oid="obs-1", pid="pat-1", eid="enc-1", code="29463-7", value=None, when="2025-05-01T09:00:00Z", **extra
):
    resource = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": "Body weight"}]},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "effectiveDateTime": when,
    }
    if eid:
        resource["encounter"] = {"reference": f"urn:uuid:{eid}"}
    if value is not None:
        resource.update(value)
    resource.update(extra)
    return resource


def bp_panel(oid="bp-1", pid="pat-1", eid="enc-1", systolic=128, diastolic=82):
    return observation(
        oid,
        pid,
        eid,
        code="85354-9",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic"}]},
                "valueQuantity": {"value": systolic, "unit": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic"}]},
                "valueQuantity": {"value": diastolic, "unit": "mm[Hg]"},
            },
        ],
    )


def condition(
    cid="cond-1", pid="pat-1", code="72892002", display="Normal pregnancy", onset="2025-03-01T00:00:00Z", abatement=None
):
    resource = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "onsetDateTime": onset,
    }
    if abatement:
        resource["abatementDateTime"] = abatement
    return resource


def bundle(*resources):
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }


def small_bundle(pid="pat-1"):
    """A pregnant patient with one prenatal visit: weight, blood pressure panel, smoking status."""
    return bundle(
        patient(pid),
        encounter(f"{pid}-enc", pid),
        observation(f"{pid}-weight", pid, f"{pid}-enc", value={"valueQuantity": {"value": 71.5, "unit": "kg"}}),
        bp_panel(f"{pid}-bp", pid, f"{pid}-enc"),
        observation(
            f"{pid}-smoke",
            pid,
            f"{pid}-enc",
            code="72166-2",
            value={
                "valueCodeableConcept": {
                    "coding": [{"system": SNOMED, "code": "266919005", "display": "Never\u200b smoked"}]
                }
            },
        ),
        condition(f"{pid}-preg", pid),
        {"resourceType": "Organization", "id": "org-1", "name": "Somewhere"},
    )


def with_resource(bundle_dict, resource_id, mutate):
    """A deep copy of the bundle with one resource changed by `mutate(resource)`."""
    copy_ = copy.deepcopy(bundle_dict)
    for entry in copy_["entry"]:
        if entry["resource"].get("id") == resource_id:
            mutate(entry["resource"])
            return copy_
    raise KeyError(resource_id)
