"""The clinician workspace: prompt and guidance side by side, ratings, blinded A/B, charts, jobs,
and who may see what."""

from datetime import date

import pytest

from patients import models as pm
from prompting.guidance import guidance_request_create, guidance_request_run
from prompting.models import ABComparison, ABJudgement, ClinicianRating, GuidanceRequest, PeerModel
from prompting.pmlm.agreement import fleiss_kappa, pairwise_agreement, win_rates
from prompting.ratings import RatingError, ab_comparison_create, ab_judge, ab_summary, guidance_rate
from prompting.refinement import clinician_references, refinement_run_promote
from prompting.templatetags.clinic import with_citation_links
from tests.conftest import make_member
from tests.helpers import RESTATES, finished_run

AT = date(2025, 5, 2)
SCORES = {"accuracy": 4, "completeness": 3, "personalisation": 5, "safety": 4, "clarity": 4}


@pytest.fixture
def her(cohort):
    return cohort[1]  # hypertensive, with a physician recommendation


def done_guidance(patient, **options) -> GuidanceRequest:
    return guidance_request_create(patient=patient, question="What now?", at=AT, run_inline=True, **options)


class TestAsking:
    def test_asking_queues_guidance_and_shows_the_prompt_beside_the_guidance(
        self, client_for, clinician, her, tiny_policy
    ):
        client = client_for(clinician)
        response = client.post(
            f"/patients/{her.pk}/guidance/",
            {"question": "Plan for her next visit?", "at": "2025-05-02", "use_retrieval": "on"},
            HTTP_HX_REQUEST="true",
        )
        page = response.content.decode()
        assert response.status_code == 200
        assert "HX-Request" in response["Vary"]
        assert 'data-panel="prompt"' in page
        assert 'data-panel="guidance"' in page
        assert "Waiting for a worker" in page
        assert 'role="progressbar"' in page  # it follows the request until done
        guidance = GuidanceRequest.objects.get()
        assert guidance.status == pm.JobStatus.QUEUED
        assert guidance.created_by == clinician

        guidance_request_run(guidance_id=guidance.pk)  # what the worker does
        prompt_panel = client.get(f"/patients/{her.pk}/guidance/{guidance.pk}/prompt/").content.decode()
        assert "Her record" in prompt_panel
        assert "Similar patients" in prompt_panel
        assert "Question" in prompt_panel
        assert "Hypertension" in prompt_panel
        assert "hx-get" not in prompt_panel  # flags with evidence; no more polling
        guidance_panel = client.get(f"/patients/{her.pk}/guidance/{guidance.pk}/").content.decode()
        assert "Done" in guidance_panel
        assert "tiny-target" in guidance_panel
        assert "Rate this guidance" in guidance_panel
        assert "Regenerate" in guidance_panel
        assert "Decision support for a clinician" in guidance_panel

    def test_a_question_that_is_too_long_is_refused_with_a_message(self, client_for, clinician, her, tiny_policy):
        response = client_for(clinician).post(f"/patients/{her.pk}/guidance/", {"question": "x" * 2001})
        assert b'role="alert"' in response.content
        assert not GuidanceRequest.objects.exists()

    def test_regenerating_without_guidance_sources_asks_again_with_the_same_question(
        self, client_for, clinician, her, tiny_policy
    ):
        first = done_guidance(her)
        client_for(clinician).post(
            f"/patients/{her.pk}/guidance/",
            {"question": first.question, "at": "2025-05-02", "endpoint": tiny_policy.pk},
        )
        again = GuidanceRequest.objects.exclude(pk=first.pk).get()
        assert again.question == first.question
        assert again.use_retrieval is False

    def test_the_prompt_panel_switches_between_the_refined_and_the_initial_prompt(
        self, client_for, clinician, her, tiny_policy, organisation, tiny_checkpoint, monkeypatch
    ):
        refinement_run_promote(run=finished_run(organisation, tiny_checkpoint))
        monkeypatch.setattr("prompting.refinement.policy_edit", lambda run, situation: (RESTATES, {RESTATES: 1.0}))
        guidance = done_guidance(her)
        panel = client_for(clinician).get(f"/patients/{her.pk}/guidance/{guidance.pk}/prompt/").content.decode()
        assert 'role="tab"' in panel
        assert "RL-refined (sent)" in panel
        assert "Initial" in panel
        assert "Differences" in panel
        assert "<ins" in panel
        assert f"added by edit {RESTATES}, chosen by the RL policy" in panel

    def test_a_citation_in_the_text_links_to_its_passage(self, her, tiny_policy):
        guidance = GuidanceRequest(pk=7, patient=her, citations=[{"n": 1}, {"n": 2}])
        html = with_citation_links("Aspirin <b>now</b> [1], see [3].\nThen [2].", guidance)
        assert 'href="#cite-7-1"' in html
        assert 'href="#cite-7-2"' in html
        assert "[3]" in html
        assert "#cite-7-3" not in html
        assert "&lt;b&gt;" in html
        assert "<br>" in html


