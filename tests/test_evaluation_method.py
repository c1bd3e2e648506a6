"""The evaluation method in plain Python: the hold-out rule, prompt variants, metrics, bootstrap
intervals, the rubric judge, rank agreement, peers of unseen patients and the interval chart."""

import json

import numpy as np
import pytest

from pmlm_site.charts import interval_chart
from prompting.pmlm import peers as peer_method
from prompting.pmlm.agreement import judge_clinician_agreement, spearman
from prompting.pmlm.evaluation import (
    Scored,
    flags_mentioned,
    guidance_metrics,
    summarise_scores,
    variant_sections,
    variant_text,
)
from prompting.pmlm.holdout import split_patients
from prompting.pmlm.judge import GENERAL_CRITERIA, Criterion, judge_guidance, parse_verdict, rubric, rubric_score

SECTIONS = [
    {"source": "instructions", "title": "Instructions", "text": "Answer for the clinician."},
    {"source": "self", "title": "Her record", "text": "- Risk flags: Hypertension in pregnancy."},
    {"source": "peer", "title": "Patients like her", "text": "- 12 similar patients."},
    {"source": "knowledge", "title": "Guidance sources", "text": "[1] WHO: measure blood pressure."},
    {"source": "question", "title": "Question", "text": "What now?"},
]
HYPERTENSION = {"code": "hypertension", "label": "Hypertension in pregnancy", "evidence": "BP 152/98"}
ANAEMIA = {"code": "anaemia", "label": "Anaemia", "evidence": "Hb 95 g/L"}


def unit_embed(texts):
    """A deterministic bag-of-letters embedding: similar words, similar vectors."""
    vectors = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], dtype=float) + 1e-9
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class TestTheHoldOutRule:
    def test_both_sides_are_non_empty_and_disjoint_and_the_split_is_repeatable(self):
        learning, held = split_patients(range(40), share=0.25, seed=7)
        assert learning
        assert held
        assert not set(learning) & set(held)
        assert set(learning) | set(held) == set(range(40))
        assert (learning, held) == split_patients(reversed(range(40)), share=0.25, seed=7)
        assert 4 <= len(held) <= 18

    def test_a_held_out_patient_stays_held_out_when_the_cohort_grows(self):
        _, held = split_patients(range(100), share=0.25, seed=7)
        _, held_later = split_patients(range(1000), share=0.25, seed=7)
        assert set(held) <= set(held_later)

    def test_another_seed_holds_out_other_patients(self):
        assert split_patients(range(100), share=0.25, seed=7)[1] != split_patients(range(100), share=0.25, seed=8)[1]

    def test_two_patients_give_one_each_side_and_a_bad_share_is_refused(self):
        learning, held = split_patients([1, 2], share=0.01, seed=7)
        assert len(learning) == 1
        assert len(held) == 1
        with pytest.raises(ValueError):
            split_patients([1, 2], share=1.5, seed=7)


class TestPromptVariants:
    def test_general_is_the_question_alone_with_its_guidance_sources(self):
        assert [s["source"] for s in variant_sections(SECTIONS, "general")] == ["knowledge", "question"]
        assert "Her record" not in variant_text(SECTIONS, "general")
        assert "What now?" in variant_text(SECTIONS, "general")

    def test_self_and_peer_keep_only_their_own_context(self):
        assert [s["source"] for s in variant_sections(SECTIONS, "self")] == [
            "instructions",
            "self",
            "knowledge",
            "question",
        ]
        assert [s["source"] for s in variant_sections(SECTIONS, "peer")] == [
            "instructions",
            "peer",
            "knowledge",
            "question",
        ]

    def test_pmlm_is_the_whole_prompt_and_unknown_variants_are_refused(self):
        assert variant_sections(SECTIONS, "pmlm") == SECTIONS
        with pytest.raises(ValueError, match="Unknown prompt variant"):
            variant_sections(SECTIONS, "pmlm_rl")


