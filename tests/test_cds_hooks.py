"""The clinic inside the EHR: CDS Hooks 2.0 discovery and the patient-view service, called as an EHR calls it
(a signed JWT, prefetch built from a held-out-style Synthea bundle), and who may not get what."""

import json
import time

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.utils import timezone

from audit.models import AuditAction, AuditEvent
from cdshooks import ehr
from cdshooks.ehr import patient_view_body, prefetch_from_bundle, public_jwks, signed_jwt
from cdshooks.models import EHRClient, UsedTokenId
from cdshooks.prefetch import PREFETCH
from cdshooks.services import SERVICE_ID
from patients import models as pm
from patients.fhir.export import patient_bundle
from tests import fhir_builders as fb
from tests.conftest import make_member
from tests.ehr_servers import FakeEHR, SilentServer
from tests.test_clinical_peer_situation import clinic  # noqa: F401  (women whose peers' physicians advised)

# Pregnant in her second trimester once the demo's dates are moved to today: raised blood pressure, high risk of
# pre-eclampsia, a previous caesarean, overweight.
HYPERTENSIVE_SYNTHEA = "718413e0-9b98-4c34-9575-fdb4e5179738"
SERVICE_URL = f"http://testserver/cds-services/{SERVICE_ID}"
NORTH_ISSUER = "https://ehr.north.example"

