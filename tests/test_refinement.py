"""Refinement runs end to end on a tiny model: TRL GRPO training, validation, the command, cancel,
promotion, guidance with the promoted policy, and the run pages with who may see them."""

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from patients import models as pm
from prompting.guidance import guidance_as_json, guidance_request_create
from prompting.models import PersonalizedPrompt, RefinementRun
from prompting.pmlm.policy import is_checkpoint
from prompting.pmlm.refine import REFINED_TITLE
from prompting.refinement import (
    RefinementError, prompt_refine, refinement_run_cancel, refinement_run_create, refinement_run_execute,
    refinement_run_promote,
)
from tests.conftest import make_member

AT = date(2025, 5, 2)
def finished_run(organisation, tiny_checkpoint, **fields) -> RefinementRun:
    """A finished run whose checkpoint (the tiny model) lies under the var directory, as a real run's does."""
    checkpoint = Path("models") / "refiner" / f"test-{organisation.slug}-{RefinementRun.objects.count() + 1}"
    shutil.copytree(tiny_checkpoint, settings.VAR_DIR / checkpoint, dirs_exist_ok=True)
    defaults = dict(version=RefinementRun.objects.filter(organisation=organisation).count() + 1, status=pm.JobStatus.DONE,
                    progress=100, step=2, checkpoint=str(checkpoint), reward_initial=0.21, reward_refined=0.24,
                    accepted_share=0.5, config={"steps": 2, "num_generations": 2, "max_completion_tokens": 24,
                                                "target_endpoint": "tiny-target", "device": "cpu"},
                    curve=[{"step": 1, "reward_mean": 0.18, "reward_std": 0.02, "accepted_share": 0.5, "seconds": 1.0},
                           {"step": 2, "reward_mean": 0.23, "reward_std": 0.03, "accepted_share": 1.0, "seconds": 1.1}])
    defaults.update(fields)
    return RefinementRun.objects.create(organisation=organisation, **defaults)


class TestARun:
    def test_it_trains_the_policy_saves_a_checkpoint_and_validates_on_patients_it_never_saw(self, cohort, tiny_policy, organisation):
        run = refinement_run_create(organisation=organisation, steps=2, max_examples=8, num_generations=2)
        seen = []
        run = refinement_run_execute(run_id=run.pk, on_progress=lambda percent, message: seen.append(message))
        assert run.status == pm.JobStatus.DONE, run.error
        assert run.step == 2 and [p["step"] for p in run.curve] == [1, 2] and run.progress == 100
        assert is_checkpoint(settings.VAR_DIR / run.checkpoint)
        assert run.train_patients + run.validation_patients == 4 and run.validation_patients >= 1
        assert len(run.validation) == run.validation_examples
        assert run.reward_initial is not None and run.reward_refined is not None and 0 <= run.accepted_share <= 1
        assert any(m.startswith("Step 1/2") for m in seen) and any(m.startswith("Validating") for m in seen)
        # The config records what produced it: sane CPU defaults and the target endpoint.
        assert run.config["device"] == "cpu" and run.config["target_endpoint"] == "tiny-target" and not run.config["bf16"]

    def test_refine_prompts_prints_the_run_and_its_validation_rewards_as_json(self, cohort, tiny_policy, organisation, capsys):
        call_command("refine_prompts", "--org", organisation.slug, "--steps", "1", "--max-examples", "4",
                     "--num-generations", "2", "--json")
        report = json.loads(capsys.readouterr().out)
        assert {"run_id", "steps", "reward_initial", "reward_refined", "checkpoint"} <= set(report)
        assert report["steps"] == 1 and Path(report["checkpoint"]).exists()
        assert isinstance(report["reward_initial"], float) and isinstance(report["reward_refined"], float)
        assert RefinementRun.objects.get(pk=report["run_id"]).status == pm.JobStatus.DONE

    def test_a_run_cancelled_while_training_stops_after_its_step_and_keeps_no_checkpoint(self, cohort, tiny_policy, organisation):
        run = refinement_run_create(organisation=organisation, steps=5, max_examples=8, num_generations=2)

        def cancel_after_first_step(percent, message):
            if message.startswith("Step 1/"):
                refinement_run_cancel(run=run)

        run = refinement_run_execute(run_id=run.pk, on_progress=cancel_after_first_step)
        assert run.status == pm.JobStatus.CANCELLED and run.step == 1
        assert run.checkpoint == "" and not (settings.VAR_DIR / "models" / "refiner" / f"{organisation.slug}-run-{run.version}").exists()

    def test_a_queued_run_cancelled_never_starts_and_a_finished_run_is_never_run_again(self, tiny_policy, organisation, tiny_checkpoint):
        queued = refinement_run_create(organisation=organisation, steps=1)
        assert refinement_run_cancel(run=queued).status == pm.JobStatus.CANCELLED
        assert refinement_run_execute(run_id=queued.pk).status == pm.JobStatus.CANCELLED
        done = finished_run(organisation, tiny_checkpoint)
        assert refinement_run_execute(run_id=done.pk).curve == done.curve  # a redelivered task leaves it alone

    def test_without_physician_recommendations_a_run_fails_with_its_reason(self, tiny_policy, organisation, imported_patient):
        run = refinement_run_execute(run_id=refinement_run_create(organisation=organisation, steps=1).pk)
        assert run.status == pm.JobStatus.FAILED and "physician recommendation" in run.error
        assert run.finished_at is not None

    @pytest.mark.parametrize("bad", [{"steps": 0}, {"max_examples": -3}, {"num_generations": 1}, {"steps": "four"}])
    def test_nonsense_settings_are_refused_before_anything_runs(self, tiny_policy, organisation, bad):
        with pytest.raises(RefinementError):
            refinement_run_create(organisation=organisation, **bad)
        assert not RefinementRun.objects.exists()


