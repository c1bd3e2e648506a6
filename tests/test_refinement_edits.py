"""The edit menu the refinement policy chooses from, what the policy reads, the key-item reward,
patient-clustered differences, and the policy's training pieces: plain Python (the tiny model for
the policy itself), no database."""

import numpy as np
import pytest

from prompting.pmlm import codes
from prompting.pmlm.composer import PeerSummary, TemplateSpec, compose, render
from prompting.pmlm.deidentify import leaks, scrub
from prompting.pmlm.edits import (
    BY_CODE,
    EDIT_TITLE,
    EDIT_TOKEN_ALLOWANCE,
    IDENTITY,
    MENU,
    MENU_VERSION,
    PEER_ADVICE,
    SENTENCES,
    edit_named,
    edited_sections,
    edited_text,
    instruction_sentences,
)
from prompting.pmlm.evaluation import paired_difference
from prompting.pmlm.history import CareExperience, Diagnosis, Habit, PatientHistory, Reading
from prompting.pmlm.policy import is_checkpoint
from prompting.pmlm.refine import Problem, check_refined, record_facts
from prompting.pmlm.rewards import GuidanceScore, Reference, RewardWeights, closeness, key_item_match, score_guidance
from prompting.pmlm.situation import MAX_CHARS, kind_of_patient, pregnancy_words, situation_summary
from prompting.pmlm.training import (
    EditPolicy,
    Example,
    FixedEdit,
    RefinementConfig,
    Scorer,
    StepRecord,
    ValidationRow,
    best_fixed_edit,
    code_from_completion,
    deployed_choice,
    deployed_overall,
    deployment_by_sources,
    edit_gains,
    edit_prompt,
    edit_to_send,
    fixed_edit_choice,
    keeps_grounding,
    keeps_precision,
    policy_prompt,
    precision_by_edit,
    reward_table,
    split_by_patient,
    train_policy,
    validation_summary,
    what_the_policy_learned,
)

TEMPLATE = TemplateSpec(
    "t-1",
    "Advise the clinician.",
    {"self": "Her record", "peer": "Patients like her", "knowledge": "Guidance sources", "question": "Question"},
    10_000,
)
QUESTION = "What do you recommend at this visit?"
IDENTIFIERS = ["Ana Rivera", "Ana", "Rivera", "MRN-4471"]
CODES = [edit.code for edit in MENU]
# The menu changes between versions: tests name its edits by what they do, not by their codes.
ADDS = [e for e in MENU if (e.sentences or e.restate_flags) and not (e.drop or e.first_source_only)]
DROPS = [e for e in MENU if e.drop or e.first_source_only]
RESTATES = next(e for e in MENU if e.restate_flags)
DROPS_PEER_ADVICE = next(e for e in MENU if set(PEER_ADVICE) <= set(e.drop))
COUNSELS = next(e for e in MENU if "return_signs" in e.sentences)


def words(text):
    return len(text.split())


