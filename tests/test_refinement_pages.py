"""What curators and clinicians read about the edit policy: the run page (held-out validation with its
confidence intervals, what the policy learned, the edit per validation row), the run list, the
admin list and the API, the evaluation page's refinement variants and differences, and the
workspace's "RL edit" note. No model is loaded: runs, evaluations and guidance are stored as a
finished job leaves them."""

import html
import re
from datetime import date

import pytest
from django.urls import reverse

from api.tokens import token_issue
from patients import models as pm
from prompting.models import (
    EvaluationItem,
    EvaluationRun,
    GuidanceRequest,
    LLMEndpoint,
    PersonalizedPrompt,
    RefinementRun,
)
from prompting.pmlm.edits import MENU, MENU_VERSION
from prompting.pmlm.evaluation import VARIANT_LABELS, VARIANTS, Scored, summarise_scores
from tests.conftest import make_member

LABELS = {edit.code: edit.label for edit in MENU}


def _paired(difference, low, high, n=160, patients=54):
    return {"difference": difference, "ci": [low, high], "n": n, "patients": patients}


def _block(n, patients, initial, refined, fixed):
    return {
        "n": n,
        "patients": patients,
        "reward_initial": initial,
        "reward_refined": refined,
        "reward_best_fixed": fixed,
        **_paired(round(refined - initial, 4), 0.01, 0.03, n, patients),
        "vs_best_fixed": _paired(round(refined - fixed, 4), -0.01, 0.012, n, patients),
        "best_fixed_vs_initial": _paired(round(fixed - initial, 4), 0.008, 0.031, n, patients),
    }


def realistic_report() -> dict:
    validation = _block(160, 54, 0.33, 0.35, 0.35)
    validation["by_sources"] = {"on": _block(80, 54, 0.34, 0.355, 0.352), "off": _block(80, 54, 0.32, 0.345, 0.348)}
    chosen = {"E0": 12, "E6": 60, "E7": 120, "E4": 48}
    total = sum(chosen.values())
    return {
        "menu": MENU_VERSION,
        "target_calls": 512,
        "target_max_tokens": 320,
        "minutes": 48.2,
        "best_fixed": {"code": "E7", "label": LABELS["E7"], "mean_reward": 0.36, "initial_mean_reward": 0.33},
        "oracle_mean_reward": 0.41,
        "validation": validation,
        "learned": {
            "menu": MENU_VERSION,
            "edits": [
                {
                    "code": e.code,
                    "label": e.label,
                    "chosen": chosen.get(e.code, 0),
                    "share": round(chosen.get(e.code, 0) / total, 3),
                    "mean_gain": 0.0 if e.code == "E0" else 0.012,
                }
                for e in MENU
            ],
            "kinds": [
                {
                    "kind": "trimester 3",
                    "examples": 40,
                    "edits": [
                        {"code": "E7", "label": LABELS["E7"], "count": 30},
                        {"code": "E4", "label": LABELS["E4"], "count": 6},
                    ],
                },
                {
                    "kind": "Raised blood pressure",
                    "examples": 12,
                    "edits": [
                        {"code": "E6", "label": LABELS["E6"], "count": 9},
                        {"code": "E2", "label": LABELS["E2"], "count": 2},
                        {"code": "E0", "label": LABELS["E0"], "count": 1},
                    ],
                },
            ],
        },
    }


def validation_rows(patient_id) -> list[dict]:
    initial = "### Instructions\nAnswer.\n\n### Question\nWhat do you recommend?"
    refined = (
        initial + "\n\n### How to answer for her\n- Address each of her risk flags by name: Raised blood pressure."
    )
    return [
        {
            "key": "visit of 2 May 2025 (encounter 7), sources on",
            "patient": patient_id,
            "rag": True,
            "code": "E6",
            "best_fixed": "E7",
            "reward_initial": 0.31,
            "reward_refined": 0.36,
            "reward_best_fixed": 0.34,
            "accepted": True,
            "problems": [],
            "kinds": ["trimester 3", "Raised blood pressure"],
            "initial_prompt": initial,
            "refined_prompt": refined,
        },
        {
            "key": "visit of 2 May 2025 (encounter 7), sources off",
            "patient": patient_id,
            "rag": False,
            "code": "E5",
            "best_fixed": "E7",
            "reward_initial": 0.30,
            "reward_refined": 0.30,
            "reward_best_fixed": 0.33,
            "accepted": False,
            "problems": [
                {
                    "kind": "dropped_fact",
                    "detail": "- Lifestyle now: walks daily",
                    "label": "a line of her record dropped",
                }
            ],
            "kinds": ["trimester 3"],
            "initial_prompt": "",
            "refined_prompt": "",
        },
    ]


