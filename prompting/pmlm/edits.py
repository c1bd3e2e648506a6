"""Sentence-level prompt edits: the menu the refinement policy chooses from. No Django import.

Refinement works on whole sentences and lines, as in Reinforced Prompt Personalization (RPP/RPP+,
Mao et al., ACM TOIS 2025): for each patient and question the policy picks one edit from a
curated, versioned menu. An edit keeps or drops lines of her prompt that may be cut (her trends,
the care she kept up or dropped, what her peers' physicians recommended, further guidance
sources), can restate her risk flags beside the question, and adds instruction sentences from a
library, after the question. The refined prompt is plain text any LLM takes.

What an edit can never do: drop a risk flag, her pregnancy state, her risk-flag line or the peer
basis line (the lines the composer never cuts), or add a fact. Instruction sentences come from
the library and name nothing but her risk flags' labels. The guard (`refine.check_refined`) still
checks every refined prompt.

Everything the edits add sits after the question, at the end of the prompt, so an edited prompt
shares its beginning (instructions, her state, her risk flags, …) with the initial prompt: a
local model that keeps the state of a prefix it has read answers the edits of one prompt
cheaply, and so does any server with prefix caching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .composer import render
from .situation import pregnancy_words

MENU_VERSION = "edits-4"  # edits-2 added E8; edits-3 E9 and E10 (precision without guidance sources); edits-4 E11
EDIT_TITLE = "How to answer for her"
# What an edit may add beyond the template's token budget: its library sentences and her flags'
# labels (the model's context leaves room for them beside the answer).
EDIT_TOKEN_ALLOWANCE = 96

# Lines an edit may drop, by how they begin (composer.self_section and composer.peer_section).
TRENDS = ("- Trend:",)
CARE_HISTORY = ("- Care she kept up:", "- Care she dropped or is losing:")
LIFESTYLE = ("- Lifestyle now:",)
PEER_ADVICE = ("- Their physicians most often recommended",)
PEER_CARE = ("- What helped similar patients", "- Predicted to help her")

# The instruction library: each sentence once, in the order an edit lists them.
SENTENCES = {
    "flags_by_name": "Address each of her risk flags by name: {flags}.",
    "no_flags": "She has no risk flag: give the routine care for her stage.",
    "monitoring": "Give the monitoring plan with intervals, and when to escalate.",
    "results": (
        "Say which of her latest results (blood pressure, haemoglobin, glucose, BMI) are normal and which need "
        "action, with the next step for each."
    ),
    "stage_care": (
        "Include the routine care due at her stage of pregnancy: daily iron and folic acid, the scans due, "
        "fetal movements, and birth planning near term."
    ),
    "return_signs": "End with when she should come back sooner: bleeding, reduced fetal movements, severe headache.",
    "only_needed": (
        "Recommend only the care her risk flags and results call for, in a few short points; leave out routine "
        "care she does not need."
    ),
}
# The same sentences for a woman who is not pregnant: never antenatal care after her pregnancy has ended.
SENTENCES_AFTER_PREGNANCY = {
    "stage_care": (
        "Include the care due now that her pregnancy has ended: bleeding and signs of infection, "
        "contraception, anti-D if she is RhD negative, and her mood."
    ),
    "return_signs": "End with when she should come back sooner: heavy bleeding, fever, severe abdominal pain.",
}
SENTENCES_NOT_PREGNANT = {
    "stage_care": (
        "Include the routine care due for her, who is not pregnant: contraception or, if she plans a "
        "pregnancy, folic acid before conception, and cervical screening."
    ),
    "return_signs": "End with when she should come back sooner: heavy bleeding, fever, severe abdominal pain.",
}


@dataclass(frozen=True)
class Edit:
    """One entry of the menu: its code (what the policy emits), its words for curators, and what it does."""

    code: str
    label: str
    sentences: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()  # line beginnings to drop
    first_source_only: bool = False
    restate_flags: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.sentences or self.drop or self.first_source_only or self.restate_flags)


MENU: tuple[Edit, ...] = (
    Edit("E0", "the prompt as it is"),
    Edit("E1", "risk flags by name, restated beside the question", ("flags_by_name",), restate_flags=True),
    Edit("E2", "monitoring plan with intervals", ("monitoring",)),
    Edit("E3", "her results one by one", ("results",)),
    Edit("E4", "routine care for her stage", ("stage_care",)),
    Edit("E5", "when to come back sooner, last", ("return_signs",)),
    Edit("E6", "peers' line dropped", drop=PEER_ADVICE + PEER_CARE),
    Edit(
        "E7",
        "risk flags by name, routine care for her stage, when to come back",
        ("flags_by_name", "stage_care", "return_signs"),
        restate_flags=True,
    ),
    # E7 without the routine list: E7 raised the reward but made the model name routine care her physician had
    # not (key-item precision fell), so the menu offers the flags and the return signs alone.
    Edit(
        "E8",
        "risk flags by name and when to come back, without the routine list",
        ("flags_by_name", "return_signs"),
        restate_flags=True,
    ),
    # Without guidance sources every edit that raised the reward made the model name care her physician had not;
    # only dropping the peers' lines (E6) kept key-item precision. E9 joins E8 to that drop, and E10 asks for
    # nothing beyond what her flags and results call for.
    Edit(
        "E9",
        "risk flags by name and when to come back, peers' line dropped",
        ("flags_by_name", "return_signs"),
        drop=PEER_ADVICE + PEER_CARE,
        restate_flags=True,
    ),
    Edit(
        "E10",
        "risk flags by name, only the care they and her results call for",
        ("flags_by_name", "only_needed"),
        restate_flags=True,
    ),
    # Without sources E9 raised key-item precision but its gain's interval touched zero, and both of its sentences
    # ask for more care to be named. E11 keeps only what held precision: her flags restated, the peers' lines gone.
    Edit("E11", "risk flags restated, peers' line dropped", drop=PEER_ADVICE + PEER_CARE, restate_flags=True),
)
BY_CODE = {edit.code: edit for edit in MENU}
IDENTITY = MENU[0].code


def edit_named(code: str) -> Edit:
    try:
        return BY_CODE[code]
    except KeyError:
        raise ValueError(f"Unknown prompt edit {code!r}; the menu {MENU_VERSION} has {', '.join(BY_CODE)}.") from None


def sentence_library(pregnancy_state: str = "pregnant") -> dict[str, str]:
    """The library as it reads for her: the prompt's own words for her state ("pregnant, …", "not pregnant",
    "not pregnant: her pregnancy ended …")."""
    if pregnancy_state.startswith("not pregnant: her pregnancy ended"):
        return {**SENTENCES, **SENTENCES_AFTER_PREGNANCY}
    if pregnancy_state.startswith("not pregnant"):
        return {**SENTENCES, **SENTENCES_NOT_PREGNANT}
    return SENTENCES


def instruction_sentences(edit: Edit, risk_flag_labels: Sequence[str], pregnancy_state: str = "pregnant") -> list[str]:
    library = sentence_library(pregnancy_state)
    sentences = []
    for name in edit.sentences:
        if name == "flags_by_name":
            sentences.append(
                library["flags_by_name"].format(flags="; ".join(risk_flag_labels))
                if risk_flag_labels
                else library["no_flags"]
            )
        else:
            sentences.append(library[name])
    return sentences


def _restated(risk_flag_labels: Sequence[str]) -> str:
    return "Her risk flags: " + ("; ".join(risk_flag_labels) if risk_flag_labels else "none") + "."


def library_lines(risk_flag_labels: Sequence[str]) -> list[str]:
    """Every line an edit can add for her, as rendered: what the guard knows to be the library's."""
    every = Edit("all", "", tuple(SENTENCES))
    sentences = [_restated(risk_flag_labels)] + [
        sentence
        for state in ("pregnant", "not pregnant", "not pregnant: her pregnancy ended")
        for sentence in instruction_sentences(every, risk_flag_labels, state)
    ]
    return [f"- {sentence}" for sentence in dict.fromkeys(sentences)]