class TestRating:
    def test_a_clinician_rates_guidance_once_and_can_change_her_mind(self, client_for, clinician, her, tiny_policy):
        guidance = done_guidance(her)
        client = client_for(clinician)
        url = f"/patients/{her.pk}/guidance/{guidance.pk}/rate/"
        response = client.post(url, {**SCORES, "would_follow": "yes", "comment": "Good plan"})
        assert response.status_code == 200
        assert b"Saved" in response.content
        client.post(url, {**SCORES, "safety": 2, "would_follow": "no"})
        rating = ClinicianRating.objects.get()
        assert (rating.rater, rating.safety, rating.would_follow, rating.comment) == (clinician, 2, False, "")

    @pytest.mark.parametrize("bad", [{"accuracy": ""}, {"clarity": 6}, {"safety": 0}, {"completeness": "good"}])
    def test_an_incomplete_or_out_of_range_rating_is_refused_and_nothing_is_stored(
        self, client_for, clinician, her, tiny_policy, bad
    ):
        guidance = done_guidance(her)
        response = client_for(clinician).post(f"/patients/{her.pk}/guidance/{guidance.pk}/rate/", {**SCORES, **bad})
        assert response.status_code == 400
        assert b'role="alert"' in response.content
        assert not ClinicianRating.objects.exists()

    def test_unfinished_guidance_cannot_be_rated(self, clinician, her, tiny_policy):
        queued = guidance_request_create(patient=her, question="What now?", at=AT)
        with pytest.raises(RatingError, match="finished"):
            guidance_rate(guidance=queued, rater=clinician, scores=SCORES)

    def test_ratings_become_references_for_the_refinement_rewards(self, clinician, curator, her, tiny_policy):
        liked, disliked = done_guidance(her), done_guidance(her, use_retrieval=False)
        guidance_rate(guidance=liked, rater=clinician, scores={s: 5 for s in SCORES})
        guidance_rate(guidance=disliked, rater=clinician, scores={s: 1 for s in SCORES})
        guidance_rate(guidance=disliked, rater=curator, scores={s: 2 for s in SCORES})
        endorsed, rejected = clinician_references(her)
        assert endorsed == (liked.text,)
        assert rejected == (disliked.text,)