def bag_of_words_embed(texts):
    vocabulary = sorted({w for t in texts for w in t.lower().split()})
    vectors = np.array([[t.lower().split().count(w) for w in vocabulary] for t in texts], dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def bp(days, systolic, diastolic, encounter):
    return [
        Reading(codes.SYSTOLIC, days, systolic, "mm[Hg]", encounter=encounter),
        Reading(codes.DIASTOLIC, days, diastolic, "mm[Hg]", encounter=encounter),
    ]


def hypertensive_anaemic():
    """26 weeks pregnant, blood pressure rising and haemoglobin falling, a care item she is dropping:
    every line an edit may cut is there."""
    return PatientHistory(
        age_years=31,
        readings=[
            *bp(2, 150, 96, 1),
            *bp(30, 132, 84, 2),
            *bp(60, 118, 76, 3),
            Reading(codes.HAEMOGLOBIN, 5, 10.1, "g/dL"),
            Reading(codes.HAEMOGLOBIN, 40, 11.2, "g/dL"),
        ],
        diagnoses=[Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", 26 * 7)],
        habits=[
            Habit("tobacco", "Tobacco smoking", "never smoked", 30),
            Habit("diet", "Diet", "Ana Rivera says balanced, call 555 123 4567", 10),
        ],
        care=[
            CareExperience("walking", "Walking", 4, 60),
            CareExperience("walking", "Walking", 5, 20),
            CareExperience("yoga", "Prenatal yoga", 4, 60),
            CareExperience("yoga", "Prenatal yoga", 2, 30),
            CareExperience("yoga", "Prenatal yoga", 1, 10),
        ],
    )


PEERS = PeerSummary(
    "features",
    [0.8, 0.7],
    predicted=[("Home blood pressure monitoring", 4.6)],
    helped=[("Walking", 4.2, 3)],
    recommended=[("low-dose aspirin", 0.6)],
)
SOURCES = [
    "WHO: measure blood pressure at every antenatal visit.",
    "WHO: daily oral iron 30–60 mg and folic acid 400 µg.",
]


def composed(history=None, *, peer=PEERS, knowledge=SOURCES, question=QUESTION):
    return compose(
        history or hypertensive_anaemic(),
        question,
        TEMPLATE,
        peer=peer,
        knowledge=list(knowledge),
        count_tokens=words,
        identifiers=IDENTIFIERS,
    )


PROMPT = composed()
FLAGS = [f.label for f in PROMPT.risk_flags]
# Not pregnant, no risk flag, no peer model, no guidance sources: the other end of the menu's inputs.
PLAIN = composed(PatientHistory(age_years=29, readings=bp(3, 116, 72, 1)), peer=None, knowledge=())
PROMPTS = {"hypertensive and anaemic at 26 weeks": PROMPT, "not pregnant, no flag": PLAIN}
STAGE_CARE = next(e for e in MENU if e.sentences == ("stage_care",))
COMES_BACK = next(e for e in MENU if e.sentences == ("return_signs",))
LONGEST = max(ADDS, key=lambda e: len(edited_text(PROMPT.sections, e, FLAGS)))  # the edit that adds the most


def labels(prompt):
    return [f.label for f in prompt.risk_flags]


def without_provenance(sections):
    """Sections as the composer wrote them: an edit marks each section with its code."""
    return [{k: v for k, v in s.items() if k != "edit"} for s in sections]


def guard(prompt, refined, *, budget=10_000):
    return check_refined(
        initial_text=prompt.text,
        initial_sections=prompt.sections,
        risk_flag_labels=labels(prompt),
        refined=refined,
        identifiers=IDENTIFIERS,
        count_tokens=words,
        token_budget=budget,
    )


def example(
    key="visit 1, sources on", patient=1, prompt=PROMPT, recommendation="Repeat blood pressure within a week.", rag=True
):
    return Example(
        key=key,
        patient=patient,
        initial_text=prompt.text,
        sections=prompt.sections,
        risk_flag_labels=labels(prompt),
        reference=Reference(recommendation),
        token_budget=10_000,
        question=QUESTION,
        identifiers=IDENTIFIERS,
        rag=rag,
    )


def test_the_realistic_prompt_has_every_line_an_edit_may_cut():
    text = PROMPT.text
    for start in (
        "- Trend:",
        "- Care she kept up:",
        "- Care she dropped or is losing:",
        "- Lifestyle now:",
        "- Their physicians most often recommended",
        "- What helped similar patients",
        "- Predicted to help her",
        "[1] ",
        "[2] ",
    ):
        assert start in text, start
    assert len(FLAGS) == 2
    assert not leaks(text, IDENTIFIERS)


class TestTheMenu:
    def test_it_is_versioned_and_its_codes_run_from_e0_in_order(self):
        assert MENU_VERSION
        assert CODES == [f"E{n}" for n in range(len(MENU))]
        assert list(BY_CODE) == CODES
        assert all(edit.label for edit in MENU)
        assert len({edit.label for edit in MENU}) == len(MENU)
        assert ADDS
        assert DROPS  # edits that add sentences and edits that drop lines
        with pytest.raises(ValueError, match="Unknown prompt edit"):
            edit_named(f"E{len(MENU)}")

    @pytest.mark.parametrize("name", PROMPTS)
    @pytest.mark.parametrize("code", CODES)
    def test_every_edit_keeps_every_risk_flag_and_the_never_cut_lines_and_passes_the_guard(self, name, code):
        prompt = PROMPTS[name]
        text = edited_text(prompt.sections, edit_named(code), labels(prompt))
        assert all(label in text for label in labels(prompt))
        facts = record_facts(prompt.sections)
        assert len(facts) == 2
        assert all(fact in text for fact in facts)
        assert QUESTION in text
        assert guard(prompt, text) == []

    def test_an_edit_aimed_at_precision_asks_for_only_the_care_her_flags_and_results_call_for_and_no_routine_list(self):
        precise = next(e for e in MENU if "only_needed" in e.sentences)
        text = edited_text(PROMPT.sections, precise, FLAGS)
        assert SENTENCES["only_needed"] in text
        assert all(label in text for label in FLAGS)
        assert SENTENCES["stage_care"] not in text

    def test_an_edit_joins_the_flags_and_come_back_sentences_to_dropping_the_peers_lines(self):
        joined = next(e for e in MENU if e.drop and "return_signs" in e.sentences)
        text = edited_text(PROMPT.sections, joined, FLAGS)
        assert "Their physicians most often recommended" not in text
        assert "What helped similar patients" not in text
        assert SENTENCES["return_signs"] in text
        assert "Address each of her risk flags by name" in text

    def test_the_identity_edit_is_the_initial_prompt(self):
        edit = edit_named(IDENTITY)
        assert IDENTITY == "E0"
        assert edit.is_identity
        assert not any(e.is_identity for e in MENU[1:])
        assert without_provenance(edited_sections(PROMPT.sections, edit, FLAGS)) == PROMPT.sections
        assert edited_text(PROMPT.sections, edit, FLAGS) == PROMPT.text
        assert edit_prompt(example(), IDENTITY, count_tokens=words) == (PROMPT.text, PROMPT.sections, [])

    @pytest.mark.parametrize("code", [e.code for e in MENU if e.sentences or e.restate_flags])
    def test_what_an_edit_adds_comes_after_the_question(self, code):
        sections = edited_sections(PROMPT.sections, edit_named(code), FLAGS)
        assert [s["source"] for s in sections[-2:]] == ["question", "instructions"]
        added = sections[-1]
        assert added["title"] == EDIT_TITLE
        assert added["refined"] is True
        assert added["edit"] == code
        text = render(sections)
        assert text.index(QUESTION) < text.index(EDIT_TITLE)
        assert all(line.startswith("- ") for line in added["text"].splitlines())

    @pytest.mark.parametrize("code", [e.code for e in ADDS])
    def test_an_edit_that_only_adds_sentences_begins_with_the_whole_initial_prompt(self, code):
        """Prefix reuse: a local model or a caching server reads the initial prompt's state once for every such edit."""
        text = edited_text(PROMPT.sections, edit_named(code), FLAGS)
        assert text.startswith(PROMPT.text)

    def test_flags_by_name_restates_her_flags_beside_the_question_or_says_she_has_none(self):
        text = edited_text(PROMPT.sections, RESTATES, FLAGS)
        assert f"Her risk flags: {'; '.join(FLAGS)}." in text
        assert (
            instruction_sentences(RESTATES, FLAGS)[0] == f"Address each of her risk flags by name: {'; '.join(FLAGS)}."
        )
        plain = edited_text(PLAIN.sections, RESTATES, [])
        assert "Her risk flags: none." in plain
        assert SENTENCES["no_flags"] in plain

    def test_a_woman_whose_pregnancy_ended_is_never_given_antenatal_care_by_an_edit(self):
        from prompting.pmlm.history import ProcedureDone, Visit

        after = composed(
            PatientHistory(
                age_years=24,
                readings=bp(0, 118, 74, 1),
                visits=[Visit("424619006", "Prenatal visit", 0, True)],
                diagnoses=[Diagnosis("72892002", "Normal pregnancy", 28, 0)],
                procedures=[ProcedureDone("714812005", "Induced termination of pregnancy", 14)],
            ),
            peer=None,
            knowledge=(),
        )
        assert "not pregnant: her pregnancy ended 2 weeks ago (induced termination of pregnancy)" in after.text
        for code in CODES:
            text = edited_text(after.sections, edit_named(code), [])
            assert not any(word in text for word in ("fetal movements", "birth planning", "scans due")), code
            assert (
                check_refined(
                    initial_text=after.text,
                    initial_sections=after.sections,
                    risk_flag_labels=[],
                    refined=text,
                    identifiers=[],
                    count_tokens=words,
                    token_budget=10_000,
                )
                == []
            ), code
        assert "contraception" in edited_text(after.sections, STAGE_CARE, [])
        assert "fever" in edited_text(after.sections, COMES_BACK, [])
        never = edited_text(PLAIN.sections, STAGE_CARE, [])  # not pregnant, nothing ended: routine gynaecological care
        assert "fetal movements" not in never
        assert "cervical screening" in never
        assert "fetal movements" in edited_text(
            PROMPT.sections, STAGE_CARE, FLAGS
        )  # pregnant: antenatal care, as before

    def test_the_peers_line_edit_drops_their_advice_and_keeps_how_they_were_matched(self):
        text = edited_text(PROMPT.sections, DROPS_PEER_ADVICE, FLAGS)
        assert "Their physicians most often recommended" not in text
        assert "What helped similar patients" not in text
        assert "Predicted to help her" not in text
        assert "2 similar patients, mean similarity 0.75" in text
        assert (EDIT_TITLE in text) == bool(DROPS_PEER_ADVICE.sentences or DROPS_PEER_ADVICE.restate_flags)

    @pytest.mark.parametrize("code", [e.code for e in DROPS])
    def test_an_edit_drops_only_the_lines_it_names_and_keeps_every_other_line_of_her_prompt(self, code):
        edit = edit_named(code)
        text = edited_text(PROMPT.sections, edit, FLAGS)
        lines = [line for s in PROMPT.sections for line in s["text"].splitlines()]
        dropped = [line for line in lines if line not in text.splitlines()]
        assert dropped
        assert all(
            any(line.startswith(p) for p in edit.drop) or (edit.first_source_only and line.startswith("[2] "))
            for line in dropped
        )
        assert "- Latest results:" in text
        assert "[1] WHO: measure blood pressure" in text

    def test_an_edit_never_leaves_an_empty_section(self):
        only_advice = [
            {
                "source": "peer",
                "title": "Patients like her",
                "text": "- Their physicians most often recommended: rest.",
            },
            {"source": "question", "title": "Question", "text": QUESTION},
        ]
        sources = [s["source"] for s in edited_sections(only_advice, DROPS_PEER_ADVICE, [])]
        assert sources[0] == "question"
        assert "peer" not in sources


class TestTheGuardOnEdits:
    def test_counselling_sentences_from_the_library_are_not_invented_findings(self):
        assert "bleeding" in SENTENCES["return_signs"]
        assert "bleed" not in PROMPT.text.lower()
        assert guard(PROMPT, edited_text(PROMPT.sections, COUNSELS, FLAGS)) == []

    def test_a_finding_the_library_names_is_still_refused_when_stated_about_her_outside_a_library_sentence(self):
        """The library's "come back sooner if bleeding" asserts nothing about her; "she had bleeding" does."""
        invented = edited_text(PROMPT.sections, COUNSELS, FLAGS) + "\n- She had bleeding last week."
        assert Problem("invented_finding", "bleeding") in guard(PROMPT, invented)
        assert Problem("invented_finding", "bleeding") in guard(PROMPT, PROMPT.text + "\n- She had bleeding last week.")

    def test_a_number_outside_her_prompt_and_the_library_is_still_refused(self):
        text = edited_text(PROMPT.sections, ADDS[0], FLAGS) + "\n- Start labetalol 200 mg."
        assert Problem("invented_number", "200") in guard(PROMPT, text)

    def test_an_edit_over_the_token_budget_and_what_an_edit_may_add_is_refused(self):
        text = edited_text(PROMPT.sections, LONGEST, FLAGS)
        budget = words(text) - EDIT_TOKEN_ALLOWANCE
        assert [p.kind for p in guard(PROMPT, text, budget=budget - 1)] == ["over_budget"]
        assert guard(PROMPT, text, budget=budget) == []
        assert words(text) - words(PROMPT.text) <= EDIT_TOKEN_ALLOWANCE  # the longest edit fits in the allowance

    def test_the_guard_of_an_edit_is_applied_by_edit_prompt(self):
        tight = example()
        tight.token_budget = (
            words(PROMPT.text) + 3 - EDIT_TOKEN_ALLOWANCE
        )  # room for the initial prompt, none for sentences
        _, _, problems = edit_prompt(tight, LONGEST.code, count_tokens=words)
        assert [p.kind for p in problems] == ["over_budget"]
        assert edit_prompt(tight, IDENTITY, count_tokens=words)[2] == []


class TestWhatThePolicyReads:
    def test_the_situation_is_short_names_her_state_and_flags_and_holds_no_identifier(self):
        situation = situation_summary(PROMPT.sections, FLAGS, QUESTION)
        assert len(situation) <= MAX_CHARS < len(PROMPT.text)
        assert "State: pregnant, 26+0 weeks, trimester 2." in situation
        assert all(label in situation for label in FLAGS)
        assert "Peers' advice: given. Guidance sources: given." in situation
        assert situation.endswith(f"Question: {QUESTION}")
        assert "Blood pressure 150/96 mmHg" in situation
        assert "days ago" not in situation
        assert not leaks(situation, IDENTIFIERS)
        assert scrub(situation)[1] == 0

    def test_a_long_question_is_cut_to_the_limit(self):
        long = composed(question="Why? " * 400)
        situation = situation_summary(long.sections, FLAGS, "Why? " * 400)
        assert len(situation) == MAX_CHARS
        assert situation.endswith("…")

    def test_the_question_it_reads_is_the_de_identified_one_of_her_prompt(self):
        named = composed(question="What does Ana Rivera need at this visit?")
        situation = situation_summary(named.sections, FLAGS, "What does Ana Rivera need at this visit?")
        assert "need at this visit?" in situation
        assert not leaks(situation, IDENTIFIERS)

    def test_without_flags_peers_or_sources_it_says_so(self):
        situation = situation_summary(PLAIN.sections, [], QUESTION)
        assert "State: not pregnant." in situation
        assert "Risk flags: none." in situation
        assert "Peers' advice: none. Guidance sources: none." in situation

    def test_the_kinds_of_patient_are_her_stage_and_each_flag(self):
        assert kind_of_patient(PROMPT.sections, FLAGS) == ["trimester 2", *FLAGS]
        assert kind_of_patient(PLAIN.sections, []) == ["not pregnant", "no risk flag"]
        assert pregnancy_words([]) == "state unknown"


RECOMMENDATION = (
    "BP 150/95 mmHg is raised: repeat within a week, start home blood pressure monitoring and check urine protein."
)
EVERYTHING = (
    "Repeat within a week, home blood pressure monitoring, urine protein, aspirin, calcium, iron, folic acid, "
    "OGTT, diet, exercise, weight gain, quit smoking, alcohol, caffeine, dating scan, anatomy scan, fetal movements, "
    "birth plan, induction, recheck haemoglobin, headache."
)
JUST_HERS = "Repeat within a week, home blood pressure monitoring, urine protein."


class TestKeyItemPrecision:
    def test_precision_is_the_share_of_the_items_named_that_the_physician_named(self):
        match = key_item_match("Check urine protein and start aspirin.", RECOMMENDATION)
        assert match.covered == ["urine protein check"]
        assert match.extra == ["low-dose aspirin"]
        assert match.precision == pytest.approx(0.5)
        assert match.coverage == pytest.approx(1 / 3)
        assert key_item_match("Rest well.", RECOMMENDATION).precision is None  # names nothing
        assert key_item_match("Aspirin.", "No specific advice.").coverage is None

    def test_listing_every_key_item_scores_below_naming_just_the_physicians(self):
        reference = Reference(RECOMMENDATION)
        everything, hers = (score_guidance(text, reference, bag_of_words_embed) for text in (EVERYTHING, JUST_HERS))
        assert everything.coverage == hers.coverage == 1.0  # both cover her physician's items
        assert everything.precision < 0.2
        assert hers.precision == 1.0
        assert len(everything.extra) > 15
        assert everything.key_item_f1 < hers.key_item_f1 == pytest.approx(1.0)
        assert closeness(everything) < closeness(hers)

    def test_the_f1_is_none_when_neither_names_an_item_and_zero_when_only_one_does(self):
        assert GuidanceScore(0.5, 0.5, None, precision=None).key_item_f1 is None
        assert GuidanceScore(0.5, 0.5, 0.0, precision=None).key_item_f1 == 0.0
        assert GuidanceScore(0.5, 0.5, None, precision=1.0).key_item_f1 == 0.0
        assert GuidanceScore(0.5, 0.5, 0.5, precision=1.0).key_item_f1 == pytest.approx(2 / 3)

    def test_a_runs_stored_weights_load_without_names_this_version_dropped(self):
        weights = RewardWeights.from_dict({"coverage": 0.4, "similarity": 0.6, "malformed": 2.0})
        assert weights.similarity == 0.6
        assert weights.malformed == 2.0
        assert weights.key_items == RewardWeights().key_items
        assert RewardWeights.from_dict(None) == RewardWeights() == RewardWeights.from_dict(RewardWeights().as_dict())


class TestPairedDifferences:
    def test_two_encounters_of_one_woman_move_together(self):
        one_each = [(f"p{n}", 0.1 * n) for n in range(6)]
        clustered = [(patient, value) for patient, value in one_each for _ in range(5)]  # five encounters per woman
        per_encounter = [(f"{patient}-{k}", value) for patient, value in one_each for k in range(5)]
        a, b = paired_difference(clustered, resamples=2000), paired_difference(per_encounter, resamples=2000)
        assert a["difference"] == b["difference"] == pytest.approx(0.25)
        assert a["n"] == 30
        assert a["patients"] == 6
        assert b["patients"] == 30
        assert (a["ci"][1] - a["ci"][0]) > 1.5 * (b["ci"][1] - b["ci"][0])  # counted as six women, not thirty draws

    def test_a_constant_difference_has_an_interval_equal_to_it(self):
        result = paired_difference([(f"p{n}", 0.05) for n in range(5)])
        assert result["difference"] == pytest.approx(0.05)
        assert result["ci"] == pytest.approx([0.05, 0.05])

    def test_no_pairs_give_no_difference(self):
        assert paired_difference([]) == {"difference": None, "ci": None, "n": 0, "patients": 0}


TABLE = {
    "a": {"E0": 0.30, "E1": 0.40, "E2": 0.20},
    "b": {"E0": 0.30, "E1": 0.20, "E2": 0.50},
    "c": {"E0": 0.30, "E1": 0.45, "E2": 0.30},
}


class TestTheRewardTableAndTheBestFixedEdit:
    def test_the_best_fixed_edit_has_the_best_mean_reward_and_ties_go_to_the_earlier_edit(self):
        assert best_fixed_edit(TABLE) == ("E1", pytest.approx(0.35))
        assert best_fixed_edit({"a": {"E0": 0.3, "E1": 0.3}})[0] == "E0"

    def test_a_run_deploys_its_policy_only_when_the_policy_scored_at_least_the_best_fixed_edit_on_its_training_examples(
        self,
    ):
        train = [example(key=key, patient=n) for n, key in enumerate(TABLE)]
        per_patient = {"a": "E1", "b": "E2", "c": "E1"}  # the best edit for each: 0.45 on average
        assert deployed_choice(train, TABLE, per_patient, "E1") == {
            "deployed": "policy",
            "policy_train_mean_reward": pytest.approx(0.45),
            "best_fixed_train_mean_reward": pytest.approx(0.35),
        }
        stuck = {"a": "E2", "b": "E0", "c": "E2"}  # 0.2667: worse than E1 for everyone
        assert deployed_choice(train, TABLE, stuck, "E1")["deployed"] == "best_fixed"
        assert FixedEdit("E1").choose("any situation") == ("E1", {"E1": 1.0})

    def test_an_edit_that_lowered_key_item_precision_is_never_the_best_fixed_edit_and_the_initial_prompt_always_may_be(
        self,
    ):
        assert best_fixed_edit(TABLE, eligible=lambda code: code != "E1") == ("E2", pytest.approx(0.3333, abs=1e-4))
        assert best_fixed_edit(TABLE, eligible=lambda code: False) == ("E0", pytest.approx(0.30))

    def test_precision_is_kept_when_it_is_at_least_the_initial_prompts_or_either_names_nothing(self):
        assert keeps_precision(0.5, 0.5)
        assert keeps_precision(0.6, 0.5)
        assert not keeps_precision(0.49, 0.5)
        assert keeps_precision(None, 0.5)
        assert keeps_precision(0.2, None)

    def test_each_edits_precision_is_read_from_the_answers_it_got_and_a_policy_that_lowered_it_is_not_deployed(self):
        come_back = next(edit.code for edit in MENU if edit.sentences == ("return_signs",))

        def answer(text):  # the return-signs sentence makes the model list routine care the physician did not name
            if "come back sooner" in text:
                return "Repeat blood pressure within a week. Take iron, folic acid and aspirin; count fetal movements."
            return "Repeat blood pressure within a week."

        scorer = Scorer(answer=answer, embed=bag_of_words_embed, count_tokens=words)
        train = [example(key=f"visit {n}", patient=n) for n in range(3)]
        precision = precision_by_edit(train, scorer, codes=(IDENTITY, come_back))
        assert precision == {
            IDENTITY: 1.0,
            come_back: pytest.approx(0.2),
        }  # 1 of the 5 items it names is the physician's
        table = {e.key: {IDENTITY: 0.3, come_back: 0.5} for e in train}  # the reward alone would pick the edit
        decision = deployed_choice(train, table, {e.key: come_back for e in train}, IDENTITY, scorer)
        assert decision["deployed"] == "best_fixed"
        assert decision["policy_train_key_item_precision"] == pytest.approx(0.2)
        assert deployed_choice(train, table, {e.key: IDENTITY for e in train}, IDENTITY, scorer)["deployed"] == "policy"

    def test_each_guidance_sources_setting_gets_its_own_best_fixed_edit_under_its_own_precision_guardrail(self):
        come_back = COUNSELS.code
        no_sources = composed(knowledge=())

        def answer(text):  # without sources, the come-back sentence makes the model list care the physician did not
            if "come back sooner" in text and "Guidance sources" not in text:
                return "Repeat blood pressure within a week. Take iron, folic acid and aspirin; count fetal movements."
            return "Repeat blood pressure within a week."

        scorer = Scorer(answer=answer, embed=bag_of_words_embed, count_tokens=words)
        train = [example(key=f"visit {n}, sources on", patient=n) for n in range(3)]
        train += [example(key=f"visit {n}, sources off", patient=n, prompt=no_sources, rag=False) for n in range(3)]
        table = {e.key: {IDENTITY: 0.3, come_back: 0.5} for e in train}  # the reward alone picks the edit everywhere
        stays = {e.key: IDENTITY for e in train}  # a policy that learned to keep the prompt as it is

        per_setting = deployment_by_sources(train, table, stays, scorer)

        with_sources, without = per_setting["on"], per_setting["off"]
        assert with_sources["best_fixed"]["code"] == come_back
        assert with_sources["best_fixed"]["set_aside"] is None
        assert with_sources["deployed"] == "best_fixed"  # the policy scored 0.3 against 0.5
        assert without["best_fixed"]["code"] == IDENTITY
        assert without["best_fixed"]["set_aside"]["code"] == come_back
        assert without["best_fixed"]["set_aside"]["key_item_precision"] == pytest.approx(0.2)
        assert without["deployed"] == "policy"
        assert deployed_overall(per_setting) == "by_sources"

    def test_grounding_is_lost_only_when_the_paired_interval_of_extra_claims_lies_above_zero(self):
        assert not keeps_grounding({"difference": 0.5, "ci": [0.25, 0.75]})
        assert keeps_grounding({"difference": 0.19, "ci": [0.0, 0.38]})
        assert keeps_grounding({"difference": -0.1, "ci": [-0.2, 0.0]})
        assert keeps_grounding({"difference": None, "ci": None})
        assert keeps_grounding(None)

    def test_a_claim_in_a_few_of_many_answers_does_not_set_an_edit_aside_on_its_own(self):
        come_back = COUNSELS.code
        train = [example(key=f"visit {n}", patient=n) for n in range(16)]
        slips = {train[3].key, train[11].key}

        def answer(text):  # two of sixteen answers give her a blood pressure her record never had
            return "Repeat blood pressure within a week."

        scorer = Scorer(answer=answer, embed=bag_of_words_embed, count_tokens=words)
        for e in train:
            scorer.outcome(e, IDENTITY)
            edited = scorer.outcome(e, come_back)
            edited.unsupported_claims = 1 if e.key in slips else 0
        table = {e.key: {IDENTITY: 0.3, come_back: 0.5} for e in train}
        choice = fixed_edit_choice(train, table, scorer)
        assert choice["code"] == come_back
        assert choice["edit_unsupported_claims"][come_back] == 0.125
        assert choice["initial_unsupported_claims"] == 0.0

    def test_an_edit_whose_answers_invent_her_findings_is_set_aside_however_close_they_come_to_the_physician(self):
        come_back = COUNSELS.code

        def answer(text):  # the come-back sentence makes the model give her a blood pressure her record never had
            if "come back sooner" in text:
                return "Her blood pressure of 170/110 mmHg needs repeating within a week."
            return "Repeat blood pressure within a week."

        scorer = Scorer(answer=answer, embed=bag_of_words_embed, count_tokens=words)
        train = [example(key=f"visit {n}", patient=n) for n in range(3)]
        table = {e.key: {IDENTITY: 0.3, come_back: 0.5} for e in train}  # the reward alone would pick the edit

        choice = fixed_edit_choice(train, table, scorer)

        assert choice["code"] == IDENTITY
        assert choice["edit_precision"][come_back] == choice["edit_precision"][IDENTITY]  # precision alone lets it by
        assert choice["initial_unsupported_claims"] == 0.0
        assert choice["edit_unsupported_claims"][come_back] == 1.0
        aside = choice["set_aside"]
        assert aside["code"] == come_back
        assert aside["unsupported_claims"] == 1.0
        assert aside["claims_increase"] == {"difference": 1.0, "ci": [1.0, 1.0]}
        assert aside["reasons"] == [
            "it made more unsupported claims about her: 1.00 per answer against 0.00 for the initial prompt "
            "(paired difference +1.00, 95% CI +1.00 to +1.00)"
        ]

    def test_a_policy_whose_choices_invent_her_findings_is_not_deployed(self):
        come_back = COUNSELS.code

        def answer(text):
            if "come back sooner" in text:
                return "Repeat blood pressure within a week. She has gestational diabetes."
            return "Repeat blood pressure within a week."

        scorer = Scorer(answer=answer, embed=bag_of_words_embed, count_tokens=words)
        train = [example(key=f"visit {n}", patient=n) for n in range(3)]
        table = {e.key: {IDENTITY: 0.3, come_back: 0.5} for e in train}  # a claim in every answer to the edit
        decision = deployed_choice(train, table, {e.key: come_back for e in train}, IDENTITY, scorer)
        assert decision["deployed"] == "best_fixed"
        assert decision["policy_train_unsupported_claims"] == 1.0
        assert any("unsupported claims" in reason for reason in decision["policy_set_aside_because"])
        kept = deployed_choice(train, table, {e.key: IDENTITY for e in train}, IDENTITY, scorer)
        assert kept["deployed"] == "policy"
        assert "policy_set_aside_because" not in kept

    def test_grounding_reads_her_active_medicines_not_only_her_records_medicines_line(self):
        def answer(text):
            return "Repeat blood pressure within a week and continue her labetalol."

        on_labetalol = example()
        on_labetalol.medicines = ["Labetalol 200 MG Oral Tablet"]
        scorer = Scorer(answer=answer, embed=bag_of_words_embed, count_tokens=words)
        assert scorer.outcome(on_labetalol, IDENTITY).unsupported_claims == 0
        assert scorer.outcome(example(key="visit 2"), IDENTITY).unsupported_claims == 1  # her record lists none

    def test_a_request_gets_what_the_run_deployed_for_its_own_guidance_sources_setting(self):
        no_sources = composed(knowledge=())
        report = {
            "best_fixed": {"code": "E8"},
            "deployed": "by_sources",
            "by_sources": {
                "on": {"best_fixed": {"code": "E7"}, "deployed": "best_fixed"},
                "off": {"best_fixed": {"code": "E6"}, "deployed": "policy"},
            },
        }
        assert edit_to_send(report, PROMPT.sections) == "E7"
        assert edit_to_send(report, no_sources.sections) == "policy"
        assert edit_to_send(report, no_sources.sections, fixed=True) == "E6"

    def test_a_run_that_chose_one_edit_for_everyone_still_sends_it_for_both_settings(self):
        older = {"best_fixed": {"code": "E8"}, "deployed": "best_fixed"}
        assert edit_to_send(older, PROMPT.sections) == edit_to_send(older, composed(knowledge=()).sections) == "E8"
        assert edit_to_send({"best_fixed": {"code": "E8"}}, PROMPT.sections) == "policy"
        assert edit_to_send({"best_fixed": {"code": "E8"}}, PROMPT.sections, fixed=True) == "E8"
        with pytest.raises(ValueError, match="no best fixed edit"):
            edit_to_send({"deployed": "best_fixed"}, PROMPT.sections)

    def test_edit_gains_are_mean_gains_over_the_initial_prompt(self):
        assert edit_gains(TABLE) == pytest.approx({"E0": 0.0, "E1": 0.05, "E2": 0.0333}, abs=1e-4)

    def test_the_scorer_answers_each_prompt_once_and_a_refused_edit_is_never_sent(self):
        asked = []

        def answer(text):
            asked.append(text)
            return "Repeat blood pressure within a week."

        scorer = Scorer(answer=answer, embed=bag_of_words_embed, count_tokens=words)
        tight = example()
        tight.token_budget = (
            words(PROMPT.text) + 3 - EDIT_TOKEN_ALLOWANCE
        )  # every edit that adds sentences is over budget
        adds, longest, drops = ADDS[0].code, LONGEST.code, DROPS_PEER_ADVICE.code
        codes = (IDENTITY, adds, drops, longest)
        table = reward_table([tight], scorer, codes=codes)
        assert asked.count(PROMPT.text) == 1
        assert len(asked) == 2 == scorer.target_calls  # E0 and the edit that drops lines
        row = table[tight.key]
        assert row[adds] == row[longest] == row[IDENTITY]  # as used: the initial prompt answers
        refused = scorer.outcome(tight, adds)
        assert not refused.accepted
        assert refused.reward == pytest.approx(row[IDENTITY] - RewardWeights().over_budget)
        assert scorer.used(tight, adds) is scorer.outcome(tight, IDENTITY)
        reward_table([tight], scorer, codes=codes)
        assert len(asked) == 2  # the same edit is never scored twice

    def test_examples_of_one_patient_land_on_one_side(self):
        examples = [example(key=f"{p}-{rag}", patient=p, rag=rag) for p in range(12) for rag in (True, False)]
        train, validation = split_by_patient(examples, share=0.25, seed=7)
        assert train
        assert validation
        assert not {e.patient for e in train} & {e.patient for e in validation}
        assert len(train) + len(validation) == len(examples)


def row(patient, rag, initial, refined, fixed, code="E3", kinds=("trimester 2",), claims=(None, None)):
    return ValidationRow(
        key=f"{patient}-{rag}",
        patient=patient,
        rag=rag,
        code=code,
        best_fixed="E1",
        reward_initial=initial,
        reward_refined=refined,
        reward_best_fixed=fixed,
        accepted=True,
        problems=[],
        kinds=list(kinds),
        claims_initial=claims[0],
        claims_refined=claims[1],
    )


class TestValidationAndWhatThePolicyLearned:
    def test_the_summary_pairs_the_policy_with_the_initial_prompt_and_the_best_fixed_edit_by_sources(self):
        rows = [row(p, rag, 0.3, 0.4, 0.35) for p in range(4) for rag in (True, False)] + [row(9, True, 0.2, 0.2, 0.2)]
        summary = validation_summary(rows, resamples=200)
        assert summary["n"] == 9
        assert summary["patients"] == 5
        assert summary["difference"] == pytest.approx((8 * 0.1) / 9, abs=1e-4)
        assert summary["ci"][0] <= summary["difference"]
        assert summary["vs_best_fixed"]["difference"] == pytest.approx(8 * 0.05 / 9, abs=1e-4)
        assert summary["best_fixed_vs_initial"]["difference"] == pytest.approx(8 * 0.05 / 9, abs=1e-4)
        on, off = summary["by_sources"]["on"], summary["by_sources"]["off"]
        assert (on["n"], on["patients"], off["n"], off["patients"]) == (5, 5, 4, 4)
        assert off["difference"] == pytest.approx(0.1)
        assert off["ci"] == pytest.approx([0.1, 0.1])
        assert off["reward_initial"] == 0.3
        assert off["reward_refined"] == 0.4
        assert off["reward_best_fixed"] == 0.35

    def test_the_summary_reports_unsupported_claims_about_her_per_answer_before_and_after(self):
        rows = [row(1, True, 0.3, 0.4, 0.35, claims=(0, 1)), row(2, True, 0.3, 0.4, 0.35, claims=(0, 0))]
        rows.append(row(3, False, 0.3, 0.3, 0.3, claims=(1, 1)))
        summary = validation_summary(rows, resamples=100)
        assert summary["unsupported_claims"] == {
            "initial": pytest.approx(1 / 3, abs=1e-4),
            "refined": pytest.approx(2 / 3, abs=1e-4),
        }
        assert summary["by_sources"]["on"]["unsupported_claims"] == {"initial": 0.0, "refined": 0.5}

    def test_a_summary_of_one_retrieval_setting_has_only_that_side_and_no_rows_give_nothing(self):
        assert set(validation_summary([row(1, False, 0.3, 0.3, 0.3)], resamples=100)["by_sources"]) == {"off"}
        assert validation_summary([]) == {"n": 0, "patients": 0, "by_sources": {}}

    def test_what_the_policy_learned_counts_its_choices_and_says_for_which_kinds_of_patient(self):
        examples = [example(key="a", patient=1), example(key="b", patient=2), example(key="c", patient=3, prompt=PLAIN)]
        learned = what_the_policy_learned(examples, {"a": "E2", "b": "E2", "c": "E1"}, TABLE)
        assert learned["menu"] == MENU_VERSION
        assert [e["code"] for e in learned["edits"]] == CODES
        by_code = {e["code"]: e for e in learned["edits"]}
        assert (by_code["E2"]["chosen"], by_code["E2"]["share"], by_code["E1"]["chosen"]) == (2, 0.667, 1)
        assert by_code["E2"]["label"] == edit_named("E2").label
        assert by_code["E1"]["mean_gain"] == pytest.approx(0.05)
        assert by_code[CODES[-1]]["chosen"] == 0
        assert by_code[CODES[-1]]["mean_gain"] is None  # not in the table
        kinds = {k["kind"]: k for k in learned["kinds"]}
        assert kinds["trimester 2"]["examples"] == 2
        assert kinds["trimester 2"]["edits"] == [{"code": "E2", "label": edit_named("E2").label, "count": 2}]
        assert kinds["not pregnant"]["edits"][0]["code"] == "E1"
        assert "no risk flag" in kinds
        assert all(label in kinds for label in FLAGS)
        assert learned["kinds"][0]["examples"] >= learned["kinds"][-1]["examples"]  # the commonest kinds first


class TestThePolicy:
    @pytest.mark.parametrize(
        "completion, code",
        [
            ("3<|im_end|>", "E3"),
            (f"{len(MENU) - 1}", CODES[-1]),
            (" 0", "E0"),
            ("2 because", "E2"),
            ("99", None),
            ("x", None),
            ("", None),
            (f"{len(MENU)}", None),
        ],
    )
    def test_an_edit_code_is_read_from_the_policys_completion(self, completion, code):
        assert code_from_completion(completion) == code

    def test_it_gives_a_probability_to_every_edit_of_the_menu_and_chooses_one(self, tiny_checkpoint):
        policy = EditPolicy(tiny_checkpoint)
        situation = situation_summary(PROMPT.sections, FLAGS, QUESTION)
        probabilities = policy.probabilities(situation)
        assert list(probabilities) == CODES
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert all(0 <= p <= 1 for p in probabilities.values())
        code, again = policy.choose(situation)
        assert code in BY_CODE
        assert again == probabilities
        assert probabilities[code] == max(probabilities.values())

    def test_reading_her_situation_once_gives_each_code_the_probability_of_its_whole_answer(self, tiny_checkpoint):
        import torch

        policy = EditPolicy(tiny_checkpoint)
        situation = situation_summary(PROMPT.sections, FLAGS, QUESTION)
        prefix = policy.tokenizer(policy_prompt(policy.tokenizer, situation), add_special_tokens=False)["input_ids"]
        whole = {}
        for code, suffix in zip(policy.codes, policy._suffix_ids):
            with torch.no_grad():
                logits = policy.model(input_ids=torch.tensor([prefix + suffix])).logits[0].float()
            logprobs = torch.log_softmax(logits[len(prefix) - 1 : -1], dim=-1)
            whole[code] = sum(float(logprobs[i, token]) for i, token in enumerate(suffix))
        expected = torch.softmax(torch.tensor([whole[c] for c in policy.codes]), dim=0).tolist()
        assert list(policy.probabilities(situation).values()) == pytest.approx(expected, abs=2e-4)

    def test_grpo_trains_on_a_reward_table_for_its_steps_and_saves_the_policy(self, tiny_checkpoint, tmp_path):
        train = [example(key="a", patient=1), example(key="b", patient=2, prompt=PLAIN, rag=False)]
        table = {e.key: {code: (0.9 if code == CODES[1] else 0.1) for code in CODES} for e in train}
        steps = []
        config = RefinementConfig(steps=2, num_generations=2, examples_per_step=1, max_examples=2)
        records = train_policy(
            base_checkpoint=tiny_checkpoint,
            output_dir=tmp_path / "policy",
            train=train,
            table=table,
            config=config,
            invalid_reward=lambda e: -1.0,
            on_step=steps.append,
        )
        assert len(records) == 2 == len(steps)
        assert all(isinstance(r, StepRecord) for r in records)
        assert [r.step for r in records] == [1, 2]
        assert all(0 <= r.accepted_share <= 1 for r in records)
        assert all(r.reward_mean in (-1.0, 0.1, 0.9) or -1.0 <= r.reward_mean <= 0.9 for r in records)
        assert is_checkpoint(tmp_path / "policy")
        assert EditPolicy(tmp_path / "policy").choose("State: pregnant.")[0] in BY_CODE

    def test_training_without_examples_is_refused(self, tiny_checkpoint, tmp_path):
        with pytest.raises(ValueError, match="No training examples"):
            train_policy(
                base_checkpoint=tiny_checkpoint,
                output_dir=tmp_path,
                train=[],
                table={},
                config=RefinementConfig(steps=1),
                invalid_reward=lambda e: -1.0,
            )