def _keep_line(line: str, drop: tuple[str, ...]) -> bool:
    return not any(line.startswith(prefix) for prefix in drop)


def edited_sections(sections: Sequence[dict], edit: Edit, risk_flag_labels: Sequence[str]) -> list[dict]:
    """The initial prompt's sections with the edit applied; the question stays where it was and
    what the edit adds follows it."""
    out = []
    for section in sections:
        section = {**section, "edit": edit.code}  # every section says which edit made it, drop-only edits too
        if section["source"] in ("self", "peer") and edit.drop:
            lines = section["text"].splitlines()
            section["text"] = "\n".join(line for line in lines if _keep_line(line, edit.drop))
        if section["source"] == "knowledge" and edit.first_source_only:
            section["text"] = section["text"].split("\n[2] ", 1)[0]
        if section["text"].strip():
            out.append(section)
    added = []
    if edit.restate_flags:
        added.append(_restated(risk_flag_labels))
    added += instruction_sentences(edit, risk_flag_labels, pregnancy_words(sections))
    if added:
        out.append(
            {
                "source": "instructions",
                "title": EDIT_TITLE,
                "text": "\n".join(f"- {s}" for s in added),
                "refined": True,
                "edit": edit.code,
            }
        )
    return out


def edited_text(sections: Sequence[dict], edit: Edit, risk_flag_labels: Sequence[str]) -> str:
    return render(edited_sections(sections, edit, risk_flag_labels))