# The CDS Hooks 2.0 response, as the specification's "CDS Service Response" and "Card Attributes" define it.
CODING = {
    "type": "object",
    "required": ["code", "system"],
    "properties": {"code": {"type": "string"}, "system": {"type": "string"}, "display": {"type": "string"}},
}
LINK = {
    "type": "object",
    "required": ["label", "url", "type"],
    "properties": {
        "label": {"type": "string", "minLength": 1},
        "url": {"type": "string", "minLength": 1},
        "type": {"enum": ["absolute", "smart"]},
        "appContext": {"type": "string"},
    },
    "additionalProperties": False,
}
CARD = {
    "type": "object",
    "required": ["summary", "indicator", "source"],
    "properties": {
        "uuid": {"type": "string", "minLength": 1},
        "summary": {"type": "string", "minLength": 1, "maxLength": 139},
        "detail": {"type": "string", "minLength": 1},
        "indicator": {"enum": ["info", "warning", "critical"]},
        "source": {
            "type": "object",
            "required": ["label"],
            "properties": {
                "label": {"type": "string", "minLength": 1},
                "url": {"type": "string"},
                "icon": {"type": "string"},
                "topic": CODING,
            },
            "additionalProperties": False,
        },
        "suggestions": {"type": "array", "minItems": 1},
        "selectionBehavior": {"enum": ["at-most-one", "any"]},
        "overrideReasons": {"type": "array", "minItems": 1, "items": CODING},
        "links": {"type": "array", "minItems": 1, "items": LINK},
    },
    "additionalProperties": False,
}
RESPONSE = {
    "type": "object",
    "required": ["cards"],
    "properties": {"cards": {"type": "array", "items": CARD}, "systemActions": {"type": "array"}},
    "additionalProperties": False,
}
DISCOVERY = {
    "type": "object",
    "required": ["services"],
    "properties": {
        "services": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["hook", "description", "id"],
                "properties": {
                    "hook": {"type": "string", "minLength": 1},
                    "title": {"type": "string", "minLength": 1},
                    "description": {"type": "string", "minLength": 1},
                    "id": {"type": "string", "minLength": 1},
                    "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        }
    },
}


def synthea_prefetch(patient_id: str = HYPERTENSIVE_SYNTHEA) -> tuple[str, dict]:
    """Her prefetch as the EHR's FHIR server would answer the templates, dated as the demo dates Synthea."""
    return ehr.synthea_prefetch(patient_id, timezone.now().date())


@pytest.fixture
def north_key():
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def north_ehr(organisation, north_key):
    return EHRClient.objects.create(
        organisation=organisation,
        name="North EHR",
        issuer=NORTH_ISSUER,
        jwks=public_jwks(north_key, kid="north-1"),
        fhir_base_url="https://ehr.north.example/fhir",
    )


@pytest.fixture
def south_key():
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def south_ehr(other_organisation, south_key):
    return EHRClient.objects.create(
        organisation=other_organisation,
        name="South EHR",
        issuer="https://ehr.south.example",
        jwks=public_jwks(south_key, kid="south-1"),
    )


def token_for(key, *, kid="north-1", issuer=NORTH_ISSUER, audience=SERVICE_URL, **options):
    return signed_jwt(key, kid=kid, issuer=issuer, audience=audience, **options)


def call(client, body, token, path=f"/cds-services/{SERVICE_ID}"):
    return client.post(
        path, data=json.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def stored_counts():
    return (pm.Patient.objects.count(), pm.Observation.objects.count(), pm.BundleImport.objects.count())


class TestDiscovery:
    def test_it_lists_the_patient_view_service_with_its_prefetch_templates_in_the_specs_shape(self, client, db):
        response = client.get("/cds-services")
        assert response.status_code == 200
        body = response.json()
        jsonschema.validate(body, DISCOVERY)
        (service,) = body["services"]
        assert service["hook"] == "patient-view"
        assert service["id"] == SERVICE_ID
        assert service["prefetch"] == {
            "patient": "Patient/{{context.patientId}}",
            "observations": "Observation?patient={{context.patientId}}",
            "conditions": "Condition?patient={{context.patientId}}",
            "medications": "MedicationRequest?patient={{context.patientId}}",
            "encounters": "Encounter?patient={{context.patientId}}",
            "procedures": "Procedure?patient={{context.patientId}}",
        }


class TestPatientView:
    def test_a_signed_call_files_her_record_and_answers_her_risk_flags_with_their_evidence_and_a_workspace_link(
        self, client, north_ehr, north_key, organisation
    ):
        patient_id, prefetch = synthea_prefetch()
        response = call(client, patient_view_body(patient_id, prefetch), token_for(north_key))
        assert response.status_code == 200, response.content
        body = response.json()
        jsonschema.validate(body, RESPONSE)
        cards = body["cards"]
        flags = {c["source"]["topic"]["code"]: c for c in cards if "topic" in c["source"]}
        assert {"hypertension", "pre_eclampsia_risk", "previous_c_section", "overweight"} <= set(flags)
        assert flags["hypertension"]["indicator"] == "warning"
        assert flags["overweight"]["indicator"] == "info"
        assert "mmHg" in flags["hypertension"]["detail"] or "mm[Hg]" in flags["hypertension"]["detail"]
        assert all("Evidence" in card["detail"] for card in flags.values())
        assert "pregnant" in flags["hypertension"]["detail"]
        (link_card,) = [c for c in cards if "links" in c]
        (link,) = link_card["links"]
        assert link["type"] == "smart"
        assert link["url"] == f"http://testserver/smart/launch?patient={patient_id}"
        assert link["appContext"] == patient_id
        assert "one click away" in link_card["summary"]
        patient = organisation.patients.get(external_id=patient_id)
        assert patient.observation_set.exists()
        assert AuditEvent.objects.filter(
            action=AuditAction.CDS_HOOK, object_id=str(patient.pk), organisation=organisation, surface="ehr"
        ).exists()

    def test_cards_come_most_urgent_first_and_severe_hypertension_is_critical(
        self, client, north_ehr, north_key, organisation
    ):
        bundle = fb.bundle(
            fb.patient("sev-1", family="Severe", given=("Test",)),
            fb.encounter("sev-1-e", "sev-1"),
            fb.bp_panel("sev-1-bp", "sev-1", "sev-1-e", systolic=168, diastolic=112),
            fb.condition("sev-1-c", "sev-1"),
        )
        patient_id, prefetch = prefetch_from_bundle(bundle)
        cards = call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).json()["cards"]
        assert cards[0]["indicator"] == "critical"
        assert cards[0]["source"]["topic"]["code"] == "severe_hypertension"
        order = {"critical": 0, "warning": 1, "info": 2}
        ranks = [order[c["indicator"]] for c in cards if "topic" in c["source"]]
        assert ranks == sorted(ranks)

    def test_the_same_call_retried_files_nothing_twice(self, client, north_ehr, north_key, organisation):
        patient_id, prefetch = synthea_prefetch()
        assert call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).status_code == 200
        counts = (pm.Patient.objects.count(), pm.Observation.objects.count(), pm.Condition.objects.count())
        assert call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).status_code == 200
        assert (pm.Patient.objects.count(), pm.Observation.objects.count(), pm.Condition.objects.count()) == counts

    def test_what_similar_patients_physicians_recommended_is_a_card_of_its_own(
        self,
        client,
        clinic,  # noqa: F811  (the fixture imported above)
        organisation,
        north_ehr,
        north_key,
    ):
        """Her record as the EHR holds it (exported from the clinic's), her peers learned beforehand."""
        patient_id, prefetch = prefetch_from_bundle(patient_bundle(clinic["trimester 2"]))
        cards = call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).json()["cards"]
        (peers,) = [c for c in cards if c["summary"].startswith("Similar patients' physicians")]
        assert peers["indicator"] == "info"
        assert "folic acid" in peers["summary"]
        assert "pregnant, trimester 2" in peers["detail"]
        assert "not a recommendation for her" in peers["detail"]

    def test_a_record_with_no_risk_flag_says_so_and_what_that_cannot_mean(self, client, north_ehr, north_key):
        bundle = fb.bundle(
            fb.patient("calm-1", family="Calm", given=("Test",)),
            fb.encounter("calm-1-e", "calm-1"),
            fb.bp_panel("calm-1-bp", "calm-1", "calm-1-e", systolic=112, diastolic=70),
        )
        patient_id, prefetch = prefetch_from_bundle(bundle)
        cards = call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).json()["cards"]
        assert cards[0]["summary"].startswith("No WHO antenatal risk flag")
        assert "cannot be raised" in cards[0]["detail"]