class TestGuidanceMetrics:
    def test_a_flag_counts_as_mentioned_by_the_words_a_clinician_would_use(self):
        share, mentioned, missed = flags_mentioned("Check her blood pressure twice a week.", [HYPERTENSION, ANAEMIA])
        assert share == 0.5
        assert mentioned == ["Hypertension in pregnancy"]
        assert missed == ["Anaemia"]
        assert flags_mentioned("Anything.", []) == (None, [], [])

    def test_the_figures_of_one_answer(self):
        metrics = guidance_metrics(
            "Start home blood pressure monitoring and check urine protein.",
            "Start home blood pressure monitoring, check urine protein, review in a week.",
            [HYPERTENSION],
            1,
            unit_embed,
        )
        assert metrics["key_item_coverage"] == pytest.approx(2 / 3, abs=1e-3)
        assert metrics["flag_mention_rate"] == 1.0
        assert metrics["safety_warning_rate"] == 1.0
        assert metrics["words"] == 9
        assert 0 < metrics["closeness"] <= 1
        assert metrics["judge"] is None

    def test_an_empty_answer_scores_nothing(self):
        metrics = guidance_metrics("", "Start aspirin.", [HYPERTENSION], 0, unit_embed)
        assert metrics["closeness"] == 0
        assert metrics["flag_mention_rate"] == 0
        assert metrics["words"] == 0


def scored(patient, example, variant, closeness, rag=True):
    return Scored(
        example=example,
        patient=patient,
        variant=variant,
        rag=rag,
        endpoint="local",
        metrics={"closeness": closeness, "judge": None},
    )


class TestSummaries:
    def test_rows_come_in_variant_order_with_a_mean_inside_its_interval(self):
        items = [
            scored(f"p{n}", f"e{n}", v, 0.2 + 0.01 * n + (0.1 if v == "pmlm" else 0))
            for n in range(8)
            for v in ("pmlm", "general")
        ]
        rows = summarise_scores(items, resamples=500)
        assert [r["variant"] for r in rows] == ["general", "pmlm"]
        for row in rows:
            low, high = row["ci"]["closeness"]
            assert low <= row["closeness"] <= high
            assert row["n"] == 8
            assert row["patients"] == 8
        assert rows[0]["judge"] is None
        assert rows[0]["ci"]["judge"] is None  # nothing judged: no figure, no interval

    def test_the_difference_from_general_is_paired_by_encounter(self):
        items = [scored(f"p{n}", f"e{n}", "general", 0.1 * n) for n in range(6)]
        items += [scored(f"p{n}", f"e{n}", "pmlm", 0.1 * n + 0.05) for n in range(6)]
        pmlm = summarise_scores(items, resamples=300)[1]
        assert pmlm["closeness_vs_general"] == pytest.approx(0.05)
        assert pmlm["ci"]["closeness_vs_general"] == pytest.approx(
            [0.05, 0.05]
        )  # the same gain for every woman: no spread

    def test_the_bootstrap_resamples_patients_not_encounters(self):
        # One woman with many encounters must not narrow the interval as if each were a new patient.
        items = [scored("p0", f"e{n}", "pmlm", 0.9) for n in range(20)] + [scored("p1", "f0", "pmlm", 0.1)]
        row = summarise_scores(items, resamples=1000)[0]
        assert row["patients"] == 2
        assert row["ci"]["closeness"][0] <= 0.1 + 1e-9
        assert row["ci"]["closeness"][1] >= 0.9 - 1e-9

    def test_retrieval_on_comes_before_off(self):
        items = [scored("p0", "e0", "pmlm", 0.3, rag=False), scored("p0", "e0", "pmlm", 0.4, rag=True)]
        assert [r["rag"] for r in summarise_scores(items, resamples=100)] == [True, False]


