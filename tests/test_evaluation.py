"""Evaluation runs end to end on a tiny model: held-out patients, six prompt variants × guidance
sources on/off, scores with confidence intervals, the judge, retries, cancel, the command, the
pages and exports, and who may see them."""

import csv
import io
import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from patients import models as pm
from prompting.evaluation_runs import (
    EvaluationError,
    evaluation_run_cancel,
    evaluation_run_create,
    evaluation_run_execute,
    held_out_encounters,
    held_out_peers,
)
from prompting.models import ClinicianRating, EvaluationItem, EvaluationRun, GuidanceRequest, LLMEndpoint
from prompting.pmlm.edits import BY_CODE, EDIT_TITLE, edit_named
from prompting.pmlm.evaluation import VARIANTS
from tests.conftest import make_member
from tests.helpers import BEST_FIXED, finished_run
from tests.llm_servers import ScriptedServer

METRIC_KEYS = {
    "closeness",
    "similarity",
    "rouge_l",
    "key_item_coverage",
    "key_item_precision",
    "flag_mention_rate",
    "safety_warning_rate",
    "words",
    "closeness_vs_general",
    "closeness_vs_pmlm",
}


def evaluated(organisation, **options) -> EvaluationRun:
    options.setdefault("endpoint_names", ["tiny-target"])
    run = evaluation_run_create(organisation=organisation, resamples=200, **options)
    return evaluation_run_execute(run_id=run.pk)


class TestTheEvaluateCommand:
    def test_it_prints_every_variant_with_and_without_sources_with_confidence_intervals(
        self, cohort, tiny_policy, tiny_checkpoint, organisation
    ):
        finished_run(organisation, tiny_checkpoint)
        out = io.StringIO()
        call_command(
            "evaluate",
            "--org",
            organisation.slug,
            "--endpoint",
            "tiny-target",
            "--limit-patients",
            "1",
            "--resamples",
            "200",
            "--json",
            stdout=out,
            stderr=io.StringIO(),
        )
        report = json.loads(out.getvalue())
        rows = report["rows"]
        assert {(r["variant"], r["rag"]) for r in rows} == {(v, rag) for v in VARIANTS for rag in (True, False)}
        for row in rows:
            assert row["endpoint"] == "tiny-target"
            assert row["n"] >= 1
            assert METRIC_KEYS <= set(row)
            low, high = row["ci"]["closeness"]
            assert low <= row["closeness"] <= high
        assert report["patients"] == 1
        assert report["report"]["refinement_run"]["version"] == 1
        assert EvaluationItem.objects.count() == report["examples"] * len(VARIANTS) * 2

    def test_bad_options_are_refused_with_a_message(self, cohort, tiny_policy, organisation):
        for options in (
            ["--limit-patients", "0"],
            ["--endpoint", "nowhere"],
            ["--judge", "nowhere"],
            ["--org", "nowhere"],
        ):
            with pytest.raises(CommandError):
                call_command(
                    "evaluate", "--org", organisation.slug, *options, stdout=io.StringIO(), stderr=io.StringIO()
                )
        assert not EvaluationRun.objects.exists()


