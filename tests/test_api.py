"""Partner API v1: tokens, organisation scoping, FHIR in and out, prompts, guidance, conventions."""

import pytest
from django.core.management import call_command

from api.models import ApiToken
from api.throttling import TokenRateThrottle
from api.tokens import token_issue, token_revoke
from patients import models as pm
from prompting.guidance import guidance_request_run
from prompting.models import ClinicianRating, GuidanceRequest, PeerModel
from tests import fhir_builders as fb
from tests.conftest import make_member
from tests.helpers import FHIR, is_error


def test_a_patient_is_written_exactly_as_drf_s_own_fields_would_write_her(imported_patient, foreign_patient):
    from datetime import date, datetime
    from datetime import timezone as tz

    from rest_framework import serializers

    from api.serializers import PatientSerializer

    imported_patient.deceased_at = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=tz.utc)
    imported_patient.pregnancy_start, imported_patient.pregnancy_end = date(2024, 6, 1), date(2025, 2, 20)
    imported_patient.last_encounter_at = datetime(2025, 2, 1, 9, 30, tzinfo=tz.utc)
    for patient in (imported_patient, foreign_patient):
        serializer = PatientSerializer()
        assert serializer.to_representation(patient) == dict(
            serializers.ModelSerializer.to_representation(serializer, patient)
        )


class TestTokens:
    def test_issue_token_prints_the_token_on_its_last_line_and_keeps_only_its_digest(self, partner, capsys, api):
        call_command("issue_token", partner.username, "--name", "EHR")
        token = capsys.readouterr().out.strip().splitlines()[-1]
        record = ApiToken.objects.get()
        assert token.startswith(record.prefix)
        assert token not in (record.digest, record.prefix)
        assert len(record.digest) == 64
        assert api("get", "/api/v1/patients/", token).status_code == 200

    def test_a_revoked_a_wrong_or_a_missing_token_is_refused_with_the_error_shape(self, partner, api):
        record, token = token_issue(username=partner.username)
        token_revoke(token=record)
        assert is_error(api("get", "/api/v1/patients/", token), 401)
        assert is_error(api("get", "/api/v1/patients/", "pmlm_0000_nope"), 401)
        assert is_error(api("get", "/api/v1/patients/"), 401)

    def test_a_token_used_once_is_refused_as_soon_as_it_is_revoked(self, partner, api):
        record, token = token_issue(username=partner.username)
        assert api("get", "/api/v1/patients/", token).status_code == 200  # now cached
        token_revoke(token=record)
        assert is_error(api("get", "/api/v1/patients/", token), 401)

    def test_a_token_used_once_is_refused_as_soon_as_its_account_is_deactivated_or_revoked_in_the_admin(
        self, partner, api
    ):
        record, token = token_issue(username=partner.username)
        assert api("get", "/api/v1/patients/", token).status_code == 200
        partner.is_active = False
        partner.save()
        assert is_error(api("get", "/api/v1/patients/", token), 401)
        partner.is_active = True
        partner.save()
        assert api("get", "/api/v1/patients/", token).status_code == 200
        ApiToken.objects.get(pk=record.pk).delete()
        assert is_error(api("get", "/api/v1/patients/", token), 401)

    def test_a_token_whose_account_moves_organisation_sees_only_the_new_one_at_once(
        self, partner, partner_token, api, imported_patient, other_organisation
    ):
        assert api("get", "/api/v1/patients/pat-1/", partner_token).status_code == 200
        membership = partner.membership
        membership.organisation = other_organisation
        membership.save()
        assert is_error(api("get", "/api/v1/patients/pat-1/", partner_token), 404)

    def test_a_second_request_with_the_same_token_does_not_look_it_up_again(self, partner_token, api):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        api("get", "/api/v1/patients/", partner_token)
        with CaptureQueriesContext(connection) as queries:
            assert api("get", "/api/v1/patients/", partner_token).status_code == 200
        assert not [q for q in queries.captured_queries if "api_apitoken" in q["sql"]]

    def test_a_user_outside_any_organisation_gets_no_token(self, db):
        from api.tokens import TokenError
        from tests.factories import UserFactory

        UserFactory(username="loner")
        with pytest.raises(TokenError, match="not a member"):
            token_issue(username="loner")


