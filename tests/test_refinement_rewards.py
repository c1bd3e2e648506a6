"""The refinement rewards and the guard every refined prompt passes: plain Python, milliseconds."""

import numpy as np
import pytest

from prompting.pmlm.composer import render
from prompting.pmlm.refine import (
    REFINED_TITLE, Problem, check_refined, clean_instructions, malformed, policy_messages, record_facts, refined_sections,
    refined_text,
)
from prompting.pmlm.rewards import (
    GuidanceScore, Reference, RewardWeights, closeness, key_item_coverage, reward, rouge_l, score_guidance,
)

RECOMMENDATION = ("BP 150/95 mmHg is raised: repeat within a week, start home blood pressure monitoring and check urine "
                  "protein. Continue daily iron and folic acid.")
SECTIONS = [
    {"source": "instructions", "title": "Instructions", "text": "You are an assistant. Answer for the clinician."},
    {"source": "self", "title": "Her record", "text": "- Age 31; G2 P1; pregnant, 31 weeks (from the gestational age).\n"
                                                    "- Risk flags: Hypertension in pregnancy — BP 150/95 mmHg (3 days ago).\n"
                                                    "- Latest results: Haemoglobin 11.8 g/dL (3 days ago)."},
    {"source": "peer", "title": "Patients like her", "text": "- 12 similar patients, mean similarity 0.81."},
    {"source": "knowledge", "title": "Guidance sources", "text": "[1] Offer calcium 1.5–2 g daily where intake is low."},
    {"source": "question", "title": "Question", "text": "What do you recommend at this visit?"},
]
INITIAL = render(SECTIONS)
FLAGS = ["Hypertension in pregnancy"]
GOOD = ("- Address her hypertension in pregnancy first: repeat BP within a week.\n- Advise home blood pressure monitoring "
        "and a urine protein check.\n- Escalate with headache or visual disturbance.")


def words(text):
    return len(text.split())


def check(instructions, *, identifiers=(), budget=1200, refined=None, flags=FLAGS):
    return check_refined(initial_text=INITIAL, initial_sections=SECTIONS, risk_flag_labels=flags,
                         refined=refined if refined is not None else refined_text(SECTIONS, instructions),
                         instructions=instructions, identifiers=list(identifiers), count_tokens=words, token_budget=budget)