class TestWhoMayCall:
    @pytest.mark.parametrize(
        "case",
        [
            "no token",
            "not a jwt",
            "unknown issuer",
            "bad signature",
            "expired",
            "wrong audience",
            "hmac",
            "none",
            "unknown key",
            "too long-lived",
            "inactive",
        ],
    )
    def test_every_authentication_failure_is_a_401_and_stores_nothing(
        self, client, north_ehr, north_key, organisation, case
    ):
        patient_id, prefetch = synthea_prefetch()
        import jwt as pyjwt

        now = int(time.time())
        claims = {"iss": NORTH_ISSUER, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": f"j-{case}"}
        tokens = {
            "no token": "",
            "not a jwt": "opaque-token",
            "unknown issuer": token_for(north_key, issuer="https://intruder.example"),
            "bad signature": token_for(ec.generate_private_key(ec.SECP384R1())),
            "expired": token_for(north_key, lifetime=-120),
            "wrong audience": token_for(north_key, audience="https://elsewhere.example/cds-services/x"),
            "hmac": pyjwt.encode(
                claims, "a-secret-both-sides-would-share-" * 2, algorithm="HS256", headers={"kid": "north-1"}
            ),
            "none": pyjwt.encode(claims, None, algorithm="none", headers={"kid": "north-1"}),
            "unknown key": token_for(north_key, kid="north-2"),
            "too long-lived": token_for(north_key, lifetime=3600),
            "inactive": token_for(north_key),
        }
        if case == "inactive":
            EHRClient.objects.filter(pk=north_ehr.pk).update(active=False)
        before = stored_counts()
        response = call(client, patient_view_body(patient_id, prefetch), tokens[case])
        assert response.status_code == 401, response.content
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]
        assert stored_counts() == before
        assert not UsedTokenId.objects.exists()
        assert AuditEvent.objects.filter(action=AuditAction.CDS_HOOK_REFUSED).count() == 1

    def test_a_replayed_token_is_refused_the_second_time(self, client, north_ehr, north_key):
        patient_id, prefetch = synthea_prefetch()
        token = token_for(north_key)
        assert call(client, patient_view_body(patient_id, prefetch), token).status_code == 200
        before = stored_counts()
        again = call(client, patient_view_body(patient_id, prefetch), token)
        assert again.status_code == 401
        assert "already used" in again.json()["error"]
        assert stored_counts() == before

    def test_an_ehr_that_signs_with_rsa_is_trusted_too(self, client, organisation):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        EHRClient.objects.create(
            organisation=organisation,
            name="RSA EHR",
            issuer="https://rsa.example",
            jwks=public_jwks(key, kid="rsa-1", algorithm="RS384"),
        )
        patient_id, prefetch = synthea_prefetch()
        token = signed_jwt(key, kid="rsa-1", issuer="https://rsa.example", audience=SERVICE_URL, algorithm="RS384")
        assert call(client, patient_view_body(patient_id, prefetch), token).status_code == 200

    def test_another_organisations_ehr_files_into_its_own_organisation_and_sees_nothing_of_this_one(
        self, client, north_ehr, north_key, south_ehr, south_key, organisation, other_organisation
    ):
        patient_id, prefetch = synthea_prefetch()
        assert call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).status_code == 200
        north_patient = organisation.patients.get(external_id=patient_id)
        north_observations = north_patient.observation_set.count()
        # The south EHR knows a patient with the same FHIR id, with nothing but her Patient resource.
        bare = {key: None for key in PREFETCH} | {"patient": prefetch["patient"]}
        token = signed_jwt(south_key, kid="south-1", issuer="https://ehr.south.example", audience=SERVICE_URL)
        cards = call(client, patient_view_body(patient_id, bare), token).json()["cards"]
        assert not [c for c in cards if "topic" in c["source"]]  # none of North's flags
        assert cards[0]["summary"].startswith("No WHO antenatal risk flag")
        south_patient = other_organisation.patients.get(external_id=patient_id)
        assert south_patient.pk != north_patient.pk
        assert not south_patient.observation_set.exists()
        assert north_patient.observation_set.count() == north_observations

    def test_a_north_token_cannot_be_replayed_as_if_south_had_signed_it(self, client, north_ehr, north_key, south_ehr):
        patient_id, prefetch = synthea_prefetch()
        forged = token_for(north_key, issuer="https://ehr.south.example", kid="south-1")
        assert call(client, patient_view_body(patient_id, prefetch), forged).status_code == 401