class TestPatients:
    def test_the_list_is_paginated_filtered_and_ordered_within_the_organisation(
        self, api, partner_token, imported_patient, foreign_patient
    ):
        body = api("get", "/api/v1/patients/", partner_token).json()
        assert set(body) == {"count", "next", "previous", "results"}
        assert body["count"] == 1
        assert body["results"][0]["id"] == "pat-1"
        assert api("get", "/api/v1/patients/?q=Riv&ordering=-last_encounter_at", partner_token).json()["count"] == 1
        assert api("get", "/api/v1/patients/?q=nobody", partner_token).json()["count"] == 0
        assert api("get", "/api/v1/patients/?pregnant=true", partner_token).json()["count"] == 0  # her episode ended
        assert is_error(api("get", "/api/v1/patients/?ordering=birth_date", partner_token), 400)
        assert is_error(api("get", "/api/v1/patients/?pregnant=maybe", partner_token), 400)

    def test_every_endpoint_refuses_another_organisations_patient_with_404(
        self, api, partner_token, their_token, imported_patient, tiny_policy
    ):
        guidance = GuidanceRequest.objects.create(
            patient=imported_patient, question="q", consultation_date="2025-05-02", endpoint=tiny_policy
        )
        for method, path, body in [
            ("get", "/api/v1/patients/pat-1/", None),
            ("get", "/api/v1/patients/pat-1/bundle/", None),
            ("post", "/api/v1/patients/pat-1/prompt/", {"question": "What now?"}),
            ("post", "/api/v1/patients/pat-1/guidance/", {"question": "What now?"}),
            ("get", f"/api/v1/guidance/{guidance.pk}/", None),
            (
                "post",
                f"/api/v1/guidance/{guidance.pk}/ratings/",
                {"accuracy": 5, "completeness": 5, "personalisation": 5, "safety": 5, "clarity": 5},
            ),
        ]:
            assert is_error(api(method, path, their_token, body), 404), path
            assert api(method, path, partner_token, body).status_code < 400 or path.endswith("ratings/"), path
        assert api("get", "/api/v1/patients/", their_token).json()["count"] == 0
        assert GuidanceRequest.objects.count() == 2
        assert not ClinicianRating.objects.exists()


class TestFhir:
    def test_a_bundle_is_imported_all_or_nothing_and_exported_back(self, api, partner_token, organisation):
        response = api("post", "/api/v1/bundles/", partner_token, fb.small_bundle("pat-api"), content_type=FHIR)
        assert response.status_code == 200, response.content
        assert response.json()["patients"] == ["pat-api"]
        assert response.json()["created"] > 0
        exported = api("get", "/api/v1/patients/pat-api/bundle/", partner_token)
        assert exported["Content-Type"].startswith(FHIR)
        assert exported.json()["resourceType"] == "Bundle"
        again = api("post", "/api/v1/bundles/", partner_token, fb.small_bundle("pat-api"), content_type=FHIR)
        assert again.json()["created"] == 0  # idempotent

    def test_a_broken_bundle_is_refused_with_an_operation_outcome_naming_resource_and_field(
        self, api, partner_token, organisation
    ):
        broken = fb.with_resource(
            fb.small_bundle("pat-bad"), "pat-bad-weight", lambda r: r["valueQuantity"].update(value="heavy")
        )
        response = api("post", "/api/v1/bundles/", partner_token, broken, content_type=FHIR)
        body = response.json()
        assert response.status_code == 422
        assert body["resourceType"] == "OperationOutcome"
        assert body["error"]["code"] == "invalid_fhir"
        assert body["issue"][0]["expression"] == ["Observation.valueQuantity.value"]
        assert "Observation/pat-bad-weight" in body["issue"][0]["diagnostics"]
        assert not pm.Patient.objects.filter(external_id="pat-bad").exists()

    def test_oversized_wrong_type_and_clinician_imports_are_refused_early(
        self, api, partner_token, clinician, settings, organisation
    ):
        settings.PMLM_MAX_BUNDLE_BYTES = 1000
        assert is_error(api("post", "/api/v1/bundles/", partner_token, fb.small_bundle("big"), content_type=FHIR), 413)
        assert is_error(
            api("post", "/api/v1/bundles/", partner_token, "<Bundle/>", content_type="application/xml"), 415
        )
        assert is_error(api("post", "/api/v1/bundles/", partner_token, "{not json", content_type=FHIR), 400)
        clinician_token = token_issue(username=clinician.username)[1]
        settings.PMLM_MAX_BUNDLE_BYTES = 10_000_000
        assert is_error(api("post", "/api/v1/bundles/", clinician_token, fb.small_bundle("c"), content_type=FHIR), 403)
        assert not pm.Patient.objects.exists()


