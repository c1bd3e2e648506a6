"""Bad input is a 4xx in the API's error shape (or a clear message on a page, a named rejection in
import_fhir), never a server error: deep JSON, NUL characters, dates out of range, FHIR datetimes
that overflow, and values of the wrong JSON type. Anything still unforeseen is a JSON 500, logged."""

import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from patients import models as pm
from patients.fhir.parse import FhirError, parse_bundle
from pmlm_site.safejson import MAX_JSON_DEPTH, nesting_depth
from prompting.errors import GuidanceError
from prompting.guidance import guidance_request_create
from prompting.models import ABComparison, ABJudgement, GuidanceRequest
from prompting.prompts import PromptError, prompt_build
from tests import fhir_builders as fb
from tests.helpers import FHIR, is_error

DEEP = "[" * 10_000 + "]" * 10_000
OVERFLOWING = "0001-01-01T00:00:00+14:00"  # before year 1 once converted to UTC


def overflowing_bundle(pid="pat-old"):
    return fb.with_resource(fb.small_bundle(pid), f"{pid}-weight", lambda r: r.update(effectiveDateTime=OVERFLOWING))


class TestDeepJson:
    def test_json_nested_ten_thousand_deep_is_refused_with_400_in_the_error_shape_on_every_json_endpoint(
        self, api, partner_token, imported_patient, tiny_policy
    ):
        for path, content_type in (
            ("/api/v1/bundles/", FHIR),
            ("/api/v1/bundles/", "application/json"),
            ("/api/v1/patients/pat-1/prompt/", "application/json"),
            ("/api/v1/patients/pat-1/guidance/", "application/json"),
        ):
            response = api("post", path, partner_token, DEEP, content_type=content_type)
            assert is_error(response, 400) and "nested" in response.json()["error"]["message"], path
        assert not GuidanceRequest.objects.exists()

    def test_a_real_bundle_is_far_from_the_depth_limit_and_brackets_inside_strings_do_not_count(self):
        assert nesting_depth(json.dumps(fb.small_bundle()).encode()) < MAX_JSON_DEPTH // 4
        assert nesting_depth(b'{"text": "[[[[[[[[[[ \\" {{{{{{{{"}') == 1

    def test_import_fhir_rejects_a_bundle_file_nested_too_deep_and_still_imports_the_next(self, organisation, tmp_path):
        (tmp_path / "a-deep.json").write_text(DEEP)
        (tmp_path / "b-good.json").write_text(json.dumps(fb.small_bundle("pat-good")))
        with pytest.raises(CommandError, match="a-deep.json.*nested"):
            call_command("import_fhir", str(tmp_path), "--org", organisation.slug)
        assert organisation.patients.filter(external_id="pat-good").exists()
        assert sorted(pm.BundleImport.objects.values_list("status", flat=True)) == ["imported", "rejected"]


class TestNul:
    def test_a_nul_in_an_api_query_or_patient_id_is_a_400_in_the_error_shape(
        self, api, partner_token, imported_patient
    ):
        assert is_error(api("get", "/api/v1/patients/?q=Riv%00era", partner_token), 400)
        assert is_error(api("get", "/api/v1/patients/pat%001/", partner_token), 400)
        assert is_error(api("get", "/api/v1/patients/pat%001/bundle/", partner_token), 400)

    def test_a_nul_in_a_page_search_or_address_is_a_400_not_a_server_error(
        self, client_for, clinician, imported_patient
    ):
        client = client_for(clinician)
        assert client.get("/patients/", {"q": "Riv\x00era"}).status_code == 400
        assert client.get(f"/patients/{imported_patient.pk}/%00").status_code == 400

    def test_a_nul_in_a_json_string_is_refused_with_the_field_named(
        self, api, partner_token, imported_patient, tiny_policy
    ):
        response = api("post", "/api/v1/patients/pat-1/prompt/", partner_token, {"question": "Plan?\u0000"})
        assert is_error(response, 400)
        assert "question" in response.json()["error"]["fields"]
        response = api(
            "post",
            "/api/v1/patients/pat-1/guidance/",
            partner_token,
            {"question": "Plan?"},
            **{"Idempotency-Key": "key\x00"},
        )
        assert is_error(response, 400)
        assert not GuidanceRequest.objects.exists()

    def test_the_patient_selector_ignores_a_nul_in_the_search_text(self, organisation, imported_patient):
        from django.utils import timezone

        from patients.selectors import patient_list

        assert list(patient_list(organisation=organisation, query="Riv\x00", on=timezone.now().date())) == [
            imported_patient
        ]

    def test_a_nul_in_an_ab_pick_comment_is_dropped_before_it_reaches_the_database(
        self, client_for, clinician, cohort, tiny_policy
    ):
        from prompting.ratings import ab_comparison_create

        her = cohort[1]
        comparison = ab_comparison_create(
            patient=her, question="What now?", kind=ABComparison.Kind.RETRIEVAL, at=date(2025, 5, 2), user=clinician
        )
        for guidance in (comparison.guidance_a, comparison.guidance_b):
            GuidanceRequest.objects.filter(pk=guidance.pk).update(status="done", text="Answer.")
        response = client_for(clinician).post(
            f"/patients/{her.pk}/ab/{comparison.pk}/pick/", {"choice": "a", "comment": "fine\x00"}
        )
        assert response.status_code == 200
        assert ABJudgement.objects.get().comment == "fine"