class TestBadCalls:
    def test_malformed_prefetch_is_a_400_naming_the_resource_and_field_and_stores_nothing(
        self, client, north_ehr, north_key
    ):
        patient_id, prefetch = synthea_prefetch()
        entry = prefetch["observations"]["entry"][0]["resource"]
        entry["valueQuantity"] = {"value": "high", "unit": "mm[Hg]"}
        entry.pop("component", None)
        before = stored_counts()
        response = call(client, patient_view_body(patient_id, prefetch), token_for(north_key))
        assert response.status_code == 400, response.content
        error = response.json()
        assert f"Observation/{entry['id']}" in error["where"]
        assert "valueQuantity" in error["where"]
        assert stored_counts() == before

    @pytest.mark.parametrize(
        "spoil, where",
        [
            (lambda p: p["patient"].update(id="someone-else"), "prefetch.patient.id"),
            (lambda p: p.update(patient={"resourceType": "Practitioner", "id": "x"}), "prefetch.patient.resourceType"),
            (lambda p: p.update(observations=[1, 2]), "prefetch.observations"),
            (
                lambda p: p["observations"]["entry"][0]["resource"].update(subject={"reference": "Patient/other"}),
                "prefetch.observations.entry[0].resource.subject.reference",
            ),
            (
                lambda p: p["observations"]["entry"][0]["resource"].update(resourceType="Condition"),
                "prefetch.observations.entry[0].resource.resourceType",
            ),
        ],
    )
    def test_prefetch_that_is_not_what_the_templates_asked_for_is_refused_by_name(
        self, client, north_ehr, north_key, spoil, where
    ):
        patient_id, prefetch = synthea_prefetch()
        spoil(prefetch)
        before = stored_counts()
        response = call(client, patient_view_body(patient_id, prefetch), token_for(north_key))
        assert response.status_code == 400
        assert response.json()["where"] == where
        assert stored_counts() == before

    def test_a_request_without_her_id_or_for_another_hook_is_a_400(self, client, north_ehr, north_key):
        body = patient_view_body("p-1", {})
        del body["context"]["patientId"]
        assert call(client, body, token_for(north_key)).json()["where"] == "context.patientId"
        other = patient_view_body("p-1", {}) | {"hook": "order-sign"}
        assert call(client, other, token_for(north_key)).json()["where"] == "hook"

    def test_a_body_that_is_not_json_is_a_400_and_an_oversized_one_a_413(self, client, north_ehr, north_key, settings):
        response = client.post(
            f"/cds-services/{SERVICE_ID}",
            data=b"{not json",
            content_type="application/json",
            headers={"Authorization": f"Bearer {token_for(north_key)}"},
        )
        assert response.status_code == 400
        settings.PMLM_CDS_MAX_REQUEST_BYTES = 1000
        patient_id, prefetch = synthea_prefetch()
        assert call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).status_code == 413

    def test_an_unknown_service_is_a_404_and_a_get_a_405_both_in_json(self, client, north_ehr, north_key):
        response = call(client, {}, token_for(north_key), path="/cds-services/nothing-here")
        assert response.status_code == 404
        assert "GET /cds-services" in response.json()["error"]
        wrong = client.get(f"/cds-services/{SERVICE_ID}")
        assert wrong.status_code == 405
        assert wrong["Allow"] == "POST"
        assert wrong.json()["error"]


