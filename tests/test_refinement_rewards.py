"""The refinement rewards and the guard every refined prompt passes: plain Python, milliseconds."""

import numpy as np
import pytest

from prompting.pmlm.composer import render
from prompting.pmlm.edits import EDIT_TITLE, EDIT_TOKEN_ALLOWANCE, MENU, SENTENCES, edited_sections, edited_text
from prompting.pmlm.refine import PROBLEM_LABELS, Problem, check_refined, record_facts
from prompting.pmlm.rewards import (
    GuidanceScore,
    Reference,
    RewardWeights,
    closeness,
    key_item_match,
    reward,
    rouge_l,
    score_guidance,
)

RECOMMENDATION = (
    "BP 150/95 mmHg is raised: repeat within a week, start home blood pressure monitoring and check urine "
    "protein. Continue daily iron and folic acid."
)
SECTIONS = [
    {"source": "instructions", "title": "Instructions", "text": "You are an assistant. Answer for the clinician."},
    {
        "source": "self",
        "title": "Her record",
        "text": "- Age 31; G2 P1; pregnant, 31 weeks (from the gestational age).\n"
        "- Risk flags: Hypertension in pregnancy — BP 150/95 mmHg (3 days ago).\n"
        "- Latest results: Haemoglobin 11.8 g/dL (3 days ago).",
    },
    {"source": "peer", "title": "Patients like her", "text": "- 12 similar patients, mean similarity 0.81."},
    {
        "source": "knowledge",
        "title": "Guidance sources",
        "text": "[1] Offer calcium 1.5–2 g daily where intake is low.",
    },
    {"source": "question", "title": "Question", "text": "What do you recommend at this visit?"},
]
INITIAL = render(SECTIONS)
FLAGS = ["Hypertension in pregnancy"]
# A refined prompt as the menu makes it: her risk flags restated by name, after the question.
RESTATES = next(e for e in MENU if e.restate_flags)
MONITORING = next(e for e in MENU if e.sentences == ("monitoring",))
EDITED = edited_text(SECTIONS, RESTATES, FLAGS)


def words(text):
    return len(text.split())


def check(refined=EDITED, *, identifiers=(), budget=1200, flags=FLAGS):
    return check_refined(
        initial_text=INITIAL,
        initial_sections=SECTIONS,
        risk_flag_labels=flags,
        refined=refined,
        identifiers=list(identifiers),
        count_tokens=words,
        token_budget=budget,
    )