class TestConsultationDates:
    def test_a_date_out_of_range_is_refused_by_the_prompt_and_guidance_endpoints(
        self, api, partner_token, imported_patient, tiny_policy
    ):
        for at in ("9999-12-31", "0001-01-01"):
            for path in ("/api/v1/patients/pat-1/prompt/", "/api/v1/patients/pat-1/guidance/"):
                response = api("post", path, partner_token, {"question": "Plan?", "at": at})
                assert is_error(response, 400) and "at" in response.json()["error"]["fields"], (path, at)
        assert not GuidanceRequest.objects.exists()

    def test_the_services_refuse_it_so_every_surface_does(self, imported_patient, tiny_policy):
        with pytest.raises(PromptError, match="consultation date"):
            prompt_build(patient=imported_patient, question="Plan?", at=date(9999, 12, 31))
        with pytest.raises(GuidanceError, match="consultation date"):
            guidance_request_create(patient=imported_patient, question="Plan?", at=date(9999, 12, 31))
        assert not GuidanceRequest.objects.exists()

    def test_the_page_says_so_instead_of_failing(self, client_for, clinician, imported_patient, tiny_policy):
        client = client_for(clinician)
        prompt = client.post(f"/patients/{imported_patient.pk}/prompt/", {"question": "Plan?", "at": "9999-12-31"})
        guidance = client.post(f"/patients/{imported_patient.pk}/guidance/", {"question": "Plan?", "at": "9999-12-31"})
        for response in (prompt, guidance):
            assert response.status_code == 200
            assert b"consultation date must be between" in response.content
        assert not GuidanceRequest.objects.exists()


class TestFhirDatesThatOverflow:
    def test_the_parser_rejects_a_datetime_before_year_one_in_utc_naming_the_resource_and_field(self):
        with pytest.raises(FhirError) as error:
            parse_bundle(overflowing_bundle())
        assert error.value.resource == "Observation/pat-old-weight"
        assert error.value.field == "effectiveDateTime"

    def test_an_id_with_a_trailing_newline_is_not_a_fhir_id(self):
        with pytest.raises(FhirError, match="1–64 letters"):
            parse_bundle(fb.bundle(fb.patient("pat-1\n")))

    def test_the_api_refuses_the_bundle_with_an_operation_outcome(self, api, partner_token, organisation):
        response = api("post", "/api/v1/bundles/", partner_token, overflowing_bundle(), content_type=FHIR)
        body = response.json()
        assert response.status_code == 422
        assert body["issue"][0]["expression"] == ["Observation.effectiveDateTime"]
        assert not pm.Patient.objects.exists()

    def test_import_fhir_records_the_rejection_and_still_imports_the_bundles_after_it(self, organisation, tmp_path):
        (tmp_path / "a-old.json").write_text(json.dumps(overflowing_bundle()))
        (tmp_path / "b-good.json").write_text(json.dumps(fb.small_bundle("pat-good")))
        with pytest.raises(CommandError, match="Observation/pat-old-weight field 'effectiveDateTime'"):
            call_command("import_fhir", str(tmp_path), "--org", organisation.slug)
        assert list(organisation.patients.values_list("external_id", flat=True)) == ["pat-good"]
        rejected = pm.BundleImport.objects.get(status="rejected")
        assert "a-old.json" in rejected.source
        assert "effectiveDateTime" in rejected.error
        assert pm.BundleImport.objects.filter(status="imported").count() == 1