class TestWhatWasNotPrefetched:
    def test_it_is_fetched_from_the_ehrs_fhir_server_with_the_token_the_ehr_gave(self, client, north_ehr, north_key):
        patient_id, prefetch = synthea_prefetch()
        ehr = FakeEHR(
            resources={
                template.replace("{{context.patientId}}", patient_id): prefetch[key]
                or {"resourceType": "Bundle", "type": "searchset", "total": 0}
                for key, (template, _) in PREFETCH.items()
                if key != "patient"
            }
        )
        try:
            body = patient_view_body(
                patient_id,
                {"patient": prefetch["patient"]},
                fhirServer=ehr.fhir,
                fhirAuthorization={
                    "access_token": ehr.access_token,
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "patient/*.read",
                    "subject": "pmlm",
                },
            )
            response = call(client, body, token_for(north_key))
        finally:
            ehr.close()
        assert response.status_code == 200, response.content
        assert any(c["source"].get("topic", {}).get("code") == "hypertension" for c in response.json()["cards"])
        assert sorted(ehr.requests) == sorted(
            f"/fhir/{template.replace('{{context.patientId}}', patient_id)}"
            for key, (template, _) in PREFETCH.items()
            if key != "patient"
        )

    def test_a_fhir_server_that_does_not_answer_gets_a_clear_412_within_the_timeout(
        self, client, north_ehr, north_key, settings
    ):
        settings.PMLM_CDS_FHIR_TIMEOUT_SECONDS = 0.5
        silent = SilentServer()
        patient_id, prefetch = synthea_prefetch()
        body = patient_view_body(
            patient_id,
            {"patient": prefetch["patient"]},
            fhirServer=silent.url,
            fhirAuthorization={
                "access_token": "t",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "x",
                "subject": "s",
            },
        )
        before = stored_counts()
        started = time.monotonic()
        try:
            response = call(client, body, token_for(north_key))
        finally:
            silent.close()
        assert time.monotonic() - started < 3
        assert response.status_code == 412
        assert "did not answer within 0.5 s" in response.json()["error"]
        assert stored_counts() == before

    def test_without_a_fhir_server_what_is_missing_is_a_412_naming_it(self, client, north_ehr, north_key):
        patient_id, prefetch = synthea_prefetch()
        del prefetch["observations"]
        response = call(client, patient_view_body(patient_id, prefetch), token_for(north_key))
        assert response.status_code == 412
        assert "observations was not prefetched" in response.json()["error"]