class TestPromptsAndGuidance:
    def test_the_prompt_is_the_build_prompt_json_and_names_nobody(self, api, partner_token, imported_patient):
        body = api(
            "post", "/api/v1/patients/pat-1/prompt/", partner_token, {"question": "Plan?", "at": "2025-05-02"}
        ).json()
        assert set(body) == {"patient", "template_version", "prompt", "deidentified", "sections", "risk_flags", "peers"}
        assert body["patient"] == "pat-1"
        assert body["deidentified"] is True
        assert "Rivera" not in body["prompt"]

    def test_guidance_is_accepted_with_a_location_and_a_retry_with_the_same_key_is_the_same_request(
        self, api, partner_token, imported_patient, tiny_policy, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as queued:
            first = api(
                "post",
                "/api/v1/patients/pat-1/guidance/",
                partner_token,
                {"question": "Plan?", "at": "2025-05-02"},
                **{"Idempotency-Key": "visit-42"},
            )
        again = api(
            "post",
            "/api/v1/patients/pat-1/guidance/",
            partner_token,
            {"question": "Plan?", "at": "2025-05-02"},
            **{"Idempotency-Key": "visit-42"},
        )
        assert first.status_code == 202 == again.status_code
        assert len(queued) == 1
        assert first["Location"] == f"/api/v1/guidance/{first.json()['id']}/"
        assert again.json()["id"] == first.json()["id"]
        assert GuidanceRequest.objects.count() == 1
        assert first.json()["status"] == "queued"

        guidance_request_run(guidance_id=first.json()["id"])
        done = api("get", first["Location"], partner_token).json()
        assert done["status"] == "done"
        assert done["guidance"]
        assert done["prompt"]
        assert "notice" in done
        rating = {
            "accuracy": 4,
            "completeness": 4,
            "personalisation": 3,
            "safety": 5,
            "clarity": 4,
            "would_follow": True,
        }
        created = api("post", f"{first['Location']}ratings/", partner_token, rating)
        assert created.status_code == 201
        assert created.json()["rater"] == "partner-north"
        assert is_error(api("post", f"{first['Location']}ratings/", partner_token, {**rating, "safety": 9}), 400)

    def test_an_unknown_endpoint_and_a_bad_question_are_refused_with_the_fields_named(
        self, api, partner_token, imported_patient
    ):
        response = api(
            "post", "/api/v1/patients/pat-1/guidance/", partner_token, {"question": "Plan?", "endpoint": "gpt-99"}
        )
        assert is_error(response, 400)
        assert "gpt-99" in response.json()["error"]["message"]
        response = api("post", "/api/v1/patients/pat-1/prompt/", partner_token, {"question": "x" * 2001})
        assert is_error(response, 400)
        assert "question" in response.json()["error"]["fields"]
        assert is_error(api("post", "/api/v1/patients/pat-1/prompt/", partner_token, {"question": "x" * 70_000}), 413)
        assert not GuidanceRequest.objects.exists()


class TestConventions:
    def test_models_are_listed_read_only_for_the_organisation(
        self, api, partner_token, organisation, other_organisation
    ):
        PeerModel.objects.create(organisation=organisation, version=1, status="done")
        PeerModel.objects.create(organisation=other_organisation, version=7, status="done")
        body = api("get", "/api/v1/peer-models/", partner_token).json()
        assert [m["version"] for m in body["results"]] == [1]
        assert api("get", "/api/v1/refinement-runs/", partner_token).json()["count"] == 0
        assert is_error(api("post", "/api/v1/peer-models/", partner_token, {}), 405)

    def test_each_token_is_throttled_with_a_retry_after(self, api, partner_token, their_token, monkeypatch):
        from django.core.cache import cache

        cache.clear()
        monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
        statuses = [api("get", "/api/v1/patients/", partner_token).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        throttled = api("get", "/api/v1/patients/", partner_token)
        assert is_error(throttled, 429)
        assert int(throttled["Retry-After"]) > 0
        assert api("get", "/api/v1/patients/", their_token).status_code == 200  # another token has its own budget
        cache.clear()

    def test_the_schema_is_openapi_3_and_the_docs_are_served_without_a_cdn(self, client):
        schema = client.get("/api/schema/?format=json")
        assert schema.status_code == 200
        assert schema.json()["openapi"].startswith("3.")
        assert "/api/v1/patients/{patient_id}/guidance/" in schema.json()["paths"]
        docs = client.get("/api/docs/").content.decode()
        assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs
        assert "cdn" not in docs.lower()


class TestTokenAdmin:
    def test_a_curator_issues_a_token_in_the_admin_sees_it_once_and_revokes_it(self, client_for, curator, partner, api):
        from patients.demo.seed import curator_group_ensure

        curator.groups.add(curator_group_ensure())
        client = client_for(curator)
        response = client.post("/admin/api/apitoken/add/", {"user": partner.pk, "name": "Lab system"}, follow=True)
        message = next(m.message for m in response.context["messages"] if "New token" in m.message)
        token = message.rsplit(" ", 1)[-1]
        record = ApiToken.objects.get(name="Lab system")
        assert token.startswith(record.prefix)
        assert token not in record.digest
        assert api("get", "/api/v1/patients/", token).status_code == 200
        client.post("/admin/api/apitoken/", {"action": "revoke", "_selected_action": [record.pk]})
        assert is_error(api("get", "/api/v1/patients/", token), 401)

    def test_a_curator_cannot_issue_a_token_for_another_organisations_account(
        self, client_for, curator, other_organisation
    ):
        from patients.demo.seed import curator_group_ensure

        theirs = make_member("partner-south", other_organisation, pm.Role.PARTNER)
        curator.groups.add(curator_group_ensure())
        response = client_for(curator).post("/admin/api/apitoken/add/", {"user": theirs.pk, "name": "sneaky"})
        assert response.status_code == 200
        assert b"Select a valid choice" in response.content
        assert not ApiToken.objects.exists()