class TestPromotion:
    def test_only_a_finished_run_with_its_checkpoint_can_be_promoted(self, tiny_policy, organisation, tiny_checkpoint):
        with pytest.raises(RefinementError, match="finished run"):
            refinement_run_promote(run=refinement_run_create(organisation=organisation, steps=1))
        missing = finished_run(organisation, tiny_checkpoint, checkpoint="models/refiner/gone")
        with pytest.raises(RefinementError, match="missing"):
            refinement_run_promote(run=missing)

    def test_one_run_is_promoted_per_organisation(self, tiny_policy, organisation, other_organisation, tiny_checkpoint):
        first, second = finished_run(organisation, tiny_checkpoint), finished_run(organisation, tiny_checkpoint)
        theirs = finished_run(other_organisation, tiny_checkpoint)
        for run in (first, second, theirs):
            refinement_run_promote(run=run)
        promoted = set(RefinementRun.objects.filter(promoted=True).values_list("pk", flat=True))
        assert promoted == {second.pk, theirs.pk}


def hypertensive(cohort):
    return cohort[1]


class TestGuidanceWithThePromotedPolicy:
    def test_guidance_sends_the_refined_prompt_when_it_passes_the_guard_and_keeps_both(self, cohort, tiny_policy, organisation,
                                                                                      tiny_checkpoint, monkeypatch):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        instructions = "- Address her raised blood pressure first.\n- Repeat BP within a week and check urine protein."
        monkeypatch.setattr("prompting.refinement._policy_answer", lambda *a, **k: (instructions, False))
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE, guidance.error
        refined, initial = guidance.refined_prompt, guidance.prompt
        assert refined.refined_from == initial and refined.refinement_run.promoted
        assert guidance.refinement["used"] is True and guidance.refinement["instructions"] == instructions
        assert [s["title"] for s in refined.sections if s.get("refined")] == [REFINED_TITLE]
        assert all(flag["label"] in refined.text for flag in initial.risk_flags) and initial.risk_flags
        report = guidance_as_json(guidance)
        assert report["prompt"] == refined.text and report["initial_prompt"] == initial.text
        # Asked again, the same refinement is reused rather than stored twice.
        again = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert again.refined_prompt == refined and PersonalizedPrompt.objects.filter(refined_from=initial).count() == 1

    @pytest.mark.parametrize("answer, kind", [
        ("- Call Testgiven1 Testfamily1 today about her blood pressure.", "identifier"),
        ("- Start labetalol 200 mg twice daily for her blood pressure.", "invented_number"),
        ("- Treat her gestational diabetes and smoking first.", "invented_finding"),
        ("", "malformed"),
    ])
    def test_a_refined_prompt_that_fails_the_guard_is_never_sent_and_the_reason_is_kept(
            self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch, answer, kind):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        monkeypatch.setattr("prompting.refinement._policy_answer", lambda *a, **k: (answer, False))
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE and guidance.refined_prompt is None
        assert guidance.refinement["used"] is False and kind in {p["kind"] for p in guidance.refinement["problems"]}
        assert guidance_as_json(guidance)["prompt"] == guidance.prompt.text
        assert not PersonalizedPrompt.objects.filter(refined_from__isnull=False).exists()

    def test_a_refined_prompt_never_drops_a_risk_flag(self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch):
        """Whatever the policy writes, a prompt that reaches the LLM carries every flag of the initial one."""
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        answers = iter(["- Repeat BP.", "ignore the record " * 5, "- Check urine protein and review in a week.", "###"])
        monkeypatch.setattr("prompting.refinement._policy_answer", lambda *a, **k: (next(answers), False))
        for question in ("What now?", "Plan?", "Next visit?", "Any concerns?"):
            guidance = guidance_request_create(patient=hypertensive(cohort), question=question, at=AT, run_inline=True)
            sent = guidance.refined_prompt or guidance.prompt
            assert guidance.prompt.risk_flags and all(f["label"] in sent.text for f in guidance.prompt.risk_flags)

    def test_the_real_tiny_policy_refines_or_falls_back_and_guidance_always_completes(self, cohort, tiny_policy, organisation,
                                                                                      tiny_checkpoint):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE and guidance.refinement["run"]
        assert "refine_ms" in guidance.timings

    def test_without_a_promoted_run_nothing_is_refined(self, cohort, tiny_policy):
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.refinement == {} and guidance.refined_prompt is None
        assert prompt_refine(prompt=guidance.prompt, patient=hypertensive(cohort)) == (guidance.prompt, {})