class TestTheRubricJudge:
    def test_the_rubric_asks_for_the_physicians_items_and_her_flags_then_general_criteria(self):
        criteria = rubric("Start home blood pressure monitoring and low-dose aspirin.", [HYPERTENSION])
        texts = [c.text for c in criteria]
        assert "Recommends low-dose aspirin." in texts
        assert "Addresses her risk flag: Hypertension in pregnancy." in texts
        assert criteria[-len(GENERAL_CRITERIA) :] == list(GENERAL_CRITERIA)
        assert any(c.points < 0 for c in criteria)

    def test_verdicts_are_read_from_json_or_a_plain_yes_or_no(self):
        assert parse_verdict('{"explanation": "It does.", "criteria_met": true}') is True
        assert parse_verdict('Sure: {"criteria_met": false, "explanation": "no"}') is False
        assert parse_verdict("criteria_met: true") is True
        assert parse_verdict("No, it does not.") is False
        assert parse_verdict("The answer discusses blood pressure.") is None

    def test_the_score_is_points_met_over_positive_points_clipped(self):
        criteria = [Criterion("a", 5, "accuracy"), Criterion("b", 5, "accuracy"), Criterion("c", -8, "accuracy")]
        assert rubric_score(criteria, [True, False, False]) == 0.5
        assert rubric_score(criteria, [True, False, True]) == 0.0  # clipped at 0
        assert rubric_score(criteria, [None, None, True]) is None  # nothing positive judged
        assert rubric_score(criteria, [True, None, False]) == 1.0  # unreadable verdicts do not count

    def test_the_judge_sees_the_question_the_answer_and_one_criterion_at_a_time(self):
        asked = []

        def ask(messages):
            asked.append(messages[-1]["content"])
            return json.dumps(
                {"explanation": "x", "criteria_met": "aspirin" in messages[-1]["content"].split("Rubric item")[1]}
            )

        result = judge_guidance("What now?", "Give aspirin.", rubric("Low-dose aspirin.", []), ask)
        assert len(asked) == 1 + len(GENERAL_CRITERIA)
        assert all("Give aspirin." in a and "What now?" in a for a in asked)
        assert result["score"] == 0.5
        assert result["unreadable"] == 0  # aspirin (5) of 10 positive points and result["criteria"][0]["met"] is True


class TestAgreement:
    def test_spearman_on_ranks_with_ties(self):
        assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
        assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
        assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.949, abs=0.001)
        assert spearman([1, 2], [1, 2]) is None
        assert spearman([1, 1, 1], [1, 2, 3]) is None

    def test_judge_and_clinicians_agree_on_acceptable_answers(self):
        result = judge_clinician_agreement([(0.9, 4.6), (0.2, 1.8), (0.7, 3.4), (0.4, 3.8)])
        assert result["n"] == 4
        assert result["agreement"] == 0.75
        assert result["spearman"] == 0.8
        assert judge_clinician_agreement([]) == {"n": 0, "spearman": None, "agreement": None, "kappa": None}


class TestPeersOfUnseenPatients:
    def test_neighbours_come_from_the_learning_patients_and_predictions_skip_what_she_tried(self):
        features = {key: np.array([30.0 + key, key % 2, 20.0, 1.0]) for key in range(10)}
        rated = {key: {"walking": 5.0, "yoga": 4.0 if key % 2 else 2.0} for key in range(10)}
        profiles = peer_method.unseen_profiles(
            features, rated, {"new": np.array([33.0, 1, 20.0, 1.0])}, {"new": {"walking": 4.0}}, k=3
        )
        profile = profiles["new"]
        assert profile.basis == "features"
        assert len(profile.neighbours) == 3
        assert {key for key, _ in profile.neighbours} <= set(features)
        assert profile.neighbours[0][0] == 3  # her twin on every feature
        assert [item for item, _ in profile.predicted] == ["yoga"]  # she already walks


class TestTheIntervalChart:
    def test_it_draws_whiskers_and_states_every_figure(self):
        svg = interval_chart(
            ["general", "pmlm"],
            [("with sources", [(0.2, 0.15, 0.25), (0.3, 0.25, 0.36)]), ("without sources", [None, (0.28, 0.2, 0.33)])],
            title="Closeness",
            y_label="closeness",
        )
        assert svg.count("<circle") == 3
        assert "pmlm 0.3 (95% CI 0.25 to 0.36)" in svg
        assert "<desc" in svg
        assert interval_chart([], [], title="x", y_label="y") == ""
