"""Building and storing personalised prompts, training peers, and who may see them."""

import json
from datetime import date, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from patients import models as pm
from patients.demo.seed import demo_seed
from patients.services import patient_import_bundle
from prompting.models import PeerModel, PeerProfile, PersonalizedPrompt
from prompting.peer_models import peer_model_create, peer_model_train
from prompting.pmlm.deidentify import leaks
from prompting.prompts import PromptError, prompt_as_json, prompt_build
from prompting.selectors import patient_history, patient_identifiers
from tests import fhir_builders as fb

QUESTION = "What should we plan for her next visit?"


def test_a_prompt_is_built_stored_and_reused_for_the_same_inputs(imported_patient, clinician):
    first = prompt_build(patient=imported_patient, question=QUESTION, at=date(2025, 5, 2), user=clinician)
    again = prompt_build(patient=imported_patient, question=QUESTION, at=date(2025, 5, 2), user=clinician)
    assert first.pk == again.pk
    assert PersonalizedPrompt.objects.count() == 1
    assert first.template_version == "pmlm-1"
    assert first.token_count > 50
    assert first.created_by == clinician
    assert "pregnant, 8+" in first.text  # onset 2025-03-01, consultation 2025-05-02


def test_the_json_has_exactly_the_interface_in_the_design(imported_patient):
    data = prompt_as_json(prompt_build(patient=imported_patient, question=QUESTION, at=date(2025, 5, 2)))
    assert set(data) == {"patient", "template_version", "prompt", "deidentified", "sections", "risk_flags", "peers"}
    assert data["patient"] == "pat-1"
    assert data["deidentified"] is True
    assert [s["source"] for s in data["sections"]] == ["instructions", "self", "peer", "question"]
    assert all(set(s) == {"source", "title", "text"} for s in data["sections"])


def test_nothing_recorded_after_the_consultation_date_is_used(organisation):
    bundle = fb.bundle(
        fb.patient("p-asof"),
        fb.encounter("e-early", "p-asof", start="2025-01-10T09:00:00Z"),
        fb.encounter("e-late", "p-asof", start="2025-06-10T09:00:00Z"),
        fb.observation(
            "hb-late",
            "p-asof",
            "e-late",
            code="718-7",
            when="2025-06-10T09:00:00Z",
            value={"valueQuantity": {"value": 8.9, "unit": "g/dL"}},
        ),
    )
    assert patient_import_bundle(organisation=organisation, bundle=bundle, source="asof").ok
    patient = organisation.patients.get(external_id="p-asof")
    before = prompt_build(patient=patient, question=QUESTION, at=date(2025, 3, 1))
    after = prompt_build(patient=patient, question=QUESTION, at=date(2025, 7, 1))
    assert "anaemia" not in {f["code"] for f in before.risk_flags}
    assert "8.9" not in before.text
    assert "anaemia" in {f["code"] for f in after.risk_flags}
    assert len(patient_history(patient, date(2025, 3, 1)).visits) == 1


def test_identifiers_planted_in_every_field_never_reach_the_prompt(organisation):
    name, mrn, phone = "Zelphine Quarmby", "MRN-778812", "+44 7700 900123"
    patient = fb.patient("p-planted", family="Quarmby", given=("Zelphine",))
    patient["identifier"][0]["value"] = mrn
    patient["telecom"][0]["value"] = phone
    patient["address"][0]["line"] = ["77 Larkspur Crescent"]
    weight = fb.observation(
        "w-planted", "p-planted", "e-planted", value={"valueString": f"{name} weighed herself, call {phone}"}
    )
    condition = fb.condition(
        "c-planted", "p-planted", code="38341003", display=f"Hypertension ({name}, {mrn}, 77 Larkspur Crescent)"
    )
    bundle = fb.bundle(patient, fb.encounter("e-planted", "p-planted"), weight, condition)
    bundle["entry"][1]["resource"]["type"][0]["coding"][0]["display"] = f"Prenatal visit for {name} on 2025-05-01"
    assert patient_import_bundle(organisation=organisation, bundle=bundle, source="planted").ok
    record = organisation.patients.get(external_id="p-planted")
    pm.LifestyleRecord.objects.create(
        patient=record,
        kind="diet",
        recorded_at=timezone.now() - timedelta(days=3),
        value=f"balanced, says {name}",
        source="clinician",
    )
    prompt = prompt_build(patient=record, question=f"Is {name} ({mrn}) at risk?", at=date(2025, 5, 2))
    planted = [
        name,
        "Zelphine",
        "Quarmby",
        mrn,
        phone,
        "900123",
        "Larkspur",
        "p-planted",
        "1992-03-14",
        "2025-05-01",
        "Springfield",
    ]
    assert leaks(prompt.text, planted) == []
    assert leaks(json.dumps(prompt_as_json(prompt)).replace('"patient": "p-planted"', ""), planted) == []
    assert "Hypertension" in prompt.text  # the clinical fact survives, only the identifiers go
    assert set(patient_identifiers(record)) >= {"Zelphine", "Quarmby", mrn, phone}


