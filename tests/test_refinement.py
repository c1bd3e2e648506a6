"""Refinement runs end to end on a tiny model: the reward table of every edit of the menu, the best
fixed edit, TRL GRPO training of the edit policy, validation on held-out patients, the command,
cancelling, promotion, guidance with the promoted policy, the evaluation that reuses a run's
answers, and the run pages with who may see them."""

import io
import json
from datetime import date
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from patients import models as pm
from prompting.consultation import question_prompt
from prompting.encounters import patient_split
from prompting.evaluation_runs import evaluation_run_create, evaluation_run_execute
from prompting.guidance import guidance_as_json, guidance_request_create
from prompting.models import PersonalizedPrompt, RefinementRun
from prompting.pmlm.edits import (
    BY_CODE,
    EDIT_TITLE,
    IDENTITY,
    MENU,
    MENU_VERSION,
    PEER_ADVICE,
    edit_named,
    instruction_sentences,
)
from prompting.pmlm.policy import is_checkpoint
from prompting.pmlm.refine import Problem
from prompting.refinement import (
    RefinementError,
    policy_refinement,
    prompt_refine,
    refinement_run_cancel,
    refinement_run_create,
    refinement_run_execute,
    refinement_run_promote,
)
from tests.conftest import make_member
from tests.helpers import ADDS, BEST_FIXED, RESTATES, finished_run

AT = date(2025, 5, 2)
CODES = [edit.code for edit in MENU]
DROPS_ONLY = next(e.code for e in MENU if e.drop and not (e.sentences or e.restate_flags))


def cached_answers() -> int:
    """Answers of the target LLM on disk: a new file is a prompt the model was asked for the first time."""
    directory = settings.VAR_DIR / "cache" / "target-llm"
    return sum(1 for path in directory.rglob("*.txt")) if directory.exists() else 0


def small_run(organisation, **options) -> RefinementRun:
    options = {"steps": 2, "max_examples": 8, "num_generations": 2, **options}
    return refinement_run_execute(run_id=refinement_run_create(organisation=organisation, **options).pk)


