"""The composer and the de-identification guard, in plain Python."""

from prompting.pmlm import codes
from prompting.pmlm.composer import PeerSummary, TemplateSpec, compose, inputs_hash
from prompting.pmlm.deidentify import REDACTED, leaks, scrub
from prompting.pmlm.history import Diagnosis, Habit, PatientHistory, Reading
from prompting.pmlm.key_items import key_items

TEMPLATE = TemplateSpec(
    "t-1",
    "Advise the clinician.",
    {"self": "Her record", "peer": "Patients like her", "knowledge": "Guidance sources", "question": "Question"},
    10_000,
)


def words(text):
    return len(text.split())


def pregnant_history():
    return PatientHistory(
        age_years=31,
        readings=[
            Reading(codes.SYSTOLIC, 2, 150, "mm[Hg]", encounter=1),
            Reading(codes.DIASTOLIC, 2, 96, "mm[Hg]", encounter=1),
            Reading(codes.HAEMOGLOBIN, 5, 10.1, "g/dL"),
        ],
        diagnoses=[Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", 26 * 7)],
        habits=[Habit("detail_level", "Preferred level of detail", "detailed", 30, preference=True)],
    )


def test_the_prompt_has_every_section_with_its_provenance_and_the_flags():
    peer = PeerSummary(
        "ratings",
        [0.5, 0.3],
        predicted=[("Home blood pressure monitoring", 4.6)],
        recommended=[("low-dose aspirin", 0.6)],
    )
    prompt = compose(
        pregnant_history(),
        "Plan her next visit",
        TEMPLATE,
        peer=peer,
        knowledge=["WHO: aspirin 75 mg"],
        count_tokens=words,
    )
    assert [s["source"] for s in prompt.sections] == ["instructions", "self", "peer", "knowledge", "question"]
    assert {f.code for f in prompt.risk_flags} == {"hypertension", "anaemia"}
    assert "150/96 mmHg" in prompt.text
    assert "pregnant, 26+0 weeks" in prompt.text
    assert "2 similar patients, mean similarity 0.40" in prompt.text
    assert "[1] WHO: aspirin 75 mg" in prompt.text
    assert prompt.peers == [{"similarity": 0.5, "basis": "ratings"}, {"similarity": 0.3, "basis": "ratings"}]
    assert "detailed" in prompt.text  # her preference for detail reaches the LLM


def test_cold_start_peers_say_they_were_matched_on_clinical_features():
    prompt = compose(pregnant_history(), "q", TEMPLATE, peer=PeerSummary("features", [0.9]), count_tokens=words)
    assert "matched on clinical features" in prompt.text


def test_over_budget_the_least_important_lines_go_first_and_flags_stay():
    peer = PeerSummary("ratings", [0.5], predicted=[("x", 4.0)], recommended=[("iron supplementation", 1.0)])
    full = compose(
        pregnant_history(), "Plan her next visit", TEMPLATE, peer=peer, knowledge=["a " * 50], count_tokens=words
    )
    tight = TemplateSpec("t-1", TEMPLATE.instructions, TEMPLATE.titles, full.token_count - 60)
    cut = compose(
        pregnant_history(), "Plan her next visit", tight, peer=peer, knowledge=["a " * 50], count_tokens=words
    )
    assert cut.token_count <= tight.token_budget < full.token_count
    assert "knowledge" not in [s["source"] for s in cut.sections]  # guidance passages are cut first
    assert "Hypertension (≥ 140/90 mmHg) — BP 150/96" in cut.text
    assert "Anaemia" in cut.text
    assert "Plan her next visit" in cut.text


def _record_start(prompt) -> str:
    return prompt.text.split("### Guidance sources")[0]


def test_with_sources_her_record_fits_the_budget_less_the_room_whatever_is_asked_and_the_sources_fit_the_room():
    from dataclasses import replace

    peer = PeerSummary("ratings", [0.5], predicted=[("x", 4.0)], recommended=[("iron supplementation", 1.0)])
    whole = compose(pregnant_history(), "?", TEMPLATE, peer=peer, count_tokens=words)
    spec = replace(TEMPLATE, token_budget=whole.token_count + 40, sources_room=80)
    short = compose(pregnant_history(), "Iron?", spec, peer=peer, knowledge=["a " * 20], count_tokens=words)
    long = compose(
        pregnant_history(),
        "What should we plan for her next visit, given her blood pressure?",
        spec,
        peer=peer,
        knowledge=["b " * 30, "c " * 30, "d " * 30],
        count_tokens=words,
    )
    prefix = compose(pregnant_history(), "?", spec, peer=peer, count_tokens=words, room_for_sources=True)
    # The same start for both questions, and for the prefill, though the first would have fitted whole.
    assert _record_start(short) == _record_start(long) == prefix.text.split("### Question")[0]
    assert words(_record_start(long)) <= spec.token_budget - spec.sources_room
    assert "Hypertension" in _record_start(long) and "Anaemia" in _record_start(long)  # flags are never cut
    # The sources and the question fit the room: the last passages go first.
    rest = long.text[len(_record_start(long)) :]
    assert words(rest) <= spec.sources_room
    assert "[1] b" in rest and "[3] d" not in rest
    assert long.token_count <= spec.token_budget


def test_without_sources_her_record_keeps_the_whole_budget():
    from dataclasses import replace

    peer = PeerSummary("ratings", [0.5], predicted=[("x", 4.0)], recommended=[("iron supplementation", 1.0)])
    whole = compose(pregnant_history(), "Iron?", TEMPLATE, peer=peer, count_tokens=words)
    spec = replace(TEMPLATE, token_budget=whole.token_count + 5, sources_room=80)
    assert compose(pregnant_history(), "Iron?", spec, peer=peer, count_tokens=words).text == whole.text


def test_the_prompt_fingerprint_changes_with_the_budget_or_the_room_under_one_version():
    from dataclasses import replace

    fingerprints = {
        inputs_hash(pregnant_history(), "q", spec, None)
        for spec in (TEMPLATE, replace(TEMPLATE, token_budget=900), replace(TEMPLATE, sources_room=300))
    }
    assert len(fingerprints) == 3


def test_the_guard_removes_planted_identifiers_and_anything_shaped_like_a_date_or_contact():
    text = (
        "Ana Rivera (MRN-4471, born 1992-03-14, 14/03/1992) lives at 1 Clinic Road, Springfield; call 555-0100-22 "
        "or ana@example.org; SSN 999-95-6102; id 004b7f3b-eaaa-4eda-81dc-3a82854a363d; BP 150/96 mmHg."
    )
    clean, count = scrub(text, ["Ana Rivera", "Ana", "Rivera", "MRN-4471", "1 Clinic Road", "Springfield"])
    for planted in (
        "Ana",
        "Rivera",
        "MRN-4471",
        "1992",
        "Clinic Road",
        "Springfield",
        "555-0100",
        "example.org",
        "999-95-6102",
        "004b7f3b",
    ):
        assert planted not in clean
    assert "BP 150/96 mmHg" in clean
    assert REDACTED in clean
    assert count >= 9
    assert leaks(clean, ["Ana", "Rivera"]) == []


def test_identifiers_in_free_text_fields_never_reach_the_prompt():
    h = pregnant_history()
    h.diagnoses.append(Diagnosis("38341003", "Hypertension noted by Dr for Ana Rivera MRN-4471", 400))
    h.readings.append(Reading("8302-2", 400, 160, "cm", display="Height (Ana) 2024-01-02"))
    h.habits.append(Habit("diet", "Diet", "Ana Rivera says balanced, call 555 123 4567", 10))
    prompt = compose(
        h,
        "What does Ana Rivera need?",
        TEMPLATE,
        count_tokens=words,
        identifiers=["Ana Rivera", "Ana", "Rivera", "MRN-4471"],
    )
    assert leaks(prompt.text, ["Ana", "Rivera", "MRN-4471", "2024-01-02", "555 123 4567"]) == []
    assert all(leaks(s["text"], ["Ana", "Rivera", "MRN-4471"]) == [] for s in prompt.sections)


def test_the_same_inputs_give_the_same_fingerprint():
    assert inputs_hash(pregnant_history(), "q", "t-1", None) == inputs_hash(pregnant_history(), "q", "t-1", None)
    assert inputs_hash(pregnant_history(), "q", "t-1", None) != inputs_hash(pregnant_history(), "other", "t-1", None)


def test_key_items_are_found_in_physician_advice():
    advice = "BP raised: start home blood pressure monitoring, low-dose aspirin 150 mg; continue iron and folic acid."
    assert key_items(advice) >= {
        "home blood pressure monitoring",
        "low-dose aspirin",
        "iron supplementation",
        "folic acid",
    }