class TestSmartLaunch:
    @pytest.fixture
    def filed(self, client, north_ehr, north_key, organisation):
        """Her chart opened in the North EHR: the hook filed her record."""
        patient_id, prefetch = synthea_prefetch()
        assert call(client, patient_view_body(patient_id, prefetch), token_for(north_key)).status_code == 200
        client.logout()
        return organisation.patients.get(external_id=patient_id)

    def test_in_the_demo_the_cards_link_opens_her_workspace_for_a_signed_in_clinician_of_that_organisation(
        self, client_for, clinician, filed, north_ehr
    ):
        response = client_for(clinician).get(
            "/smart/launch", {"iss": north_ehr.fhir_base_url, "launch": "xyz", "patient": filed.external_id}
        )
        assert response.status_code == 302
        assert response["Location"] == f"/patients/{filed.pk}/"
        assert AuditEvent.objects.filter(action=AuditAction.SMART_LAUNCH, object_id=str(filed.pk)).exists()

    def test_a_clinician_of_another_organisation_is_refused_and_sees_nothing_of_her(
        self, client_for, filed, north_ehr, other_organisation
    ):
        outsider = make_member("dr-south", other_organisation, pm.Role.CLINICIAN)
        response = client_for(outsider).get(
            "/smart/launch", {"iss": north_ehr.fhir_base_url, "launch": "xyz", "patient": filed.external_id}
        )
        assert response.status_code == 403
        assert filed.family_name not in response.content.decode()
        assert AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED).exists()

    def test_an_unknown_ehr_or_a_patient_it_never_shared_is_refused_with_a_reason(
        self, client_for, clinician, filed, north_ehr
    ):
        client = client_for(clinician)
        unknown = client.get("/smart/launch", {"iss": "https://nobody.example/fhir", "launch": "x", "patient": "p"})
        assert unknown.status_code == 400
        assert "registered" in unknown.content.decode()
        unshared = client.get("/smart/launch", {"iss": north_ehr.fhir_base_url, "launch": "x", "patient": "p-never"})
        assert unshared.status_code == 404
        assert "has not been shared" in unshared.content.decode()

    def test_a_launch_needs_a_clinic_sign_in(self, client, filed, north_ehr):
        response = client.get("/smart/launch", {"iss": north_ehr.fhir_base_url, "launch": "x", "patient": "p"})
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")

    def test_with_an_authorisation_server_it_is_a_standard_smart_launch_with_pkce_and_state(
        self, client_for, clinician, filed, north_ehr
    ):
        ehr = FakeEHR(patient=filed.external_id)
        north_ehr.fhir_base_url, north_ehr.smart_client_id = ehr.fhir, "pmlm-clinic"
        north_ehr.save()
        client = client_for(clinician)
        try:
            start = client.get("/smart/launch", {"iss": ehr.fhir, "launch": "launch-123"})
            assert start.status_code == 302
            assert start["Location"].startswith(f"{ehr.base}/authorize?")
            back = ehr.authorise(start["Location"])
            assert back.startswith("http://testserver/smart/callback?")
            landed = client.get(back.removeprefix("http://testserver"))
            again = client.get(back.removeprefix("http://testserver"))  # the same state cannot be used twice
        finally:
            ehr.close()
        assert landed.status_code == 302, landed.content
        assert landed["Location"] == f"/patients/{filed.pk}/"
        assert again.status_code == 400
        assert "/token" in ehr.requests

    def test_a_token_endpoint_that_refuses_the_code_leaves_her_workspace_closed(
        self, client_for, clinician, filed, north_ehr
    ):
        ehr = FakeEHR(patient=filed.external_id)
        north_ehr.fhir_base_url, north_ehr.smart_client_id = ehr.fhir, "pmlm-clinic"
        north_ehr.save()
        client = client_for(clinician)
        try:
            start = client.get("/smart/launch", {"iss": ehr.fhir, "launch": "launch-123"})
            back = ehr.authorise(start["Location"])
            ehr.codes.clear()  # the code expired at the EHR
            landed = client.get(back.removeprefix("http://testserver"))
        finally:
            ehr.close()
        assert landed.status_code == 502
        assert "refused the code" in landed.content.decode()


class TestRegisteringEHRs:
    def test_a_curator_registers_an_ehr_for_her_organisation_and_never_sees_another_organisations(
        self, curator_client, organisation, south_ehr, north_key
    ):
        page = curator_client.get("/admin/cdshooks/ehrclient/")
        assert page.status_code == 200
        assert "South EHR" not in page.content.decode()
        assert curator_client.get(f"/admin/cdshooks/ehrclient/{south_ehr.pk}/change/").status_code in (302, 404)
        response = curator_client.post(
            "/admin/cdshooks/ehrclient/add/",
            {
                "organisation": organisation.pk,
                "name": "North EHR",
                "issuer": NORTH_ISSUER,
                "jwks": json.dumps(public_jwks(north_key, kid="north-1")),
                "jwks_url": "",
                "fhir_base_url": "https://ehr.north.example/fhir/",
                "smart_client_id": "",
                "active": "on",
            },
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        registered = EHRClient.objects.get(issuer=NORTH_ISSUER)
        assert registered.organisation == organisation
        assert registered.fhir_base_url == "https://ehr.north.example/fhir"

    def test_a_private_key_is_never_accepted_as_an_ehrs_keys(self, curator_client, organisation, north_key):
        import jwt as pyjwt

        private = pyjwt.algorithms.ECAlgorithm.to_jwk(north_key, as_dict=True)
        response = curator_client.post(
            "/admin/cdshooks/ehrclient/add/",
            {
                "organisation": organisation.pk,
                "name": "Careless",
                "issuer": "https://careless.example",
                "jwks": json.dumps({"keys": [{**private, "kid": "k"}]}),
                "active": "on",
            },
        )
        assert response.status_code == 200
        assert "private key" in response.content.decode()
        assert not EHRClient.objects.filter(issuer="https://careless.example").exists()