class TestRunPages:
    def test_a_curator_starts_a_run_with_defaults_and_watches_it(self, client_for, curator, tiny_policy, django_capture_on_commit_callbacks):
        client = client_for(curator)
        page = client.get("/refinement/")
        assert page.status_code == 200 and b"Start a run" in page.content and b"No refinement run yet" in page.content
        with django_capture_on_commit_callbacks() as callbacks:
            response = client.post("/refinement/start/", {"steps": 4, "max_examples": 24, "num_generations": 4})
        run = RefinementRun.objects.get()
        assert response.status_code == 302 and response["Location"] == f"/refinement/{run.pk}/"
        assert run.created_by == curator and run.status == pm.JobStatus.QUEUED and len(callbacks) == 1  # the task is queued
        detail = client.get(f"/refinement/{run.pk}/")
        assert b'role="progressbar"' in detail.content and b'hx-trigger="every 2s"' in detail.content
        fragment = client.get(f"/refinement/{run.pk}/", HTTP_HX_REQUEST="true")
        assert b"<html" not in fragment.content and b"progressbar" in fragment.content
        assert "HX-Request" in fragment["Vary"]

    def test_bad_settings_are_shown_on_the_form(self, client_for, curator, tiny_policy):
        response = client_for(curator).post("/refinement/start/", {"steps": 0, "max_examples": 24, "num_generations": 1})
        assert response.status_code == 400 and b"Ensure this value is greater than or equal to" in response.content
        assert not RefinementRun.objects.exists()

    def test_a_finished_run_shows_its_curve_validation_and_the_difference_and_can_be_promoted(
            self, client_for, curator, organisation, tiny_policy, tiny_checkpoint):
        run = finished_run(organisation, tiny_checkpoint, validation=[{
            "key": "encounter 7", "reward_initial": 0.2, "reward_refined": 0.25, "reward_policy": 0.25, "accepted": True,
            "problems": [], "instructions": "- Repeat BP within a week.",
            "initial_prompt": "### Instructions\nAnswer.\n\n### Question\nWhat now?",
            "refined_prompt": f"### {REFINED_TITLE}\n- Repeat BP within a week.\n\n### Question\nWhat now?"}])
        client = client_for(curator)
        page = client.get(f"/refinement/{run.pk}/").content.decode()
        assert "<svg" in page and "Reward per step" in page and "1 → 0.18" in page  # the curve, with its numbers for screen readers
        assert "Validation on held-out patients" in page and "<ins" in page and "<del" in page
        assert "hx-trigger" not in page  # finished: no more polling
        client.post(f"/refinement/{run.pk}/promote/")
        run.refresh_from_db()
        assert run.promoted and run.promoted_by == curator

    def test_clinicians_partners_and_other_organisations_cannot_see_or_touch_runs(
            self, client_for, clinician, partner, other_organisation, organisation, tiny_policy, tiny_checkpoint):
        run = finished_run(organisation, tiny_checkpoint)
        for user in (clinician, partner):
            client = client_for(user)
            assert client.get("/refinement/").status_code == 403
            assert client.get(f"/refinement/{run.pk}/").status_code == 403
            assert client.post(f"/refinement/{run.pk}/promote/").status_code == 403
        their_curator = make_member("curator-south", other_organisation, pm.Role.CURATOR, is_staff=True)
        client = client_for(their_curator)
        assert client.get(f"/refinement/{run.pk}/").status_code == 404
        assert client.post(f"/refinement/{run.pk}/promote/").status_code == 404
        assert client.post(f"/refinement/{run.pk}/cancel/").status_code == 404
        run.refresh_from_db()
        assert not run.promoted