class TestBlindedAB:
    def test_two_answers_differ_in_one_way_and_stay_blinded_until_the_pick(
        self, client_for, clinician, her, tiny_policy
    ):
        client = client_for(clinician)
        response = client.post(
            f"/patients/{her.pk}/ab/", {"question": "What now?", "at": "2025-05-02", "kind": "retrieval"}
        )
        comparison = ABComparison.objects.get()
        a, b = comparison.guidance_a, comparison.guidance_b
        assert {a.use_retrieval, b.use_retrieval} == {True, False}
        assert a.question == b.question
        assert {comparison.variant_a, comparison.variant_b} == {"with guidance sources", "without guidance sources"}
        page = response.content.decode()
        assert "Answer A" in page
        assert "Answer B" in page
        assert "guidance sources</strong>" not in page
        assert "Waiting for both answers" in page  # the pick waits for both

        for guidance in (a, b):
            guidance_request_run(guidance_id=guidance.pk)
        page = client.get(f"/patients/{her.pk}/ab/{comparison.pk}/").content.decode()
        assert "Save my pick" in page
        assert "tiny-target" not in page  # still blinded: no endpoint, no sources list
        page = client.post(
            f"/patients/{her.pk}/ab/{comparison.pk}/pick/", {"choice": "a", "comment": "clearer"}
        ).content.decode()
        assert f"A</strong> was <strong>{comparison.variant_a}" in page
        assert "Rate this guidance" in page
        judgement = ABJudgement.objects.get()
        assert judgement.preferred_variant == comparison.variant_a
        assert judgement.rater == clinician

    def test_a_refinement_comparison_needs_a_promoted_policy(self, her, tiny_policy, clinician):
        with pytest.raises(RatingError, match="not available"):
            ab_comparison_create(patient=her, question="What now?", kind="refinement", user=clinician)
        with pytest.raises(RatingError, match="Unknown"):
            ab_comparison_create(patient=her, question="What now?", kind="horoscope", user=clinician)

    def test_the_summary_gives_win_rates_and_agreement_between_raters(
        self, client_for, clinician, curator, her, tiny_policy, organisation
    ):
        colleague = make_member("dr-north-2", organisation, pm.Role.CLINICIAN)
        comparisons = [
            ab_comparison_create(patient=her, question=f"Question {n}?", kind="retrieval", at=AT, user=clinician)
            for n in range(2)
        ]
        for comparison in comparisons:
            for guidance in (comparison.guidance_a, comparison.guidance_b):
                guidance_request_run(guidance_id=guidance.pk)
            comparison.refresh_from_db()
            with_sources = "a" if comparison.variant_a == "with guidance sources" else "b"
            for rater in (clinician, colleague):
                ab_judge(comparison=comparison, rater=rater, choice=with_sources)
        ab_judge(comparison=comparisons[0], rater=curator, choice="tie")
        row = next(r for r in ab_summary(organisation=organisation) if r["kind"] == "retrieval")
        assert row["judgements"] == 5
        assert row["comparisons"] == 2
        assert row["double_rated"] == 2
        assert row["win_rates"] == {"with guidance sources": 0.8, "without guidance sources": 0.0, "tie": 0.2}
        assert row["agreement"] == 0.5  # pairs: (with, with), (with, tie), (with, tie); (with, with)
        page = client_for(clinician).get("/ab/").content.decode()
        assert "80%" in page
        assert "Fleiss" in page
        assert "No judgements yet" in page  # the other kinds are empty


class TestAgreementMaths:
    def test_fleiss_kappa_matches_the_textbook_example(self):
        # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa 0.210.
        table = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
        items = [[str(c) for c, count in enumerate(row) for _ in range(count)] for row in table]
        assert fleiss_kappa(items) == pytest.approx(0.210, abs=1e-3)

    def test_perfect_and_absent_agreement(self):
        assert fleiss_kappa([["x", "x"], ["y", "y"]]) == 1.0
        assert fleiss_kappa([["x"]]) is None
        assert pairwise_agreement([]) is None
        assert pairwise_agreement([["x", "x", "y"]]) == pytest.approx(1 / 3, abs=1e-3)
        assert win_rates(["p", "", "p", "q"], ["p", "q"]) == {"p": 0.5, "q": 0.25, "tie": 0.25}