def bag_of_words_embed(texts):
    vocabulary = sorted({w for t in texts for w in t.lower().split()})
    vectors = np.array([[t.lower().split().count(w) for w in vocabulary] for t in texts], dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


class TestTheRefinedPrompt:
    def test_it_keeps_her_record_peers_and_sources_verbatim_and_puts_the_new_instructions_before_the_question(self):
        sections = refined_sections(SECTIONS, GOOD)
        assert [s["source"] for s in sections] == ["self", "peer", "knowledge", "instructions", "question"]
        assert sections[3] == {"source": "instructions", "title": REFINED_TITLE, "text": GOOD, "refined": True}
        text = refined_text(SECTIONS, GOOD)
        assert all(s["text"] in text for s in SECTIONS if s["source"] != "instructions")
        assert "You are an assistant" not in text

    def test_the_policy_reads_the_whole_initial_prompt(self):
        messages = policy_messages(INITIAL)
        assert messages[-1]["role"] == "user" and messages[-1]["content"].endswith(INITIAL)

    def test_headings_and_code_fences_are_stripped_from_the_policy_answer(self):
        assert clean_instructions("```\n### Plan\n- Repeat BP\n```") == "Plan\n- Repeat BP"

    def test_facts_are_the_lines_of_her_record(self):
        assert record_facts(SECTIONS)[1].startswith("- Risk flags: Hypertension in pregnancy")


class TestTheGuard:
    def test_a_faithful_refinement_passes(self):
        assert check(GOOD) == []

    def test_a_refined_prompt_that_drops_a_risk_flag_is_refused(self):
        without_flag = INITIAL.replace("Hypertension in pregnancy — BP 150/95 mmHg (3 days ago).", "")
        instructions = "- Repeat BP within a week.\n- Advise home blood pressure monitoring."
        problems = check(instructions, refined=without_flag + "\n" + instructions)
        assert Problem("dropped_flag", "Hypertension in pregnancy") in problems
        assert any(p.kind == "dropped_fact" and "Risk flags" in p.detail for p in problems)

    def test_a_dropped_line_of_her_record_is_a_dropped_fact(self):
        refined = refined_text(SECTIONS, GOOD).replace("- Latest results: Haemoglobin 11.8 g/dL (3 days ago).", "")
        assert [p.kind for p in check(GOOD, refined=refined)] == ["dropped_fact"]

    def test_instructions_that_name_her_are_refused(self):
        problems = check(GOOD + "\n- Call Maria Lopez on Monday.", identifiers=["Maria Lopez", "Maria"])
        assert Problem("identifier", "names the patient") in problems

    def test_instructions_holding_a_date_or_contact_are_refused(self):
        assert any(p.kind == "identifier" for p in check(GOOD + "\n- Review on 2026-03-14."))

    def test_a_number_found_nowhere_in_the_context_is_an_invented_number(self):
        problems = check(GOOD + "\n- Start labetalol 200 mg twice daily.")
        assert Problem("invented_number", "200") in problems
        assert check(GOOD + "\n- Her BP was 150/95; calcium 1.5–2 g if intake is low.") == []  # numbers from the context

    def test_a_finding_her_context_does_not_mention_is_an_invented_finding(self):
        problems = check(GOOD + "\n- Her pre-eclampsia and gestational diabetes need urgent review.")
        assert {p.detail for p in problems if p.kind == "invented_finding"} == {"pre-eclampsia", "diabetes"}
        assert check(GOOD + "\n- Her hypertension needs review.") == []  # in her risk flags

    def test_a_sentence_cut_off_by_the_token_limit_is_dropped(self):
        cut = "- Repeat BP within a week.\n- Advise home blood pressure monitoring and"
        assert clean_instructions(cut, truncated=True) == "- Repeat BP within a week."
        assert clean_instructions("Repeat BP within a week. Check urine protein and", truncated=True) == "Repeat BP within a week."
        assert clean_instructions("Repeat BP within a week", truncated=True) == "Repeat BP within a week"  # nothing to go back to
        assert clean_instructions(cut) == cut  # a finished answer may end its last bullet without a full stop

    def test_a_refined_prompt_over_the_token_budget_is_refused(self):
        tokens = words(refined_text(SECTIONS, GOOD))
        assert [p.kind for p in check(GOOD, budget=tokens - 1)] == ["over_budget"]
        assert check(GOOD, budget=tokens) == []

    @pytest.mark.parametrize("answer, reason", [
        ("", "empty or too short"),
        ("ok", "empty or too short"),
        ("x" * 1300, "longer than 1200 characters"),
        ("1234 5678 9012 3456 7890 ... !!! ???", "mostly not words"),
        ("monitor " * 40, "repeats itself"),
        ("- Repeat BP.\n- Repeat BP.\n- Repeat BP.\n- Check urine.", "repeats the same line"),
        ("She should see a specialist about her care. Check her BP. She should see a specialist about her care.",
         "repeats a sentence"),
    ])
    def test_malformed_answers_are_named(self, answer, reason):
        assert malformed(answer) == reason


class TestTheRewards:
    def test_rouge_l_rewards_shared_wording_in_order(self):
        assert rouge_l(RECOMMENDATION, RECOMMENDATION) == pytest.approx(1.0)
        assert rouge_l("start home blood pressure monitoring", RECOMMENDATION) > rouge_l("monitoring pressure blood home", RECOMMENDATION)
        assert rouge_l("", RECOMMENDATION) == 0.0

    def test_key_item_coverage_is_the_share_of_the_physicians_items_the_guidance_names(self):
        coverage, covered, missed = key_item_coverage("Check urine protein and repeat within a week.", RECOMMENDATION)
        assert covered == ["repeat review within a week", "urine protein check"]
        assert "home blood pressure monitoring" in missed
        assert coverage == pytest.approx(len(covered) / (len(covered) + len(missed)))
        assert key_item_coverage("anything", "No specific advice.")[0] is None

    def test_guidance_closer_to_the_physician_scores_higher(self):
        reference = Reference(RECOMMENDATION)
        close = score_guidance("Repeat BP within a week, start home blood pressure monitoring, check urine protein, "
                               "continue iron and folic acid.", reference, bag_of_words_embed)
        far = score_guidance("Eat a balanced diet and sleep well.", reference, bag_of_words_embed)
        assert reward(close) > reward(far)
        assert 0.0 <= closeness(far) < closeness(close) <= 1.0

    def test_every_problem_costs_its_penalty(self):
        score = GuidanceScore(similarity=0.8, rouge_l=0.4, coverage=0.5)
        weights = RewardWeights()
        problems = [Problem("dropped_flag", "x"), Problem("invented_number", "200"), Problem("over_budget", "")]
        assert reward(score, problems) == pytest.approx(
            closeness(score) - weights.dropped_flag - weights.invented_number - weights.over_budget, abs=1e-4)

    def test_malformed_output_never_reaches_the_llm_and_scores_minus_its_penalty(self):
        assert reward(None, [Problem("malformed", "empty")]) == -RewardWeights().malformed

    def test_clinician_ratings_pull_towards_endorsed_guidance_and_away_from_rejected(self):
        endorsed = "Repeat blood pressure within a week and start home monitoring."
        rejected = "Eat a balanced diet and sleep well."
        reference = Reference(RECOMMENDATION, endorsed=(endorsed,), rejected=(rejected,))
        like_endorsed = score_guidance(endorsed, reference, bag_of_words_embed)
        like_rejected = score_guidance(rejected, reference, bag_of_words_embed)
        assert like_endorsed.clinician > 0 > like_rejected.clinician
        without = score_guidance(rejected, Reference(RECOMMENDATION), bag_of_words_embed)
        assert without.clinician is None and closeness(like_rejected) < closeness(without)