class TestARun:
    def test_it_answers_every_edit_trains_the_policy_and_validates_on_patients_it_never_saw(
        self, cohort, tiny_policy, organisation
    ):
        run = refinement_run_create(organisation=organisation, steps=2, max_examples=8, num_generations=2)
        seen = []
        run = refinement_run_execute(run_id=run.pk, on_progress=lambda percent, message: seen.append(message))
        assert run.status == pm.JobStatus.DONE, run.error
        assert run.step == 2
        assert [p["step"] for p in run.curve] == [1, 2]
        assert run.progress == 100
        assert is_checkpoint(settings.VAR_DIR / run.checkpoint)
        assert run.train_patients + run.validation_patients == 4
        assert run.validation_patients >= 1
        assert len(run.validation) == run.validation_examples == 2 * run.validation_patients  # sources on and off
        assert run.reward_initial is not None
        assert run.reward_refined is not None
        assert 0 <= run.accepted_share <= 1
        assert any(m.startswith("Answering every edit") for m in seen)
        assert any(m.startswith("Step 1/2") for m in seen)
        assert any(m.startswith("Validating") for m in seen)
        # The config records what produced it: sane CPU defaults, the target endpoint and the menu.
        assert run.config["device"] == "cpu"
        assert run.config["target_endpoint"] == "tiny-target"
        assert not run.config["bf16"]
        assert run.config["menu"] == MENU_VERSION
        assert run.config["max_completion_tokens"] == 3
        # Validation patients are the evaluation's held-out patients: the policy never trained on them.
        learning, held_out = patient_split(organisation, seed=run.config["seed"], share=run.config["share"])
        validated = {row["patient"] for row in run.validation}
        assert validated
        assert validated <= set(held_out)
        assert set(run.trained_patients) <= set(learning)
        assert not validated & set(run.trained_patients)
        assert len(run.trained_patients) == run.train_patients
        assert (
            run.train_examples == 2 * run.train_patients
        )  # one encounter each, with and without sources: more patients

    def test_its_report_holds_the_best_fixed_edit_the_paired_validation_and_what_the_policy_learned(
        self, cohort, tiny_policy, organisation, knowledge
    ):
        run = small_run(organisation)
        report = run.report
        assert run.status == pm.JobStatus.DONE, run.error
        assert report["menu"] == MENU_VERSION
        assert run.target_calls == report["target_calls"] > 0
        best = report["best_fixed"]
        assert best["code"] in BY_CODE
        assert best["label"] == edit_named(best["code"]).label
        assert (
            best["mean_reward"] >= best["initial_mean_reward"]
        )  # E0 is on the menu: the best is never worse on training
        assert report["oracle_mean_reward"] >= best["mean_reward"]
        assert set(report["stage_minutes"]) == {"examples", "reward_table", "training", "validation"}
        assert report["deployed"] in ("policy", "best_fixed", "by_sources")
        assert report["policy_train_mean_reward"] is not None
        assert set(report["by_sources"]) == {"on", "off"}
        for block in report["by_sources"].values():
            assert block["best_fixed"]["code"] in BY_CODE
            assert block["best_fixed"]["examples"] == run.train_patients  # one encounter each, in each setting
            assert block["deployed"] in ("policy", "best_fixed")
        validation = report["validation"]
        assert validation["n"] == run.validation_examples
        assert validation["patients"] == run.validation_patients
        assert validation["difference"] == pytest.approx(run.reward_refined - run.reward_initial, abs=2e-4)
        low, high = validation["ci"]
        assert low <= validation["difference"] <= high
        assert set(validation["vs_best_fixed"]) >= {"difference", "ci"}
        assert set(validation["best_fixed_vs_initial"]) >= {"difference", "ci"}
        assert set(validation["by_sources"]) == {"on", "off"}
        assert all(side["n"] == run.validation_patients for side in validation["by_sources"].values())
        learned = report["learned"]
        assert [e["code"] for e in learned["edits"]] == CODES
        assert sum(e["chosen"] for e in learned["edits"]) == run.train_examples + run.validation_examples
        assert learned["kinds"]
        assert all(k["edits"][0]["code"] in BY_CODE for k in learned["kinds"])
        assert any(
            k["kind"].startswith("Hypertension") for k in learned["kinds"]
        )  # two of the four women have raised BP
        for row in run.validation:
            assert row["code"] in BY_CODE
            setting = "on" if row["rag"] else "off"
            assert row["best_fixed"] == report["by_sources"][setting]["best_fixed"]["code"]
            if report["by_sources"][setting]["deployed"] == "best_fixed":
                assert row["code"] == row["best_fixed"]
            assert row["kinds"]
            if not row["accepted"]:
                assert row["problems"]
                assert row["reward_refined"] == row["reward_initial"]

    def test_a_second_identical_run_asks_the_target_llm_nothing_new(self, cohort, tiny_policy, organisation):
        first = small_run(organisation, steps=1)
        assert first.status == pm.JobStatus.DONE, first.error
        before = cached_answers()
        assert before >= first.target_calls > 0
        second = small_run(organisation, steps=1)
        assert second.status == pm.JobStatus.DONE, second.error
        assert cached_answers() == before
        assert second.target_calls == first.target_calls  # the same distinct prompts, answered from the cache
        assert second.report["best_fixed"] == first.report["best_fixed"]

    def test_refine_prompts_prints_the_run_its_validation_and_the_best_fixed_edit_as_json(
        self, cohort, tiny_policy, organisation, capsys
    ):
        call_command(
            "refine_prompts",
            "--org",
            organisation.slug,
            "--steps",
            "1",
            "--max-examples",
            "4",
            "--num-generations",
            "2",
            "--json",
        )
        report = json.loads(capsys.readouterr().out)
        assert {
            "run_id",
            "steps",
            "reward_initial",
            "reward_refined",
            "minutes",
            "target_calls",
            "validation",
            "best_fixed_edit",
            "checkpoint",
        } <= set(report)
        assert report["steps"] == 1
        assert Path(report["checkpoint"]).exists()
        assert isinstance(report["reward_initial"], float)
        assert isinstance(report["reward_refined"], float)
        assert isinstance(report["minutes"], float)
        assert report["target_calls"] > 0
        assert {"n", "patients", "difference", "ci"} <= set(report["validation"])
        assert report["validation"]["n"] >= 1
        assert report["best_fixed_edit"]["code"] in BY_CODE
        assert RefinementRun.objects.get(pk=report["run_id"]).status == pm.JobStatus.DONE

    def test_refine_prompts_prints_a_readable_summary_without_json(self, cohort, tiny_policy, organisation):
        out = io.StringIO()
        call_command(
            "refine_prompts",
            "--org",
            organisation.slug,
            "--steps",
            "1",
            "--max-examples",
            "2",
            "--num-generations",
            "2",
            "--max-validation",
            "1",
            stdout=out,
            stderr=io.StringIO(),
        )
        text = out.getvalue()
        assert "distinct target-LLM answers" in text
        assert "Held out:" in text
        assert "Best fixed edit" in text

    def test_refine_prompts_says_so_when_no_held_out_patient_could_be_validated(
        self, cohort, tiny_policy, organisation
    ):
        """A small organisation whose held-out patients have no physician recommendation yet: the run
        trains, validates nothing, and the command reports that instead of failing on a missing figure."""
        _, held_out = patient_split(organisation, seed=7, share=0.25)
        pm.PhysicianRecommendation.objects.filter(patient_id__in=held_out).delete()
        out = io.StringIO()
        call_command(
            "refine_prompts",
            "--org",
            organisation.slug,
            "--steps",
            "1",
            "--max-examples",
            "2",
            "--num-generations",
            "2",
            stdout=out,
            stderr=io.StringIO(),
        )
        run = RefinementRun.objects.get()
        assert run.status == pm.JobStatus.DONE
        assert run.validation == []
        assert run.report["validation"]["n"] == 0
        assert "Held out: 0 answers" in out.getvalue()

    @pytest.mark.parametrize(
        "cancelled_at, steps_done",
        [
            ("Answering every edit of training example 1/", 0),  # before training starts
            ("Step 1/", 1),  # while training: after its step
        ],
    )
    def test_a_cancelled_run_stops_where_it_is_and_keeps_no_checkpoint(
        self, cohort, tiny_policy, organisation, cancelled_at, steps_done
    ):
        run = refinement_run_create(organisation=organisation, steps=5, max_examples=8, num_generations=2)

        def cancel(percent, message):
            if message.startswith(cancelled_at):
                refinement_run_cancel(run=run)

        run = refinement_run_execute(run_id=run.pk, on_progress=cancel)
        assert run.status == pm.JobStatus.CANCELLED
        assert run.step == steps_done
        assert run.checkpoint == ""
        assert not (settings.VAR_DIR / "models" / "refiner" / f"{organisation.slug}-run-{run.version}").exists()

    def test_a_queued_run_cancelled_never_starts_and_a_finished_run_is_never_run_again(
        self, tiny_policy, organisation, tiny_checkpoint
    ):
        queued = refinement_run_create(organisation=organisation, steps=1)
        assert refinement_run_cancel(run=queued).status == pm.JobStatus.CANCELLED
        assert refinement_run_execute(run_id=queued.pk).status == pm.JobStatus.CANCELLED
        done = finished_run(organisation, tiny_checkpoint)
        assert refinement_run_execute(run_id=done.pk).curve == done.curve  # a redelivered task leaves it alone

    def test_without_physician_recommendations_a_run_fails_with_its_reason(
        self, tiny_policy, organisation, imported_patient
    ):
        run = refinement_run_execute(run_id=refinement_run_create(organisation=organisation, steps=1).pk)
        assert run.status == pm.JobStatus.FAILED
        assert "physician recommendation" in run.error
        assert run.finished_at is not None

    @pytest.mark.parametrize(
        "bad",
        [
            {"steps": 0},
            {"max_examples": -3},
            {"num_generations": 1},
            {"steps": "four"},
            {"max_validation": 0},
            {"steps": True},
        ],
    )
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

    def test_a_run_of_the_old_rewriting_policy_cannot_be_promoted(self, tiny_policy, organisation, tiny_checkpoint):
        legacy = finished_run(
            organisation, tiny_checkpoint, config={"steps": 2, "target_endpoint": "tiny-target", "device": "cpu"}
        )
        with pytest.raises(RefinementError, match="no longer uses"):
            refinement_run_promote(run=legacy)
        legacy.refresh_from_db()
        assert not legacy.promoted

    def test_a_legacy_run_promoted_before_the_upgrade_refines_nothing_and_says_why(
        self, cohort, tiny_policy, organisation, tiny_checkpoint
    ):
        finished_run(
            organisation, tiny_checkpoint, config={"steps": 2, "target_endpoint": "tiny-target"}, promoted=True
        )
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE
        assert guidance.refined_prompt is None
        assert guidance.refinement["used"] is False
        assert [p["kind"] for p in guidance.refinement["problems"]] == ["policy_error"]

    def test_one_run_is_promoted_per_organisation(self, tiny_policy, organisation, other_organisation, tiny_checkpoint):
        first, second = finished_run(organisation, tiny_checkpoint), finished_run(organisation, tiny_checkpoint)
        theirs = finished_run(other_organisation, tiny_checkpoint)
        for run in (first, second, theirs):
            refinement_run_promote(run=run)
        promoted = set(RefinementRun.objects.filter(promoted=True).values_list("pk", flat=True))
        assert promoted == {second.pk, theirs.pk}