class TestPatientPage:
    def test_it_charts_her_pregnancy_and_shows_her_peers_or_says_there_are_none(
        self, client_for, clinician, her, tiny_policy
    ):
        page = client_for(clinician).get(f"/patients/{her.pk}/").content.decode()
        assert "Blood pressure over gestational age" in page
        assert "<svg" in page
        assert "gestational week" in page
        assert "No peer model has been trained" in page
        assert 'data-question="' in page
        assert "Ctrl+Enter" in page
        assert "Blinded A/B" in page


class TestJobs:
    def test_the_jobs_page_follows_long_jobs_and_shows_why_one_failed(
        self, client_for, clinician, organisation, other_organisation
    ):
        PeerModel.objects.create(
            organisation=organisation, version=1, status=pm.JobStatus.RUNNING, progress=40, message="Training SVD"
        )
        PeerModel.objects.create(
            organisation=organisation,
            version=2,
            status=pm.JobStatus.FAILED,
            message="Training failed: Only 3 care ratings",
        )
        PeerModel.objects.create(
            organisation=other_organisation, version=1, status=pm.JobStatus.RUNNING, message="theirs"
        )
        page = client_for(clinician).get("/jobs/").content.decode()
        assert 'aria-valuenow="40"' in page
        assert "Training SVD" in page
        assert "Only 3 care ratings" in page
        assert "theirs" not in page
        assert 'hx-trigger="every 2s"' in page


class TestAccess:
    def test_other_organisations_and_partners_cannot_reach_any_workspace_url(
        self, client_for, clinician, outsider, partner, her, tiny_policy
    ):
        guidance = done_guidance(her)
        comparison = ab_comparison_create(patient=her, question="What now?", kind="retrieval", at=AT, user=clinician)
        urls_get = [
            f"/patients/{her.pk}/guidance/{guidance.pk}/",
            f"/patients/{her.pk}/guidance/{guidance.pk}/prompt/",
            f"/patients/{her.pk}/ab/{comparison.pk}/",
        ]
        urls_post = [
            f"/patients/{her.pk}/guidance/",
            f"/patients/{her.pk}/guidance/{guidance.pk}/rate/",
            f"/patients/{her.pk}/ab/",
            f"/patients/{her.pk}/ab/{comparison.pk}/pick/",
        ]
        for user, status in ((outsider, 404), (partner, 403)):
            client = client_for(user)
            assert all(client.get(url).status_code == status for url in urls_get)
            assert all(
                client.post(url, {"question": "x", **SCORES, "choice": "a", "kind": "retrieval"}).status_code == status
                for url in urls_post
            )
        assert not ClinicianRating.objects.exists()
        assert not ABJudgement.objects.exists()
        assert ABComparison.objects.count() == 1
        assert GuidanceRequest.objects.count() == 3


class TestSweep:
    def test_jobs_stuck_past_their_limit_fail_with_a_reason_and_recent_ones_are_left(
        self, her, tiny_policy, organisation
    ):
        from datetime import timedelta

        from django.utils import timezone

        from prompting.sweep import sweep_stuck_jobs

        stuck = guidance_request_create(patient=her, question="What now?", at=AT)
        fresh = guidance_request_create(patient=her, question="And now?", at=AT)
        done = done_guidance(her)
        GuidanceRequest.objects.filter(pk__in=[stuck.pk, done.pk]).update(
            created_at=timezone.now() - timedelta(hours=2)
        )
        old_model = PeerModel.objects.create(organisation=organisation, version=1, status=pm.JobStatus.RUNNING)
        PeerModel.objects.filter(pk=old_model.pk).update(created_at=timezone.now() - timedelta(hours=3))
        swept = sweep_stuck_jobs()
        assert swept["guidance"] == 1
        assert swept["peer_model"] == 1
        stuck.refresh_from_db(), fresh.refresh_from_db(), done.refresh_from_db(), old_model.refresh_from_db()
        assert stuck.status == "failed"
        assert "sweep" in stuck.error
        assert fresh.status == "queued"
        assert done.status == "done"
        assert old_model.status == "failed"
        assert "worker was probably lost" in old_model.message