class TestWhatIsEvaluated:
    def test_each_variant_sends_its_own_context_and_never_an_identifier(
        self, cohort, tiny_policy, tiny_checkpoint, organisation
    ):
        finished_run(organisation, tiny_checkpoint)
        run = evaluated(organisation, retrieval=(True,))
        assert run.status == pm.JobStatus.DONE, run.error
        prompts = {item.variant: item.prompt for item in run.items.all()}
        assert "Her record" not in prompts["general"]
        assert "Patients like her" not in prompts["general"]
        assert "Her record" in prompts["self"]
        assert "Patients like her" not in prompts["self"]
        assert "Patients like her" in prompts["peer"]
        assert "Her record" not in prompts["peer"]
        assert "Her record" in prompts["pmlm"]
        assert "Patients like her" in prompts["pmlm"]
        assert len(VARIANTS) == 6
        for rl in run.items.filter(variant__in=("pmlm_rl", "pmlm_best_edit")):
            initial = run.items.get(variant="pmlm", encounter_id=rl.encounter_id)
            assert set(rl.refinement) >= {"run", "used", "edit", "label", "problems"}
            if rl.refinement["problems"]:  # a rejected refinement sends the initial prompt
                assert rl.prompt == initial.prompt
                assert not rl.refinement["used"]
            else:
                assert rl.refinement["used"]
                assert rl.refinement["edit"] in BY_CODE
                edit = edit_named(rl.refinement["edit"])
                assert (EDIT_TITLE in rl.prompt) == bool(edit.sentences or edit.restate_flags)
        best = run.items.filter(variant="pmlm_best_edit")
        assert best.exists()
        assert {item.refinement["edit"] for item in best} == {BEST_FIXED}  # the run's recorded best fixed edit
        assert all(
            item.prompt.startswith(run.items.get(variant="pmlm", encounter_id=item.encounter_id).prompt)
            for item in best
        )
        for item in run.items.all():
            assert "Testfamily" not in item.prompt
            assert "Testgiven" not in item.prompt
            assert item.patient.external_id not in item.prompt

    def test_only_held_out_patients_are_evaluated_and_their_peers_are_learning_patients(
        self, cohort, tiny_policy, organisation
    ):
        recommendations, learning, held_out = held_out_encounters(organisation=organisation, seed=7, share=0.25)
        assert recommendations
        assert {r.patient_id for r in recommendations} <= set(held_out)
        assert not set(learning) & set(held_out)
        peers = held_out_peers(organisation=organisation, learning=learning, patients=held_out, on=date.today())
        assert set(peers) == set(held_out)
        assert all(p.basis == "features" and 0 < p.cohort_size <= len(learning) for p in peers.values())
        run = evaluated(organisation, variants=("general", "pmlm"), retrieval=(False,))
        assert {i.patient_id for i in run.items.all()} <= set(held_out)

    def test_patients_the_rl_policy_trained_on_are_never_evaluated(
        self, cohort, tiny_policy, tiny_checkpoint, organisation
    ):
        _, _, held_out = held_out_encounters(organisation=organisation, seed=7, share=0.25)
        finished_run(organisation, tiny_checkpoint, trained_patients=held_out)
        run = evaluated(organisation)
        assert run.status == pm.JobStatus.FAILED
        assert "No held-out patient" in run.error
        assert not run.items.exists()

    def test_without_a_refinement_run_pmlm_rl_is_refused_before_a_run_is_stored_and_the_other_variants_still_run(
        self, cohort, tiny_policy, organisation
    ):
        with pytest.raises(EvaluationError, match="/refinement/"):
            evaluated(organisation)
        assert not EvaluationRun.objects.exists()
        run = evaluated(organisation, variants=("general", "self", "peer", "pmlm"))
        assert run.status == pm.JobStatus.DONE
        assert [r["variant"] for r in run.rows[:4]] == [
            "general",
            "self",
            "peer",
            "pmlm",
        ]

    def test_a_run_of_the_old_rewriting_policy_is_never_measured_as_pmlm_rl(
        self, cohort, tiny_policy, tiny_checkpoint, organisation
    ):
        """Its policy cannot choose an edit: every pmlm_rl answer would be the initial prompt's, labelled as RL."""
        finished_run(organisation, tiny_checkpoint, config={"steps": 2, "target_endpoint": "tiny-target"}, report={})
        with pytest.raises(EvaluationError, match="/refinement/"):
            evaluated(organisation, variants=("pmlm", "pmlm_rl"), retrieval=(False,))
        assert not EvaluationRun.objects.exists()

    def test_bad_settings_are_refused_before_anything_is_stored(self, cohort, tiny_policy, organisation):
        for options in (
            {"variants": ("best",)},
            {"variants": ()},
            {"limit_patients": 0},
            {"endpoint_names": ["nowhere"]},
            {"judge_endpoint_name": "nowhere"},
            {"share": 1.0},
            {"retrieval": ()},
            {"resamples": 5},
            {"limit_patients": "3"},
        ):
            with pytest.raises(EvaluationError):
                evaluation_run_create(organisation=organisation, **options)
        assert not EvaluationRun.objects.exists()