class TestUnforeseenFaults:
    def test_an_unexpected_exception_in_the_api_is_a_json_500_in_the_error_shape_and_is_logged(
        self, api, partner_token, imported_patient, monkeypatch, caplog
    ):
        def broken(patient):
            raise RuntimeError("a bug")

        monkeypatch.setattr("api.views.patient_bundle", broken)
        response = api("get", "/api/v1/patients/pat-1/bundle/", partner_token)
        assert is_error(response, 500)
        assert response["Content-Type"].startswith("application/json")
        assert "a bug" not in response.content.decode()  # the details stay in the log
        assert any(record.exc_info and "a bug" in str(record.exc_info[1]) for record in caplog.records)

    def test_an_unexpected_failure_on_one_bundle_is_recorded_and_the_next_bundle_still_imports(
        self, organisation, tmp_path, monkeypatch
    ):
        from patients import services

        real = services.store_bundle

        def fails_once(organisation, parsed):
            if any(r.fhir_id == "pat-a" for r in parsed.records):
                raise RuntimeError("a bug")
            return real(organisation, parsed)

        monkeypatch.setattr(services, "store_bundle", fails_once)
        (tmp_path / "a.json").write_text(json.dumps(fb.small_bundle("pat-a")))
        (tmp_path / "b.json").write_text(json.dumps(fb.small_bundle("pat-b")))
        with pytest.raises(CommandError, match="unexpected error"):
            call_command("import_fhir", str(tmp_path), "--org", organisation.slug)
        assert list(organisation.patients.values_list("external_id", flat=True)) == ["pat-b"]
        assert pm.BundleImport.objects.filter(status="rejected").count() == 1

    def test_an_unknown_api_address_with_a_newline_in_it_is_a_404_in_the_error_shape(self, api, partner_token):
        response = api("post", "/api/v1/guidance/1%0A2/ratings/", partner_token, {})
        assert is_error(response, 404)
        assert response["Content-Type"] == "application/json"


class TestValuesOfTheWrongType:
    @pytest.mark.parametrize("page_size", ["null", "0", "201", "ten", "-1", "1.5"])
    def test_a_page_size_that_is_not_a_whole_number_in_range_is_refused(
        self, api, partner_token, imported_patient, page_size
    ):
        response = api("get", f"/api/v1/patients/?page_size={page_size}", partner_token)
        assert is_error(response, 400)
        assert "page_size" in response.json()["error"]["fields"]
        assert api("get", "/api/v1/patients/?page_size=1", partner_token).json()["results"][0]["id"] == "pat-1"

    @pytest.mark.parametrize(
        "body",
        [
            {"question": 0},
            {"question": ["Plan?"]},
            {"question": "Plan?", "at": 20250502},
            {"question": "Plan?", "use_retrieval": "yes"},
            {"question": "Plan?", "use_retrieval": 1},
            {"question": "Plan?", "endpoint": 7},
        ],
    )
    def test_a_field_of_the_wrong_json_type_is_refused_not_converted(
        self, api, partner_token, imported_patient, tiny_policy, body
    ):
        path = (
            "/api/v1/patients/pat-1/guidance/"
            if set(body) & {"use_retrieval", "endpoint"}
            else "/api/v1/patients/pat-1/prompt/"
        )
        assert is_error(api("post", path, partner_token, body), 400)
        assert not GuidanceRequest.objects.exists()

    def test_a_rating_score_given_as_a_string_is_refused(self, api, partner_token, imported_patient, tiny_policy):
        guidance = GuidanceRequest.objects.create(
            patient=imported_patient,
            question="q",
            consultation_date="2025-05-02",
            endpoint=tiny_policy,
            status="done",
            text="Answer.",
        )
        scores = {"accuracy": 5, "completeness": 5, "personalisation": 5, "safety": 5, "clarity": 5}
        assert is_error(
            api("post", f"/api/v1/guidance/{guidance.pk}/ratings/", partner_token, {**scores, "safety": "5"}), 400
        )
        assert is_error(
            api("post", f"/api/v1/guidance/{guidance.pk}/ratings/", partner_token, {**scores, "would_follow": "yes"}),
            400,
        )
        assert api("post", f"/api/v1/guidance/{guidance.pk}/ratings/", partner_token, scores).status_code == 201