def stored_run(organisation, **fields) -> RefinementRun:
    """A run as a worker leaves it; the pages never load its checkpoint."""
    defaults = dict(
        version=RefinementRun.objects.filter(organisation=organisation).count() + 1,
        status=pm.JobStatus.DONE,
        progress=100,
        step=60,
        checkpoint="models/refiner/north-run-1",
        reward_initial=0.33,
        reward_refined=0.35,
        accepted_share=0.9,
        seconds_per_step=1.4,
        train_examples=80,
        train_patients=40,
        validation_examples=160,
        validation_patients=54,
        config={
            "steps": 60,
            "num_generations": 6,
            "target_endpoint": "smollm2-local",
            "device": "cpu",
            "menu": MENU_VERSION,
        },
        curve=[
            {"step": 1, "reward_mean": 0.33, "reward_std": 0.02, "accepted_share": 1.0, "seconds": 1.3},
            {"step": 2, "reward_mean": 0.34, "reward_std": 0.02, "accepted_share": 1.0, "seconds": 1.4},
        ],
    )
    defaults.update(fields)
    return RefinementRun.objects.create(organisation=organisation, **defaults)


def text_of(response) -> str:
    """The page as a reader sees its words: tags stripped, entities unescaped, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


class TestTheRunPage:
    def test_a_run_that_deployed_the_best_fixed_edit_says_so_and_validates_what_it_deployed(
        self, client_for, curator, organisation, imported_patient
    ):
        report = {
            **realistic_report(),
            "deployed": "best_fixed",
            "policy_train_mean_reward": 0.266,
            "best_fixed_train_mean_reward": 0.359,
        }
        run = stored_run(organisation, report=report, validation=validation_rows(imported_patient.pk))
        page = text_of(client_for(curator).get(f"/refinement/{run.pk}/"))
        assert "Deployed: the best fixed edit, not the policy." in page
        assert "0.266 against 0.359" in page
        assert "does the deployed edit help?" in page
        assert "Deployed − best fixed" in page
        assert "Policy − best fixed" not in page

    def test_a_run_that_chose_per_guidance_sources_setting_shows_what_it_deployed_for_each_and_what_it_set_aside(
        self, client_for, curator, organisation, imported_patient
    ):
        def fixed(code, reward, initial, precision, initial_precision, set_aside=None):
            return {
                "code": code,
                "label": LABELS[code],
                "mean_reward": reward,
                "initial_mean_reward": initial,
                "key_item_precision": precision,
                "initial_key_item_precision": initial_precision,
                "examples": 10,
                "set_aside": set_aside,
            }

        report = {
            **realistic_report(),
            "deployed": "by_sources",
            "by_sources": {
                "on": {
                    "best_fixed": fixed("E7", 0.377, 0.244, 0.633, 0.452),
                    "deployed": "policy",
                    "policy_train_mean_reward": 0.381,
                    "policy_train_key_item_precision": 0.640,
                },
                "off": {
                    "best_fixed": fixed(
                        "E6",
                        0.275,
                        0.319,
                        0.588,
                        0.543,
                        set_aside={
                            "code": "E8",
                            "label": LABELS["E8"],
                            "mean_reward": 0.356,
                            "key_item_precision": 0.424,
                        },
                    ),
                    "deployed": "best_fixed",
                    "policy_train_mean_reward": 0.300,
                    "policy_train_key_item_precision": 0.410,
                },
            },
        }
        run = stored_run(organisation, report=report, validation=validation_rows(imported_patient.pk))
        page = text_of(client_for(curator).get(f"/refinement/{run.pk}/"))
        assert "What is deployed, per guidance-sources setting" in page
        assert (
            f"Guidance sources on 10 {LABELS['E7']} E7 0.244 → 0.377 ; 0.452 → 0.633 the policy policy 0.381, 0.640"
            in page
        )
        assert f"Set aside with guidance sources off: {LABELS['E8']} E8 had the best reward there (0.356)" in page
        assert "lowered key-item precision to 0.424" in page
        deployed = "Deployed per guidance-sources setting: guidance sources on, the policy; guidance sources off, E6."
        assert deployed in page
        assert "0.319 → 0.275 ; 0.543 → 0.588 E6, for everyone policy 0.300, 0.410" in page

    def test_a_run_shows_the_edit_its_grounding_guardrail_set_aside_and_the_unsupported_claims_before_and_after(
        self, client_for, curator, organisation, imported_patient
    ):
        report = realistic_report()
        with_sources = {
            "code": "E4",
            "label": LABELS["E4"],
            "mean_reward": 0.301,
            "initial_mean_reward": 0.244,
            "key_item_precision": 0.500,
            "initial_key_item_precision": 0.452,
            "unsupported_claims": 0.08,
            "initial_unsupported_claims": 0.12,
            "examples": 16,
            "set_aside": {
                "code": "E7",
                "label": LABELS["E7"],
                "mean_reward": 0.377,
                "key_item_precision": 0.633,
                "unsupported_claims": 0.31,
                "reasons": ["it made more unsupported claims about her: 0.31 per answer (initial prompt 0.12)"],
            },
        }
        report["deployed"] = "best_fixed"
        report["by_sources"] = {
            "on": {
                "best_fixed": with_sources,
                "deployed": "best_fixed",
                "policy_train_mean_reward": 0.250,
                "policy_train_key_item_precision": 0.460,
                "policy_train_unsupported_claims": 0.10,
            }
        }
        report["by_sources"]["off"] = {
            "best_fixed": {
                **with_sources,
                "code": "E9",
                "label": LABELS["E9"],
                "unsupported_claims": 0.19,
                "initial_unsupported_claims": 0.0,
                "claims_increase": {"difference": 0.19, "ci": [0.0, 0.38]},
                "set_aside": None,
            },
            "deployed": "best_fixed",
        }
        report["validation"]["unsupported_claims"] = {"initial": 0.1, "refined": 0.05}
        run = stored_run(organisation, report=report, validation=validation_rows(imported_patient.pk))
        page = text_of(client_for(curator).get(f"/refinement/{run.pk}/"))
        assert (
            f"Set aside with guidance sources on: {LABELS['E7']} E7 had the best reward there (0.377) but it made more "
            "unsupported claims about her: 0.31 per answer (initial prompt 0.12)." in page
        )
        assert "0.244 → 0.301 ; 0.452 → 0.500; 0.12 → 0.08" in page
        assert "policy 0.250, 0.460, 0.10" in page
        assert "Key-item precision; unsupported claims per answer" in page
        assert "0.10 → 0.05" in page
        assert (
            "Unsupported claims with guidance sources off: on the training encounters the answers to E9 made 0.19 "
            "unsupported claims about her per answer against 0.00 for the initial prompt (paired difference 0.19, "
            "95% CI 0.00 to 0.38): too few to show a rise, so it was not set aside." in page
        )
        assert "Unsupported claims with guidance sources on" not in page  # E4 made fewer there

    def test_a_finished_run_shows_its_held_out_validation_with_intervals_and_what_the_policy_learned(
        self, client_for, curator, organisation, imported_patient
    ):
        run = stored_run(
            organisation, target_calls=512, report=realistic_report(), validation=validation_rows(imported_patient.pk)
        )
        response = client_for(curator).get(f"/refinement/{run.pk}/")
        assert response.status_code == 200
        page = text_of(response)
        # (b) held-out validation: n, patients, initial vs refined, the paired difference and its CI, per sources
        # setting, and the policy against the best fixed edit.
        assert "Held-out validation" in page
        assert "160 answers of 54 patients" in page
        assert "0.330" in page
        assert "0.350" in page
        assert "+0.020 [0.010, 0.030]" in page
        assert "Guidance sources on" in page
        assert "Guidance sources off" in page
        assert "Policy − best fixed" in page
        assert "[-0.010, 0.012]" in page
        assert "no clear difference" in page
        assert f"best fixed edit, {LABELS['E7']}" in page
        # (c) the target LLM's distinct answers and the run's minutes.
        assert "512 distinct prompts" in page
        assert "48.2 min" in page
        # (d) what the policy learned: each edit's use, share and gain; its picks per kind of patient.
        assert "What the policy learned" in page
        for edit in MENU:
            assert edit.label in page
        assert "120" in page
        assert "50%" in page
        assert "+0.012" in page  # E7: chosen 120 of 240, mean gain
        assert f"Raised blood pressure (12) → {LABELS['E6']} (9 of 12)" in page
        assert f"Trimester 3 (40) → {LABELS['E7']} (30 of 40)" in page
        # (e) the validation table names the edit chosen per row, and the guard's reason where it refused one.
        assert LABELS["E6"] in page
        assert LABELS["E5"] in page
        assert "a line of her record dropped" in page
        assert "The policy's edit for her: RL edit" in page
        assert "<ins" in response.content.decode()
        assert "instructions for her" not in page
        assert "hx-trigger" not in response.content.decode()  # finished: no more polling

    def test_a_run_from_before_the_edit_menu_still_renders(self, client_for, curator, organisation):
        old = stored_run(
            organisation,
            report={},
            config={
                "steps": 4,
                "num_generations": 4,
                "max_completion_tokens": 96,
                "target_endpoint": "smollm2-local",
                "device": "cpu",
            },
            validation=[
                {
                    "key": "encounter 7",
                    "reward_initial": 0.2,
                    "reward_refined": 0.25,
                    "reward_policy": 0.25,
                    "accepted": True,
                    "problems": [],
                    "instructions": "- Repeat BP within a week.",
                    "initial_prompt": "### Question\nWhat now?",
                    "refined_prompt": "### Refined\n- Repeat BP within a week.\n\n### Question\nWhat now?",
                }
            ],
        )
        response = client_for(curator).get(f"/refinement/{old.pk}/")
        assert response.status_code == 200
        page = text_of(response)
        assert "Validation on held-out patients" in page
        assert "Repeat BP within a week." in page
        assert "What the policy learned" not in page
        assert "Held-out validation" not in page

    def test_a_run_without_anything_stored_yet_renders(self, client_for, curator, organisation):
        bare = RefinementRun.objects.create(organisation=organisation, version=1)
        assert client_for(curator).get(f"/refinement/{bare.pk}/").status_code == 200

    def test_while_running_the_status_polls_and_the_poll_that_sees_it_finish_reloads_the_page(
        self, client_for, curator, organisation
    ):
        run = stored_run(organisation, status=pm.JobStatus.RUNNING, progress=40, step=2, report={}, message="Step 2/60")
        client = client_for(curator)
        page = client.get(f"/refinement/{run.pk}/").content.decode()
        assert 'role="progressbar"' in page
        assert 'aria-valuenow="40"' in page
        assert 'hx-trigger="every 2s"' in page
        polled = client.get(f"/refinement/{run.pk}/", HTTP_HX_REQUEST="true")
        assert "HX-Refresh" not in polled
        assert "<html" not in polled.content.decode()
        RefinementRun.objects.filter(pk=run.pk).update(
            status=pm.JobStatus.DONE, progress=100, report=realistic_report()
        )
        assert client.get(f"/refinement/{run.pk}/", HTTP_HX_REQUEST="true")["HX-Refresh"] == "true"

    def test_another_organisations_curator_gets_404_and_clinicians_403(
        self, client_for, clinician, organisation, other_organisation
    ):
        run = stored_run(organisation, report=realistic_report())
        their_curator = make_member("curator-south", other_organisation, pm.Role.CURATOR, is_staff=True)
        client = client_for(their_curator)
        assert client.get(f"/refinement/{run.pk}/").status_code == 404
        assert client.get(f"/refinement/{run.pk}/", HTTP_HX_REQUEST="true").status_code == 404
        assert client_for(clinician).get(f"/refinement/{run.pk}/").status_code == 403


class TestTheRunList:
    def test_the_list_shows_each_runs_difference_and_the_form_has_no_free_text_settings(
        self, client_for, curator, organisation
    ):
        stored_run(organisation, report=realistic_report(), target_calls=512)
        stored_run(organisation, report={})
        response = client_for(curator).get("/refinement/")
        page, markup = text_of(response), response.content.decode()
        assert "Run 1" in page
        assert "Run 2" in page
        assert "+0.020 [0.010, 0.030]" in page
        assert "160 answers, 54 patients" in page
        assert 'name="steps"' in markup
        assert 'name="max_examples"' in markup
        assert 'name="num_generations"' in markup
        assert "max_completion" not in markup.lower()
        assert "completion tokens" not in page.lower()
        assert f"The edit menu ({MENU_VERSION})" in page
        assert LABELS["E4"] in page


class TestAdminAndAPI:
    def test_the_admin_list_shows_the_target_calls(self, curator_client, organisation):
        stored_run(organisation, target_calls=512, report=realistic_report())
        page = curator_client.get(reverse("admin:prompting_refinementrun_changelist")).content.decode()
        assert "column-target_calls" in page
        assert "512" in page

    def test_partners_read_target_calls_and_the_report_of_their_organisations_runs_only(
        self, client, partner, organisation, other_organisation
    ):
        stored_run(organisation, target_calls=512, report=realistic_report())
        stored_run(other_organisation, target_calls=9, report={"menu": MENU_VERSION})
        token = token_issue(username=partner.username, name="EHR")[1]
        body = client.get("/api/v1/refinement-runs/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
        assert body["count"] == 1
        run = body["results"][0]
        assert run["target_calls"] == 512
        assert run["report"]["validation"]["ci"] == [0.01, 0.03]
        assert run["report"]["learned"]["kinds"][1]["kind"] == "Raised blood pressure"


def evaluation_rows() -> list[dict]:
    scored = [
        Scored(
            example=f"e{n}",
            patient=f"p{n % 4}",
            variant=variant,
            rag=rag,
            endpoint="smollm2-local",
            metrics={
                "closeness": 0.2 + 0.02 * v + 0.01 * (n % 3),
                "key_item_coverage": 0.1 + 0.03 * v,
                "key_item_precision": 0.4 + 0.01 * v,
                "words": 100 + n,
            },
        )
        for n in range(8)
        for v, variant in enumerate(VARIANTS)
        for rag in (True, False)
    ]
    return summarise_scores(scored, resamples=100)


class TestTheEvaluationPage:
    def test_the_refinement_variants_their_difference_from_pmlm_and_key_item_precision_are_shown(
        self, client_for, clinician, organisation, imported_patient
    ):
        run = EvaluationRun.objects.create(
            organisation=organisation,
            status=pm.JobStatus.DONE,
            progress=100,
            examples=8,
            patients=4,
            rows=evaluation_rows(),
            config={
                "endpoints": ["smollm2-local"],
                "retrieval": [True],
                "variants": list(VARIANTS),
                "seed": 7,
                "share": 0.25,
                "resamples": 100,
                "judge": None,
            },
            report={
                "learning_patients": 12,
                "refinement_run": {
                    "id": 1,
                    "version": 1,
                    "promoted": True,
                    "best_fixed": {"code": "E7", "label": LABELS["E7"]},
                },
            },
        )
        encounter = pm.Encounter.objects.filter(patient=imported_patient).first()
        for variant in ("pmlm", "pmlm_best_edit", "pmlm_rl"):
            refinement = (
                {}
                if variant == "pmlm"
                else {
                    "run": 1,
                    "used": variant == "pmlm_best_edit",
                    "edit": "E7" if variant == "pmlm_best_edit" else "E6",
                    "label": LABELS["E7" if variant == "pmlm_best_edit" else "E6"],
                    "problems": [] if variant == "pmlm_best_edit" else [{"kind": "dropped_fact"}],
                }
            )
            EvaluationItem.objects.create(
                run=run,
                patient=imported_patient,
                encounter_id=encounter.pk,
                variant=variant,
                use_retrieval=True,
                endpoint_name="smollm2-local",
                prompt="…",
                guidance="Repeat BP.",
                metrics={"closeness": 0.3},
                refinement=refinement,
            )
        response = client_for(clinician).get(f"/evaluations/{run.pk}/")
        assert response.status_code == 200
        page = text_of(response)
        assert VARIANT_LABELS["pmlm_best_edit"] in page
        assert VARIANT_LABELS["pmlm_rl"] in page
        assert "Closeness vs PMLM (initial)" in page
        assert "Key-item precision" in page
        assert "Key-item coverage" in page
        pmlm_rl = next(r for r in run.rows if r["variant"] == "pmlm_rl")
        low, high = pmlm_rl["ci"]["closeness_vs_pmlm"]
        assert f"+{pmlm_rl['closeness_vs_pmlm']:.3f} [{low:.3f}, {high:.3f}]" in page
        assert f"Best fixed edit {LABELS['E7']}" in page
        assert f"fixed edit: {LABELS['E7']}" in page
        assert f"RL edit: {LABELS['E6']}" in page
        assert "the edit failed the guard, the initial prompt was sent" in page
        assert 'href="/refinement/' not in response.content.decode()  # clinicians do not see refinement runs


@pytest.fixture
def endpoint(db):
    return LLMEndpoint.objects.first() or LLMEndpoint.objects.create(name="smollm2-local", kind="llama_cpp")


def done_guidance(patient, endpoint, refinement, prompt=None, refined=None) -> GuidanceRequest:
    return GuidanceRequest.objects.create(
        patient=patient,
        question="What now?",
        consultation_date=date(2025, 5, 2),
        endpoint=endpoint,
        status=pm.JobStatus.DONE,
        text="Repeat BP within a week.",
        prompt=prompt,
        refined_prompt=refined,
        refinement=refinement,
    )


class TestTheWorkspaceNamesTheEdit:
    def test_the_answer_says_which_edit_the_policy_chose_or_that_it_failed_the_guard(
        self, client_for, clinician, imported_patient, endpoint
    ):
        client = client_for(clinician)
        used = done_guidance(
            imported_patient,
            endpoint,
            {"run": 1, "version": 3, "used": True, "edit": "E6", "label": LABELS["E6"], "problems": []},
        )
        page = text_of(client.get(f"/patients/{imported_patient.pk}/guidance/{used.pk}/"))
        assert f"RL edit: {LABELS['E6']}" in page
        assert "run 3" in page
        assert "rewrite" not in page
        refused = done_guidance(
            imported_patient,
            endpoint,
            {
                "run": 1,
                "version": 3,
                "used": False,
                "edit": "E5",
                "label": LABELS["E5"],
                "problems": [{"kind": "dropped_fact", "label": "a line dropped"}],
            },
        )
        page = text_of(client.get(f"/patients/{imported_patient.pk}/guidance/{refused.pk}/"))
        assert "failed the guard, so the initial prompt was sent" in page
        assert LABELS["E5"] in page

    def test_the_prompt_panel_names_the_edit_sent_or_kept(self, client_for, clinician, imported_patient, endpoint):
        from prompting.prompts import prompt_build

        client = client_for(clinician)
        initial = prompt_build(patient=imported_patient, question="What now?", at=date(2025, 5, 2))
        kept = done_guidance(
            imported_patient,
            endpoint,
            {"run": 1, "version": 3, "used": True, "edit": "E0", "label": LABELS["E0"], "problems": []},
            prompt=initial,
        )
        page = text_of(client.get(f"/patients/{imported_patient.pk}/guidance/{kept.pk}/prompt/"))
        assert f"RL edit: {LABELS['E0']}" in page
        assert "kept this initial prompt" in page
        refined = PersonalizedPrompt.objects.create(
            patient=imported_patient,
            question=initial.question,
            consultation_date=initial.consultation_date,
            template=initial.template,
            template_version=f"{initial.template_version}+rl3",
            text=initial.text
            + "\n\n### How to answer for her\n- Give the monitoring plan with intervals, and when to escalate.",
            sections=[
                *initial.sections,
                {
                    "source": "instructions",
                    "title": "How to answer for her",
                    "refined": True,
                    "edit": "E3",
                    "text": "- Give the monitoring plan with intervals, and when to escalate.",
                },
            ],
            risk_flags=initial.risk_flags,
            token_count=initial.token_count + 12,
            inputs_hash="refined-by-run-1",
            refined_from=initial,
        )
        sent = done_guidance(
            imported_patient,
            endpoint,
            {"run": 1, "version": 3, "used": True, "edit": "E3", "label": LABELS["E3"], "problems": []},
            prompt=initial,
            refined=refined,
        )
        response = client.get(f"/patients/{imported_patient.pk}/guidance/{sent.pk}/prompt/")
        page = text_of(response)
        assert f"RL edit: {LABELS['E3']}" in page
        assert "RL-refined (sent)" in page
        assert "<ins" in response.content.decode()
        refused = done_guidance(
            imported_patient,
            endpoint,
            {
                "run": 1,
                "version": 3,
                "used": False,
                "edit": "E5",
                "label": LABELS["E5"],
                "problems": [{"kind": "dropped_fact", "label": "a line dropped"}],
            },
            prompt=initial,
        )
        page = text_of(client.get(f"/patients/{imported_patient.pk}/guidance/{refused.pk}/prompt/"))
        assert "failed the guard (a line dropped): this initial prompt was sent" in page
        assert LABELS["E5"] in page
