"""Every surface of an operation (page, API, admin, command) goes through the same service, with the same checks."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from api.tokens import token_issue
from audit.models import AuditEvent
from patients import models as pm
from patients.services import patient_import_bundle
from prompting import models as pr
from prompting.errors import GuidanceError
from prompting.guidance import guidance_as_json, guidance_request_create
from prompting.prompts import MAX_QUESTION_CHARS
from tests.conftest import make_member
from tests.helpers import hypertensive_bundle
from tests.test_guidance import QUESTION

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient(organisation):
    assert patient_import_bundle(organisation=organisation, bundle=hypertensive_bundle(), source="test").ok
    return organisation.patients.get(external_id="p-bp")


@pytest.fixture
def queued(monkeypatch):
    started = []
    monkeypatch.setattr("prompting.tasks.run_comparison_task.delay", started.append)
    monkeypatch.setattr("prompting.tasks.index_knowledge_document_task.delay", started.append)
    return started


def _comparison_form(organisation, patient_ids):
    return {
        "organisation": organisation.pk,
        "patient_ids": json.dumps(patient_ids),
        "questions": json.dumps([QUESTION]),
        "endpoint_names": json.dumps(["smollm2-local"]),
    }


class TestAComparisonStartedInTheAdmin:
    def test_is_refused_on_its_form_for_a_patient_of_another_organisation(
        self, curator_client, organisation, patient, foreign_patient, queued
    ):
        response = curator_client.post(
            reverse("admin:prompting_comparisonrun_add"),
            _comparison_form(organisation, [patient.external_id, foreign_patient.external_id]),
        )
        assert response.status_code == 200
        assert f"Not patients of {organisation.slug}" in " ".join(response.context["adminform"].form.non_field_errors())
        assert not pr.ComparisonRun.objects.exists()
        assert not queued

    def test_cannot_be_started_for_another_organisation(
        self, curator_client, other_organisation, foreign_patient, queued
    ):
        response = curator_client.post(
            reverse("admin:prompting_comparisonrun_add"),
            _comparison_form(other_organisation, [foreign_patient.external_id]),
        )
        assert response.status_code == 200
        assert "organisation" in response.context["adminform"].form.errors
        assert not pr.ComparisonRun.objects.exists()
        assert not queued

    def test_is_refused_for_an_endpoint_that_does_not_exist(self, curator_client, organisation, patient, queued):
        form = {**_comparison_form(organisation, [patient.external_id]), "endpoint_names": json.dumps(["nope"])}
        response = curator_client.post(reverse("admin:prompting_comparisonrun_add"), form)
        assert "No active LLM endpoint named 'nope'" in " ".join(response.context["adminform"].form.non_field_errors())
        assert not pr.ComparisonRun.objects.exists()

    def test_is_created_and_queued_once_by_the_service_and_then_cannot_be_changed(
        self, django_capture_on_commit_callbacks, curator_client, curator, organisation, patient, queued
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = curator_client.post(
                reverse("admin:prompting_comparisonrun_add"), _comparison_form(organisation, [patient.external_id])
            )
        assert response.status_code == 302
        run = pr.ComparisonRun.objects.get()
        assert run.created_by == curator
        assert run.patient_ids == [patient.external_id]
        assert queued == [run.pk]
        change = reverse("admin:prompting_comparisonrun_change", args=[run.pk])
        curator_client.post(
            change, {**_comparison_form(organisation, [patient.external_id]), "questions": '["Other?"]'}
        )
        run.refresh_from_db()
        assert run.questions == [QUESTION]
        assert pr.ComparisonRun.objects.count() == 1


class TestAGuidanceDocument:
    def test_loaded_from_a_file_is_read_saved_and_indexed_by_the_service_the_admin_uses(self, tmp_path, capsys):
        source = tmp_path / "anaemia_in_pregnancy.md"
        source.write_text("# Anaemia\nGive daily oral iron and folic acid; recheck haemoglobin in four weeks.")
        call_command("load_knowledge", str(source), "--licence", "CC BY 4.0")
        document = pr.KnowledgeDocument.objects.get(external_key="file:anaemia_in_pregnancy.md")
        assert document.title == "anaemia in pregnancy"
        assert document.licence == "CC BY 4.0"
        assert "oral iron" in document.text
        assert document.chunks.count() >= 1
        assert "1 passages" in capsys.readouterr().out
        source.write_text("# Anaemia\nRecheck haemoglobin in two weeks.")
        call_command("load_knowledge", str(source))
        assert pr.KnowledgeDocument.objects.filter(external_key="file:anaemia_in_pregnancy.md").count() == 1
        assert (
            "two weeks"
            in pr.KnowledgeDocument.objects.get(external_key="file:anaemia_in_pregnancy.md").chunks.get().text
        )

    def test_that_is_not_text_is_refused_with_its_name_and_nothing_is_stored(self, tmp_path):
        source = tmp_path / "scan.pdf"
        source.write_bytes(b"not a pdf at all")
        with pytest.raises(Exception, match="scan.pdf is not a readable PDF"):
            call_command("load_knowledge", str(source))
        assert not pr.KnowledgeDocument.objects.exists()


def test_a_prompt_built_on_the_command_line_is_audited_like_one_built_on_a_page_or_through_the_api(patient, capsys):
    call_command("build_prompt", "--patient", patient.external_id, "--question", QUESTION, "--at", "2025-05-02")
    prompt = pr.PersonalizedPrompt.objects.get(patient=patient)
    event = AuditEvent.objects.get(action="build_prompt")
    assert event.object_id == str(patient.pk)
    assert event.details == {"prompt": prompt.pk}


def test_guidance_has_one_json_shape_for_ask_and_the_partner_api(client, organisation, patient, knowledge, capsys):
    call_command("ask", "--patient", patient.external_id, "--question", QUESTION, "--at", "2025-05-02", "--json")
    printed = json.loads(capsys.readouterr().out)
    guidance = pr.GuidanceRequest.objects.get()
    partner = make_member("partner-shape", organisation, pm.Role.PARTNER)
    token = token_issue(username=partner.username, name="EHR")[1]
    served = client.get(f"/api/v1/guidance/{guidance.pk}/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert printed == served == json.loads(json.dumps(guidance_as_json(guidance)))
    assert {"guidance", "citations", "backend", "model", "usage", "latency_ms", "prompt", "refinement"} <= set(printed)


def test_a_question_over_the_limit_is_refused_with_the_limit_the_forms_use(patient):
    with pytest.raises(GuidanceError, match=f"longer than {MAX_QUESTION_CHARS} characters"):
        guidance_request_create(patient=patient, question="x" * (MAX_QUESTION_CHARS + 1), run_inline=True)