class TestRetriesAndCancelling:
    def test_a_retried_evaluation_resumes_without_duplicating_answers(self, cohort, tiny_policy, organisation):
        run = evaluated(organisation, variants=("general", "pmlm"))
        kept = set(run.items.values_list("pk", flat=True))
        assert run.status == pm.JobStatus.DONE
        assert kept
        assert evaluation_run_execute(run_id=run.pk).items.count() == len(kept)  # a finished run is left alone
        run.items.filter(variant="pmlm").delete()
        EvaluationRun.objects.filter(pk=run.pk).update(status=pm.JobStatus.RUNNING)  # redelivered after its worker died
        run = evaluation_run_execute(run_id=run.pk)
        assert run.status == pm.JobStatus.DONE
        assert run.items.count() == len(kept)
        assert (
            set(run.items.filter(variant="general").values_list("pk", flat=True)) <= kept
        )  # the rest was kept, not redone

    def test_cancelling_stops_a_queued_run_at_once_and_a_running_one_after_its_answer(
        self, cohort, tiny_policy, organisation
    ):
        queued = evaluation_run_create(organisation=organisation, variants=("general",), endpoint_names=["tiny-target"])
        assert evaluation_run_cancel(run=queued).status == pm.JobStatus.CANCELLED
        assert evaluation_run_execute(run_id=queued.pk).status == pm.JobStatus.CANCELLED
        assert not queued.items.exists()
        running = evaluation_run_create(
            organisation=organisation, variants=("general", "pmlm"), endpoint_names=["tiny-target"]
        )

        def cancel_after_first_answer(percent, message):
            if message.startswith("1/"):
                EvaluationRun.objects.filter(pk=running.pk).update(cancel_requested=True)

        running = evaluation_run_execute(run_id=running.pk, on_progress=cancel_after_first_answer)
        assert running.status == pm.JobStatus.CANCELLED
        assert running.items.count() == 1


class TestTheJudgeAndClinicians:
    def test_a_pinned_judge_scores_every_answer_and_is_compared_with_clinician_ratings(
        self, cohort, tiny_policy, organisation, clinician
    ):
        def judge(body):
            item = body["messages"][-1]["content"].split("Rubric item")[1]
            return json.dumps({"explanation": "checked", "criteria_met": "risk flag" in item or "monitored" in item})

        rated = GuidanceRequest.objects.create(
            patient=cohort[1],
            question="Next steps?",
            consultation_date=date.today(),
            endpoint=tiny_policy,
            status=pm.JobStatus.DONE,
            text="Check her blood pressure.",
        )
        ClinicianRating.objects.create(
            guidance=rated, rater=clinician, accuracy=4, completeness=4, personalisation=4, safety=5, clarity=3
        )
        with ScriptedServer(("answer", judge)) as server:
            LLMEndpoint.objects.create(
                name="judge-api",
                kind="openai",
                openness="proprietary",
                settings={"base_url": server.base_url, "model": "judge-model", "max_attempts": 1},
            )
            run = evaluated(
                organisation, variants=("general", "pmlm"), retrieval=(True,), judge_endpoint_name="judge-api"
            )
        assert run.status == pm.JobStatus.DONE, run.error
        assert run.config["judge"] == {"endpoint": "judge-api", "kind": "openai", "model": "judge-model"}
        assert all(row["judge"] is not None and row["ci"]["judge"] for row in run.rows)
        item = run.items.first()
        assert item.judge["criteria"]
        assert {c["met"] for c in item.judge["criteria"]} == {True, False}
        assert run.report["judge"]["agreement"]["n"] == 1
        assert run.report["judge"]["readable_share"] == 1.0
        assert not run.report["notes"]
        pmlm = next(r for r in run.rows if r["variant"] == "pmlm")
        assert pmlm["clinician_rating"] == 4.0
        assert pmlm["clinician_n"] == 1  # the workspace's ratings, beside

    def test_a_judge_that_cannot_follow_the_rubric_format_is_reported_not_trusted(
        self, cohort, tiny_policy, organisation
    ):
        with ScriptedServer(
            ("answer", lambda body: "The clinician should advise her to eat well."),
        ) as server:
            LLMEndpoint.objects.create(
                name="rambling-judge",
                kind="openai",
                settings={"base_url": server.base_url, "model": "small", "max_attempts": 1},
            )
            run = evaluated(
                organisation, variants=("general",), retrieval=(False,), judge_endpoint_name="rambling-judge"
            )
        assert run.status == pm.JobStatus.DONE
        assert run.rows[0]["judge"] is None
        assert run.report["judge"]["readable_share"] == 0.0
        assert "only 0% of rubric criteria" in run.report["notes"][0]