def hypertensive(cohort):
    return cohort[1]


def choose(monkeypatch, code, probabilities=None, seen=None):
    """The promoted policy chooses `code` whatever it reads; `seen` collects what it read."""

    def policy_edit(run, situation):
        if seen is not None:
            seen.append(situation)
        return code, probabilities or {c: (1.0 if c == code else 0.0) for c in CODES}

    monkeypatch.setattr("prompting.refinement.policy_edit", policy_edit)


class TestGuidanceWithThePromotedPolicy:
    def test_guidance_sends_the_edited_prompt_when_it_passes_the_guard_and_keeps_both(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        choose(monkeypatch, RESTATES)
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE, guidance.error
        refined, initial = guidance.refined_prompt, guidance.prompt
        assert refined.refined_from == initial
        assert refined.refinement_run.promoted
        assert guidance.refinement["used"] is True
        assert guidance.refinement["edit"] == RESTATES
        assert guidance.refinement["label"] == edit_named(RESTATES).label
        assert guidance.refinement["problems"] == []
        assert initial.risk_flags
        assert all(flag["label"] in refined.text for flag in initial.risk_flags)
        sources = [s["source"] for s in refined.sections]
        added = [s for s in refined.sections if s.get("refined")]
        assert len(added) == 1
        assert added[0]["title"] == EDIT_TITLE
        assert added[0]["edit"] == RESTATES
        assert sources[-2:] == ["question", "instructions"]  # the edit's sentences follow the question
        assert refined.text.index("What now?") < refined.text.index(EDIT_TITLE)
        restated = added[0]["text"].splitlines()[0]  # her flags, restated beside the question
        assert restated.startswith("- Her risk flags: ")
        assert all(f["label"] in restated for f in initial.risk_flags)
        if set(PEER_ADVICE) <= set(edit_named(RESTATES).drop):
            assert "Their physicians most often recommended" not in refined.text
        report = guidance_as_json(guidance)
        assert report["prompt"] == refined.text
        assert report["initial_prompt"] == initial.text
        # Asked again, the same refinement is reused rather than stored twice.
        again = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert again.refined_prompt == refined
        assert PersonalizedPrompt.objects.filter(refined_from=initial).count() == 1
        assert again.refinement["edit"] == RESTATES
        assert again.refinement["used"] is True

    def test_when_the_policy_keeps_the_prompt_as_it_is_the_initial_prompt_is_sent_as_its_choice(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        choose(monkeypatch, IDENTITY)
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE
        assert guidance.refined_prompt is None
        assert guidance.refinement["used"] is True
        assert guidance.refinement["edit"] == IDENTITY
        assert not guidance.refinement["problems"]
        assert guidance_as_json(guidance)["prompt"] == guidance.prompt.text
        assert not PersonalizedPrompt.objects.filter(refined_from__isnull=False).exists()

    def test_an_edit_that_fails_the_guard_is_never_sent_and_the_reason_is_kept(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        choose(monkeypatch, ADDS)
        monkeypatch.setattr(
            "prompting.refinement.check_refined", lambda **kwargs: [Problem("invented_finding", "bleeding")]
        )
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE
        assert guidance.refined_prompt is None
        assert guidance.refinement["used"] is False
        assert guidance.refinement["edit"] == ADDS
        assert guidance.refinement["problems"] == [
            {"kind": "invented_finding", "detail": "bleeding", "label": "mentioned a finding not in her context"}
        ]
        assert guidance_as_json(guidance)["prompt"] == guidance.prompt.text
        assert not PersonalizedPrompt.objects.filter(refined_from__isnull=False).exists()

    def test_a_policy_that_fails_leaves_the_initial_prompt_and_guidance_completes(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))

        def broken(run, situation):
            raise OSError("checkpoint unreadable")

        monkeypatch.setattr("prompting.refinement.policy_edit", broken)
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE
        assert guidance.refined_prompt is None
        assert guidance.refinement["used"] is False
        assert guidance.refinement["problems"][0]["kind"] == "policy_error"
        assert "unreadable" in guidance.refinement["problems"][0]["detail"]

    def test_no_edit_of_the_menu_ever_sends_a_prompt_without_her_risk_flags(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        run = refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        patient = hypertensive(cohort)
        prompt = question_prompt(patient=patient, question="What now?", at=AT)[0]
        assert prompt.risk_flags
        for code in CODES:
            choose(monkeypatch, code)
            sent, info = prompt_refine(prompt=prompt, patient=patient)
            assert info["edit"] == code and info["used"] is True and info["problems"] == [], code
            assert all(f["label"] in sent.text for f in prompt.risk_flags), code
            if code == IDENTITY:
                assert sent == prompt
            else:
                assert sent.refined_from == prompt
                assert sent.refinement_run == run
                assert sent.template_version.endswith("+rl1")
            PersonalizedPrompt.objects.filter(refined_from=prompt).delete()  # the next edit is stored afresh

    def test_a_reused_refinement_still_names_the_edit_that_made_it(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        """An edit that only drops lines adds no section, yet guidance must still say which edit it was."""
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        choose(monkeypatch, DROPS_ONLY)
        first = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        again = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert first.refinement["edit"] == DROPS_ONLY
        assert first.refinement["used"] is True
        assert again.refinement["edit"] == DROPS_ONLY
        assert again.refinement["label"] == edit_named(DROPS_ONLY).label

    def test_the_policy_never_reads_her_name_even_when_the_question_holds_it(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        seen = []
        choose(monkeypatch, ADDS, seen=seen)
        patient = hypertensive(cohort)
        guidance = guidance_request_create(
            patient=patient, question="What now for Testgiven1 Testfamily1?", at=AT, run_inline=True
        )
        assert guidance.status == pm.JobStatus.DONE
        assert seen
        assert "Testgiven1" not in guidance.prompt.text  # the prompt is de-identified…
        assert "Testgiven1" not in seen[0]
        assert "Testfamily1" not in seen[0]  # …and so must be what the policy reads

    def test_the_real_tiny_policy_chooses_an_edit_of_the_menu_and_guidance_always_completes(
        self, cohort, tiny_policy, organisation, tiny_checkpoint
    ):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.status == pm.JobStatus.DONE
        assert guidance.refinement["run"]
        assert guidance.refinement["edit"] in BY_CODE
        assert "refine_ms" in guidance.timings
        sent = guidance.refined_prompt or guidance.prompt
        assert all(f["label"] in sent.text for f in guidance.prompt.risk_flags)

    def test_the_best_fixed_edit_of_a_run_is_its_recorded_one(self, cohort, tiny_policy, organisation, tiny_checkpoint):
        run = finished_run(organisation, tiny_checkpoint)
        prompt = question_prompt(patient=hypertensive(cohort), question="What now?", at=AT)[0]
        refined = policy_refinement(
            run,
            initial_text=prompt.text,
            sections=prompt.sections,
            risk_flags=prompt.risk_flags,
            question=prompt.question,
            identifiers=[],
            token_budget=prompt.template.token_budget,
            fixed=True,
        )
        assert refined["edit"] == BEST_FIXED
        assert refined["problems"] == []
        assert refined["probabilities"] == {}
        flags = [f["label"] for f in prompt.risk_flags]
        assert refined["text"].startswith(prompt.text)
        assert all(sentence in refined["text"] for sentence in instruction_sentences(edit_named(BEST_FIXED), flags))
        without = finished_run(organisation, tiny_checkpoint, report={})
        refined = policy_refinement(
            without,
            initial_text=prompt.text,
            sections=prompt.sections,
            risk_flags=prompt.risk_flags,
            question=prompt.question,
            identifiers=[],
            token_budget=prompt.template.token_budget,
            fixed=True,
        )
        assert [p["kind"] for p in refined["problems"]] == ["policy_error"]
        assert refined["text"] == ""

    def test_a_run_whose_policy_did_worse_than_the_best_fixed_edit_while_learning_applies_the_best_fixed_edit(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        run = finished_run(organisation, tiny_checkpoint)
        run.report = {
            **run.report,
            "deployed": "best_fixed",
            "policy_train_mean_reward": 0.25,
            "best_fixed_train_mean_reward": 0.3,
        }
        run.save(update_fields=["report"])
        monkeypatch.setattr("prompting.refinement.policy_edit", lambda run, situation: (DROPS_ONLY, {DROPS_ONLY: 1.0}))
        prompt = question_prompt(patient=hypertensive(cohort), question="What now?", at=AT)[0]
        refined = policy_refinement(
            run,
            initial_text=prompt.text,
            sections=prompt.sections,
            risk_flags=prompt.risk_flags,
            question=prompt.question,
            identifiers=[],
            token_budget=prompt.template.token_budget,
        )
        assert refined["edit"] == BEST_FIXED
        assert refined["problems"] == []

    def test_a_run_that_chose_per_guidance_sources_setting_applies_the_edit_of_the_requests_own_setting(
        self, cohort, tiny_policy, organisation, tiny_checkpoint, monkeypatch, knowledge
    ):
        with_sources, without = edit_named("E8"), edit_named("E6")
        run = finished_run(organisation, tiny_checkpoint)
        run.report = {
            **run.report,
            "deployed": "best_fixed",
            "by_sources": {
                "on": {"best_fixed": {"code": with_sources.code}, "deployed": "best_fixed"},
                "off": {"best_fixed": {"code": without.code}, "deployed": "best_fixed"},
            },
        }
        run.save(update_fields=["report"])
        monkeypatch.setattr("prompting.refinement.policy_edit", lambda run, situation: (DROPS_ONLY, {DROPS_ONLY: 1.0}))
        sent = {}
        for use_retrieval in (True, False):
            prompt = question_prompt(
                patient=hypertensive(cohort), question="What now?", at=AT, use_retrieval=use_retrieval
            )[0]
            sent[use_retrieval] = policy_refinement(
                run,
                initial_text=prompt.text,
                sections=prompt.sections,
                risk_flags=prompt.risk_flags,
                question=prompt.question,
                identifiers=[],
                token_budget=prompt.template.token_budget,
            )
        assert sent[True]["edit"] == with_sources.code
        assert sent[False]["edit"] == without.code
        assert "Their physicians most often recommended" not in sent[False]["text"]
        assert all(refined["problems"] == [] for refined in sent.values())

    def test_without_a_promoted_run_nothing_is_refined(self, cohort, tiny_policy):
        guidance = guidance_request_create(patient=hypertensive(cohort), question="What now?", at=AT, run_inline=True)
        assert guidance.refinement == {}
        assert guidance.refined_prompt is None
        assert prompt_refine(prompt=guidance.prompt, patient=hypertensive(cohort)) == (guidance.prompt, {})


class TestEvaluatingARun:
    def test_the_evaluation_of_pmlm_and_its_refinements_reads_the_answers_the_runs_validation_already_has(
        self, cohort, tiny_policy, organisation
    ):
        run = small_run(organisation, steps=1)
        assert run.status == pm.JobStatus.DONE, run.error
        before = cached_answers()
        evaluation = evaluation_run_execute(
            run_id=evaluation_run_create(
                organisation=organisation, endpoint_names=["tiny-target"], variants=("pmlm", "pmlm_rl"), resamples=200
            ).pk
        )
        assert evaluation.status == pm.JobStatus.DONE, evaluation.error
        assert cached_answers() == before  # every prompt was answered by the run's validation
        assert {i.patient_id for i in evaluation.items.all()} == {row["patient"] for row in run.validation}
        assert evaluation.report["refinement_run"]["version"] == run.version
        rows = {(r["variant"], r["rag"]): r for r in evaluation.rows}
        assert set(rows) == {(v, rag) for v in ("pmlm", "pmlm_rl") for rag in (True, False)}
        for (variant, _), row in rows.items():
            assert "key_item_precision" in row
            assert "closeness_vs_pmlm" in row
            assert (row["closeness_vs_pmlm"] is None) == (variant == "pmlm")  # pmlm is the baseline itself
        chosen = {row["code"] for row in run.validation}
        assert {i.refinement["edit"] for i in evaluation.items.filter(variant="pmlm_rl")} <= chosen

        # The best fixed edit variant sends the run's best fixed edit, also answered by its validation.
        evaluation = evaluation_run_execute(
            run_id=evaluation_run_create(
                organisation=organisation,
                endpoint_names=["tiny-target"],
                variants=("pmlm", "pmlm_best_edit"),
                resamples=200,
            ).pk
        )
        assert evaluation.status == pm.JobStatus.DONE, evaluation.error
        assert cached_answers() == before
        best = edit_named(run.report["best_fixed"]["code"])
        items = list(evaluation.items.filter(variant="pmlm_best_edit"))
        assert items
        assert all(item.refinement["edit"] == best.code for item in items)
        for item in items:
            initial = evaluation.items.get(
                variant="pmlm", encounter_id=item.encounter_id, use_retrieval=item.use_retrieval
            )
            if not item.refinement["used"]:
                assert item.refinement["problems"]
                assert item.prompt == initial.prompt
            elif not (best.drop or best.first_source_only):
                assert item.prompt.startswith(initial.prompt)


class TestRunPages:
    def test_a_curator_starts_a_run_with_defaults(
        self, client_for, curator, tiny_policy, django_capture_on_commit_callbacks
    ):
        client = client_for(curator)
        page = client.get("/refinement/")
        assert page.status_code == 200
        assert b"Start a run" in page.content
        assert b"No refinement run yet" in page.content
        with django_capture_on_commit_callbacks() as callbacks:
            response = client.post("/refinement/start/", {"steps": 4, "max_examples": 24, "num_generations": 4})
        run = RefinementRun.objects.get()
        assert response.status_code == 302
        assert response["Location"] == f"/refinement/{run.pk}/"
        assert run.created_by == curator
        assert run.status == pm.JobStatus.QUEUED
        assert len(callbacks) == 1  # the task is queued
        assert run.config["menu"] == MENU_VERSION
        assert run.config["steps"] == 4
        assert client.get(f"/refinement/{run.pk}/").status_code == 200

    def test_bad_settings_are_shown_on_the_form(self, client_for, curator, tiny_policy):
        response = client_for(curator).post(
            "/refinement/start/", {"steps": 0, "max_examples": 24, "num_generations": 1}
        )
        assert response.status_code == 400
        assert b"Ensure this value is greater than or equal to" in response.content
        assert not RefinementRun.objects.exists()

    def test_a_curator_promotes_a_finished_run(self, client_for, curator, organisation, tiny_policy, tiny_checkpoint):
        run = finished_run(organisation, tiny_checkpoint)
        client_for(curator).post(f"/refinement/{run.pk}/promote/")
        run.refresh_from_db()
        assert run.promoted
        assert run.promoted_by == curator

    def test_clinicians_partners_and_other_organisations_cannot_see_or_touch_runs(
        self, client_for, clinician, partner, other_organisation, organisation, tiny_policy, tiny_checkpoint
    ):
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