def bag_of_words_embed(texts):
    vocabulary = sorted({w for t in texts for w in t.lower().split()})
    vectors = np.array([[t.lower().split().count(w) for w in vocabulary] for t in texts], dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


class TestTheRefinedPrompt:
    def test_an_edit_keeps_her_record_peers_sources_and_instructions_and_adds_its_sentences_after_the_question(self):
        sections = edited_sections(SECTIONS, MONITORING, FLAGS)
        assert [s["source"] for s in sections] == [
            "instructions",
            "self",
            "peer",
            "knowledge",
            "question",
            "instructions",
        ]
        assert [
            {k: v for k, v in s.items() if k != "edit"} for s in sections[:5]
        ] == SECTIONS  # marked with the edit, else as they were
        assert sections[5] == {
            "source": "instructions",
            "title": EDIT_TITLE,
            "refined": True,
            "edit": MONITORING.code,
            "text": f"- {SENTENCES['monitoring']}",
        }

    def test_facts_are_the_first_two_lines_of_her_record(self):
        facts = record_facts(SECTIONS)
        assert len(facts) == 2
        assert facts[0].startswith("- Age 31")
        assert facts[1].startswith("- Risk flags: Hypertension in pregnancy")

    def test_every_problem_has_a_label_for_curators(self):
        assert Problem("over_budget", "x").as_dict() == {
            "kind": "over_budget",
            "detail": "x",
            "label": PROBLEM_LABELS["over_budget"],
        }
        assert set(PROBLEM_LABELS) <= set(RewardWeights().as_dict()) | {"policy_error"}


class TestTheGuard:
    def test_an_edit_of_the_menu_passes(self):
        assert check() == []

    def test_a_refined_prompt_that_drops_a_risk_flag_is_refused(self):
        without_flag = EDITED.replace("Hypertension in pregnancy", "raised blood pressure")
        problems = check(without_flag)
        assert Problem("dropped_flag", "Hypertension in pregnancy") in problems
        assert any(p.kind == "dropped_fact" and "Risk flags" in p.detail for p in problems)

    def test_a_dropped_never_cut_line_of_her_record_is_a_dropped_fact(self):
        refined = EDITED.replace("- Age 31; G2 P1; pregnant, 31 weeks (from the gestational age).\n", "")
        assert [p.kind for p in check(refined)] == ["dropped_fact"]
        # Her latest results may be cut (the composer cuts them too): not a fact every prompt carries.
        assert check(EDITED.replace("- Latest results: Haemoglobin 11.8 g/dL (3 days ago).", "")) == []

    def test_a_refined_prompt_that_names_her_is_refused(self):
        problems = check(EDITED + "\n- Call Maria Lopez on Monday.", identifiers=["Maria Lopez", "Maria"])
        assert [p.kind for p in problems] == ["identifier"]

    def test_a_refined_prompt_holding_a_date_or_contact_is_refused(self):
        assert any(p.kind == "identifier" for p in check(EDITED + "\n- Review on 2026-03-14."))
        assert any(p.kind == "identifier" for p in check(EDITED + "\n- Call 555-0100-22."))

    def test_a_number_found_nowhere_in_the_context_is_an_invented_number(self):
        problems = check(EDITED + "\n- Start labetalol 200 mg twice daily.")
        assert Problem("invented_number", "200") in problems
        assert (
            check(EDITED + "\n- Her BP was 150/95; calcium 1.5–2 g if intake is low.") == []
        )  # numbers from the context

    def test_a_finding_her_context_does_not_mention_is_an_invented_finding(self):
        problems = check(EDITED + "\n- Her pre-eclampsia and gestational diabetes need urgent review.")
        assert {p.detail for p in problems if p.kind == "invented_finding"} == {"pre-eclampsia", "diabetes"}
        assert check(EDITED + "\n- Her hypertension needs review.") == []  # in her risk flags

    def test_a_refined_prompt_over_the_token_budget_and_what_an_edit_may_add_is_refused(self):
        budget = words(EDITED) - EDIT_TOKEN_ALLOWANCE
        assert [p.kind for p in check(budget=budget - 1)] == ["over_budget"]
        assert check(budget=budget) == []


class TestTheRewards:
    def test_rouge_l_rewards_shared_wording_in_order(self):
        assert rouge_l(RECOMMENDATION, RECOMMENDATION) == pytest.approx(1.0)
        assert rouge_l("start home blood pressure monitoring", RECOMMENDATION) > rouge_l(
            "monitoring pressure blood home", RECOMMENDATION
        )
        assert rouge_l("", RECOMMENDATION) == 0.0

    def test_key_item_coverage_is_the_share_of_the_physicians_items_the_guidance_names(self):
        match = key_item_match("Check urine protein and repeat within a week.", RECOMMENDATION)
        assert match.covered == ["repeat review within a week", "urine protein check"]
        assert "home blood pressure monitoring" in match.missed
        assert match.extra == []
        assert match.coverage == pytest.approx(len(match.covered) / (len(match.covered) + len(match.missed)))
        assert match.precision == 1.0  # everything it names, her physician named
        assert key_item_match("anything", "No specific advice.").coverage is None

    def test_key_item_precision_is_the_share_of_the_named_items_her_physician_named(self):
        match = key_item_match("Check urine protein, start aspirin and calcium.", RECOMMENDATION)
        assert match.covered == ["urine protein check"]
        assert match.extra == [
            "calcium supplementation",
            "low-dose aspirin",
        ]
        assert match.precision == pytest.approx(1 / 3)
        score = score_guidance(
            "Check urine protein, start aspirin and calcium.", Reference(RECOMMENDATION), bag_of_words_embed
        )
        assert score.precision == pytest.approx(1 / 3, abs=1e-4)
        assert score.extra == match.extra

    def test_guidance_closer_to_the_physician_scores_higher(self):
        reference = Reference(RECOMMENDATION)
        close = score_guidance(
            "Repeat BP within a week, start home blood pressure monitoring, check urine protein, "
            "continue iron and folic acid.",
            reference,
            bag_of_words_embed,
        )
        far = score_guidance("Eat a balanced diet and sleep well.", reference, bag_of_words_embed)
        assert reward(close) > reward(far)
        assert 0.0 <= closeness(far) < closeness(close) <= 1.0

    def test_an_empty_answer_scores_nothing(self):
        score = score_guidance("  ", Reference(RECOMMENDATION), bag_of_words_embed)
        assert (score.similarity, score.rouge_l, score.coverage, score.key_item_f1) == (0.0, 0.0, 0.0, 0.0)
        assert closeness(score) == 0.0

    def test_every_problem_costs_its_penalty(self):
        score = GuidanceScore(similarity=0.8, rouge_l=0.4, coverage=0.5, precision=1.0)
        weights = RewardWeights()
        problems = [Problem("dropped_flag", "x"), Problem("invented_number", "200"), Problem("over_budget", "")]
        assert reward(score, problems) == pytest.approx(
            closeness(score) - weights.dropped_flag - weights.invented_number - weights.over_budget, abs=1e-4
        )

    def test_an_answer_that_is_no_edit_of_the_menu_never_reaches_the_llm_and_scores_minus_its_penalty(self):
        assert reward(None, [Problem("malformed", "not an edit code")]) == -RewardWeights().malformed

    def test_closeness_weighs_the_key_item_f1_only_when_either_text_names_an_item(self):
        weights = RewardWeights()
        with_items = GuidanceScore(similarity=0.6, rouge_l=0.2, coverage=0.5, precision=0.5)
        assert closeness(with_items) == pytest.approx(
            (weights.similarity * 0.6 + weights.rouge_l * 0.2 + weights.key_items * 0.5)
            / (weights.similarity + weights.rouge_l + weights.key_items)
        )
        without = GuidanceScore(similarity=0.6, rouge_l=0.2, coverage=None, precision=None)
        assert closeness(without) == pytest.approx(
            (weights.similarity * 0.6 + weights.rouge_l * 0.2) / (weights.similarity + weights.rouge_l)
        )

    def test_clinician_ratings_pull_towards_endorsed_guidance_and_away_from_rejected(self):
        endorsed = "Repeat blood pressure within a week and start home monitoring."
        rejected = "Eat a balanced diet and sleep well."
        reference = Reference(RECOMMENDATION, endorsed=(endorsed,), rejected=(rejected,))
        like_endorsed = score_guidance(endorsed, reference, bag_of_words_embed)
        like_rejected = score_guidance(rejected, reference, bag_of_words_embed)
        assert like_endorsed.clinician > 0 > like_rejected.clinician
        without = score_guidance(rejected, Reference(RECOMMENDATION), bag_of_words_embed)
        assert without.clinician is None
        assert closeness(like_rejected) < closeness(without)
