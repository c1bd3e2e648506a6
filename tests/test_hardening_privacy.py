"""Privacy: nothing with patient data may be kept by a browser or a proxy; refused attempts to reach
another organisation's objects are audited; list reads record which patients were shown."""

from audit.models import AuditAction, AuditEvent
from prompting.models import EvaluationRun, GuidanceRequest, RefinementRun
from tests.helpers import is_error


def no_store(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return {"no-store", "private"} <= directives and "public" not in directives


def denials() -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED)
        .order_by("id")
        .values_list("object_type", "object_id")
    )


class TestNoStore:
    def test_pages_the_api_the_admin_and_exports_are_never_stored_by_a_cache(
        self, client_for, client, clinician, curator, imported_patient, api, partner_token
    ):
        page = client_for(clinician)
        for url in ("/patients/", f"/patients/{imported_patient.pk}/", f"/patients/{imported_patient.pk + 999}/"):
            assert no_store(page.get(url)), url
        for url in (
            "/api/v1/patients/",
            "/api/v1/patients/pat-1/",
            "/api/v1/patients/pat-1/bundle/",
            "/api/v1/nowhere/",
        ):
            assert no_store(api("get", url, partner_token)), url
        assert no_store(client_for(curator).get("/admin/"))

    def test_static_files_stay_cacheable(self, client_for, clinician):
        response = client_for(clinician).get("/static/css/clinic.css")
        assert response.status_code == 200
        assert not no_store(response)


class TestDeniedAttemptsAreAudited:
    def test_a_page_lookup_of_another_organisations_patient_is_refused_and_audited(
        self, client_for, outsider, imported_patient
    ):
        client = client_for(outsider)
        assert client.get(f"/patients/{imported_patient.pk}/").status_code == 404
        assert client.post(f"/patients/{imported_patient.pk}/guidance/", {"question": "Plan?"}).status_code == 404
        event = AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED).first()
        assert denials() == [("patients.Patient", str(imported_patient.pk))] * 2
        assert event.actor == outsider
        assert event.details["reason"].startswith("exists outside")

    def test_an_api_lookup_of_another_organisations_patient_or_guidance_is_refused_and_audited(
        self, api, their_token, imported_patient, tiny_policy
    ):
        guidance = GuidanceRequest.objects.create(
            patient=imported_patient, question="q", consultation_date="2025-05-02", endpoint=tiny_policy
        )
        assert is_error(api("get", "/api/v1/patients/pat-1/", their_token), 404)
        assert is_error(api("get", f"/api/v1/guidance/{guidance.pk}/", their_token), 404)
        assert is_error(api("get", "/api/v1/patients/no-such-patient/", their_token), 404)
        assert denials() == [
            ("patients.Patient", "pat-1"),
            ("prompting.GuidanceRequest", str(guidance.pk)),
            ("patients.Patient", "no-such-patient"),
        ]
        reasons = list(
            AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED)
            .order_by("id")
            .values_list("details__reason", "surface")
        )
        assert reasons[-1] == ("no such object", "api")
        assert reasons[0][0].startswith("exists outside")

    def test_a_guidance_or_run_of_another_organisation_by_id_is_refused_and_audited(
        self, client_for, outsider, imported_patient, other_organisation, organisation, tiny_policy
    ):
        from patients.models import Role
        from tests.conftest import make_member

        guidance = GuidanceRequest.objects.create(
            patient=imported_patient, question="q", consultation_date="2025-05-02", endpoint=tiny_policy
        )
        refinement = RefinementRun.objects.create(organisation=organisation, version=1)
        evaluation = EvaluationRun.objects.create(organisation=organisation)
        their_curator = make_member("curator-south", other_organisation, Role.CURATOR)
        client = client_for(their_curator)
        assert client.get(f"/refinement/{refinement.pk}/").status_code == 404
        assert client.get(f"/evaluations/{evaluation.pk}/").status_code == 404
        own = client_for(outsider)
        assert own.get(f"/patients/{imported_patient.pk}/guidance/{guidance.pk}/").status_code == 404
        assert [t for t, _ in denials()] == ["prompting.RefinementRun", "prompting.EvaluationRun", "patients.Patient"]


class TestListReadsNameThePatientsShown:
    def test_the_patient_list_page_records_the_database_ids_it_showed(
        self, client_for, clinician, imported_patient, foreign_patient
    ):
        client_for(clinician).get("/patients/")
        event = AuditEvent.objects.get(action=AuditAction.VIEW_PATIENT_LIST)
        assert event.details["patients"] == [imported_patient.pk]
        assert event.details["shown"] == 1

    def test_the_api_patient_list_records_the_database_ids_of_the_page_it_returned(
        self, api, partner_token, imported_patient, foreign_patient
    ):
        assert api("get", "/api/v1/patients/?page_size=1", partner_token).status_code == 200
        event = AuditEvent.objects.get(action=AuditAction.API_READ)
        assert event.details["patients"] == [imported_patient.pk]
        assert event.details["count"] == 1