def test_an_empty_or_oversized_question_is_refused(imported_patient):
    with pytest.raises(PromptError, match="Type a question"):
        prompt_build(patient=imported_patient, question="   ")
    with pytest.raises(PromptError, match="longer than"):
        prompt_build(patient=imported_patient, question="x" * 2001)


@pytest.fixture
def trained(db):
    demo_seed(seed=3, limit=30, password="demo-password-1", synthetic_patients=60, knowledge=False)
    organisation = pm.Organisation.objects.get(slug="demo-clinic")
    peer_model = peer_model_train(peer_model_id=peer_model_create(organisation=organisation).pk)
    return organisation, peer_model


def test_training_stores_every_patients_peers_and_honest_metrics(trained):
    organisation, peer_model = trained
    assert peer_model.status == pm.JobStatus.DONE
    assert peer_model.active
    assert peer_model.progress == 100
    assert PeerProfile.objects.filter(peer_model=peer_model).count() == organisation.patients.count()
    for name in ("svd", "knn_baseline", "item_mean", "global_mean"):
        assert {"rmse", "mae", "precision_at_5", "coverage"} <= set(peer_model.metrics[name])
    assert peer_model.metrics["svd"]["rmse"] < peer_model.metrics["global_mean"]["rmse"]
    assert peer_model.training_seconds is not None
    assert peer_model.artefact.endswith(".pkl")
    assert peer_model_train(peer_model_id=peer_model.pk).pk == peer_model.pk  # a retried task does nothing more
    assert PeerProfile.objects.filter(peer_model=peer_model).count() == organisation.patients.count()


def test_a_prompt_uses_peers_from_her_own_organisation_only(trained, other_organisation):
    organisation, peer_model = trained
    patient = organisation.patients.filter(peer_profiles__basis="ratings").first()
    prompt = prompt_build(patient=patient, question=QUESTION)
    assert prompt.peer_model == peer_model
    assert len(prompt.peers) > 0
    assert all(set(p) == {"similarity", "basis"} for p in prompt.peers)
    neighbour_ids = [n for n, _ in PeerProfile.objects.get(peer_model=peer_model, patient=patient).neighbours]
    assert set(pm.Patient.objects.filter(pk__in=neighbour_ids).values_list("organisation", flat=True)) == {
        organisation.pk
    }
    others = [p for p in pm.Patient.objects.filter(pk__in=neighbour_ids)]
    assert (
        leaks(prompt.text, [p.family_name for p in others if len(p.family_name) > 3] + [p.external_id for p in others])
        == []
    )


def test_build_prompt_and_train_peers_commands(trained, capsys):
    organisation, _ = trained
    patient = organisation.patients.first()
    call_command("build_prompt", "--patient", patient.external_id, "--question", QUESTION, "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["patient"] == patient.external_id
    assert data["deidentified"] is True
    call_command("train_peers", "--org", organisation.slug)
    assert "held-out" in capsys.readouterr().out
    assert PeerModel.objects.filter(active=True).count() == 1
    with pytest.raises(CommandError, match="No patient"):
        call_command("build_prompt", "--patient", "nobody", "--question", "q")
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("build_prompt", "--patient", patient.external_id, "--question", "q", "--at", "yesterday")


def test_the_patient_page_builds_a_prompt_for_a_member_and_refuses_others(
    client_for, clinician, outsider, partner, imported_patient
):
    url = reverse("workspace:prompt", args=[imported_patient.pk])
    response = client_for(clinician).post(url, {"question": QUESTION, "at": "2025-05-02"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"src-self" in response.content
    assert b"de-identified" in response.content
    assert b"Type a question" not in response.content
    assert b"required" in client_for(clinician).post(url, {"question": ""}).content.lower()
    assert client_for(outsider).post(url, {"question": QUESTION}).status_code == 404
    assert client_for(partner).post(url, {"question": QUESTION}).status_code == 403
    assert client_for(clinician).get(url).status_code == 405


def test_the_patient_page_shows_risk_flags_with_evidence(client_for, clinician, organisation):
    bundle = fb.bundle(
        fb.patient("p-flags"),
        fb.encounter("e-f", "p-flags"),
        fb.observation(
            "hb",
            "p-flags",
            "e-f",
            code="718-7",
            when=timezone.now().isoformat(),
            value={"valueQuantity": {"value": 9.4, "unit": "g/dL"}},
        ),
    )
    assert patient_import_bundle(organisation=organisation, bundle=bundle, source="flags").ok
    patient = organisation.patients.get(external_id="p-flags")
    content = client_for(clinician).get(reverse("workspace:patient", args=[patient.pk])).content.decode()
    assert "Anaemia (Hb &lt; 11 g/dL)" in content
    assert "haemoglobin 9.4 g/dL" in content
