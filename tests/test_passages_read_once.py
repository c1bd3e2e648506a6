"""Her prompt's guidance sources say each thing once.

WHO's decision tables restate a rule in every row that applies it, and a document's first chunk begins with
its title. The prompt carries each retrieved passage under its own number, but a run of words an earlier
passage already gave is left out ("…"), and a source is named once: a small model reads fewer tokens after
her prefilled start, and no rule twice.
"""

from prompting.pmlm.retrieval import REPEAT_RUN_WORDS, passages_as_read

RULE = (
    'Rule: ALL women should have "Healthy eating and keeping physically active counselling" with guidance on '
    "nutrition and exercise. When: ANC.B10. Counselling, in-facility management & treatment"
)
TITLE_A = "WHO ANC.DT.16 Dietary counselling — A.8. Vitamin E and C supplements (3)"
TITLE_B = "WHO ANC.DT.16 Dietary counselling — Counselling on increasing daily energy and protein intake"


def test_a_passage_that_begins_with_its_title_is_not_named_again_after_it():
    (shown,) = passages_as_read([(f"{TITLE_A}. {RULE}", TITLE_A)])
    assert shown == f"{TITLE_A}. {RULE}"
    assert "(Source:" not in shown


def test_a_passage_from_the_middle_of_a_document_is_named_after_it():
    (shown,) = passages_as_read([("Give iron and folic acid daily.", TITLE_B)])
    assert shown == f"Give iron and folic acid daily. (Source: {TITLE_B})"


def test_a_rule_an_earlier_passage_gave_is_left_out_of_a_later_one_and_its_new_words_stay():
    first = f"{TITLE_A}. {RULE} Decision: no supplement."
    second = f"{RULE} Inputs: underweight. Action: counsel on energy and protein intake."
    shown = passages_as_read([(first, TITLE_A), (second, TITLE_B)])
    assert shown[0] == first
    assert shown[1] == f"… Inputs: underweight. Action: counsel on energy and protein intake. (Source: {TITLE_B})"


def test_a_later_passage_keeps_its_title_even_when_an_earlier_one_begins_the_same_way():
    shared_title = "WHO ANC.DT.16 Dietary counselling — WHO ANC recommendations (2016): A.1.4. Dietary interventions"
    first = f"{TITLE_A}. {RULE}"
    second = f"{shared_title}. {RULE} Inputs: – High protein supplement – Zinc supplement"
    shown = passages_as_read([(first, TITLE_A), (second, shared_title)])
    assert shown[1] == f"{shared_title}. … Inputs: – High protein supplement – Zinc supplement"


def test_shared_phrasing_shorter_than_a_run_is_kept():
    phrase = " ".join(["counselling", "in-facility", "management", "&", "treatment"][: REPEAT_RUN_WORDS - 1])
    shown = passages_as_read([(f"Weigh her. {phrase}.", ""), (f"Measure BP. {phrase}.", "")])
    assert shown == [f"Weigh her. {phrase}.", f"Measure BP. {phrase}."]


def test_repeats_are_matched_whatever_the_case_or_punctuation():
    first = "Measure blood pressure again after ten to fifteen minutes of rest, then refer."
    second = "MEASURE Blood Pressure again, after ten to fifteen minutes of rest; give aspirin."
    assert passages_as_read([(first, ""), (second, "")])[1] == "… give aspirin."


def test_a_passage_with_nothing_new_is_kept_whole_rather_than_left_empty():
    shown = passages_as_read([(f"{RULE} Decision: counsel.", ""), (RULE, TITLE_B)])
    assert shown[1] == f"{RULE} (Source: {TITLE_B})"