class TestThePages:
    def test_a_curator_starts_an_evaluation_and_watches_it(
        self, client_for, curator, tiny_policy, django_capture_on_commit_callbacks
    ):
        client = client_for(curator)
        page = client.get("/evaluations/")
        assert page.status_code == 200
        assert b"Start an evaluation" in page.content
        assert b"No evaluation yet" in page.content
        with django_capture_on_commit_callbacks() as callbacks:
            response = client.post(
                "/evaluations/start/", {"retrieval": "both", "variants": ["general", "pmlm"], "limit_patients": 3}
            )
        run = EvaluationRun.objects.get()
        assert response.status_code == 302
        assert response["Location"] == f"/evaluations/{run.pk}/"
        assert len(callbacks) == 1
        assert run.config["variants"] == ["general", "pmlm"]
        assert run.config["limit_patients"] == 3
        assert run.created_by == curator
        active = set(LLMEndpoint.objects.filter(active=True).values_list("name", flat=True))
        assert set(run.config["endpoints"]) == active
        assert len(active) >= 2  # none ticked: every configured endpoint
        detail = client.get(f"/evaluations/{run.pk}/")
        assert b'role="progressbar"' in detail.content
        assert b'hx-trigger="every 2s"' in detail.content
        fragment = client.get(f"/evaluations/{run.pk}/", HTTP_HX_REQUEST="true")
        assert b"<html" not in fragment.content
        assert "HX-Request" in fragment["Vary"]

    def test_without_a_finished_refinement_run_the_refined_variants_start_unticked_and_are_refused_if_ticked(
        self, client_for, curator, tiny_policy, tiny_checkpoint, organisation, other_organisation
    ):
        client = client_for(curator)
        form = client.get("/evaluations/").context["form"]
        assert form["variants"].initial == ["general", "self", "peer", "pmlm"]
        assert "need a finished refinement run" in form["variants"].help_text
        response = client.post("/evaluations/start/", {"retrieval": "both", "variants": ["pmlm", "pmlm_rl"]})
        assert response.status_code == 302 and response["Location"] == "/evaluations/"
        assert "need a finished refinement run" in client.get("/evaluations/").content.decode()
        assert not EvaluationRun.objects.exists()  # no run that fails as it starts
        finished_run(other_organisation, tiny_checkpoint)  # another organisation's policy is never hers
        assert client.get("/evaluations/").context["form"]["variants"].initial == ["general", "self", "peer", "pmlm"]
        client.post("/evaluations/start/", {"retrieval": "both", "variants": ["pmlm", "pmlm_rl"]})
        assert not EvaluationRun.objects.exists()
        finished_run(organisation, tiny_checkpoint)
        form = client.get("/evaluations/").context["form"]
        assert form["variants"].initial == list(VARIANTS) and not form["variants"].help_text

    def test_a_form_without_variants_is_shown_again_with_the_error(self, client_for, curator, tiny_policy):
        response = client_for(curator).post("/evaluations/start/", {"retrieval": "both"})
        assert response.status_code == 400
        assert b"This field is required" in response.content
        assert not EvaluationRun.objects.exists()

    def test_clinicians_read_the_table_plots_and_exports_but_do_not_start_runs(
        self, client_for, clinician, cohort, tiny_policy, organisation
    ):
        run = evaluated(organisation, variants=("general", "self", "peer", "pmlm"))
        client = client_for(clinician)
        assert b"Start an evaluation" not in client.get("/evaluations/").content
        assert client.post("/evaluations/start/", {"retrieval": "both", "variants": ["general"]}).status_code == 403
        page = client.get(f"/evaluations/{run.pk}/").content.decode()
        assert "<svg" in page
        assert "95% CI" in page
        assert "PMLM (initial prompt)" in page
        assert "Self-informed" in page
        assert "hx-trigger" not in page
        assert "The physician recommended" in page
        assert "what each variant answered" in page  # sample answers beside the advice
        exported = client.get(f"/evaluations/{run.pk}/export.csv")
        rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
        assert exported["Content-Type"].startswith("text/csv")
        assert len(rows) == len(run.rows)
        assert {"closeness", "closeness_ci_low", "closeness_ci_high"} <= set(rows[0])
        data = json.loads(client.get(f"/evaluations/{run.pk}/export.json").content)
        assert data["rows"] == run.rows
        jobs = client.get("/jobs/").content.decode()
        assert f'href="/evaluations/{run.pk}/"' in jobs

    def test_partners_and_other_organisations_cannot_see_or_touch_evaluations(
        self, client_for, partner, other_organisation, organisation, tiny_policy
    ):
        run = evaluation_run_create(organisation=organisation, variants=("general",))
        urls = [
            "/evaluations/",
            f"/evaluations/{run.pk}/",
            f"/evaluations/{run.pk}/export.csv",
            f"/evaluations/{run.pk}/export.json",
        ]
        client = client_for(partner)
        assert all(client.get(url).status_code == 403 for url in urls)
        assert client.post(f"/evaluations/{run.pk}/cancel/").status_code == 403
        their_curator = make_member("curator-south", other_organisation, pm.Role.CURATOR, is_staff=True)
        client = client_for(their_curator)
        assert all(client.get(url).status_code == 404 for url in urls[1:])
        assert client.post(f"/evaluations/{run.pk}/cancel/").status_code == 404
        run.refresh_from_db()
        assert run.status == pm.JobStatus.QUEUED
        assert not run.cancel_requested
