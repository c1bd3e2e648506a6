"""The personalised hard prompt: sections with provenance, ordered by priority, cut to a budget.

Sections: `instructions`, `self` (her record), `peer` (patients like her), `knowledge` (retrieved
guidance, when retrieval supplies it) and `question`. Every line has a priority; when the prompt
is over its token budget, the least important lines go first (knowledge, then peers, then the
less important parts of her record). Instructions, the question, her state and her risk flags
are never cut. The finished text passes through the de-identification guard.

A prompt grounded in guidance sources splits its budget (`TemplateSpec.sources_room`): her record
and peers are cut to the budget less the room, whatever the question and its passages, and the
sources with the question to the room. So every such prompt for her that day begins with the same
text, and a model that has read that start when her workspace opened (a prefill) reads only the
sources and the question: a bounded number of tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass, replace

from .deidentify import scrub
from .history import PatientHistory
from .peer_advice import advice_situation, care_situation, situation_words
from .risk import GESTATIONAL_AGE_RULES, RiskFlag, ago
from .selfinformed import SelfInformed, habit_phrase, summarise
from .state import Pregnancy

NEVER_CUT = 0
SOURCES = ("instructions", "self", "peer", "knowledge", "question")
CUT_ORDER = ("knowledge", "peer", "self")
# The sections that depend on the question; the ones before them are the same for every question about her.
QUESTION_SECTIONS = ("knowledge", "question")


@dataclass
class TemplateSpec:
    version: str
    instructions: str
    titles: dict[str, str]
    token_budget: int
    # Tokens kept for the guidance sources and the question when a prompt carries sources: her record and peers
    # fit the rest on their own, so their lines do not depend on the passages retrieved. 0: no room kept.
    sources_room: int = 0


@dataclass
class PeerSummary:
    basis: str  # "ratings" or "features"
    similarities: list[float]
    predicted: list[tuple[str, float]] = field(default_factory=list)  # (care item name, predicted rating)
    helped: list[tuple[str, float, int]] = field(default_factory=list)  # (care item name, mean rating, raters)
    recommended: list[tuple[str, float]] = field(default_factory=list)  # (key item, share of neighbours)
    model_version: int | None = None
    # The same, kept by the situation they were written in (peer_advice); `situated` picks hers.
    # None: `helped` and `recommended` above are already hers.
    helped_by_situation: dict[str, list[tuple[str, float, int]]] | None = None
    recommended_by_situation: dict[str, list[tuple[str, float]]] | None = None
    situation: str = ""  # in words, the situation `recommended` was chosen for ("not pregnant")
    care_situation: str = ""  # and `helped` ("pregnant")

    def situated(self, pregnancy: Pregnancy) -> PeerSummary:
        """What her peers' physicians advised and what helped them, from situations like hers only."""
        if self.helped_by_situation is None and self.recommended_by_situation is None:
            return self
        advice, care = advice_situation(pregnancy), care_situation(pregnancy)
        return replace(
            self,
            recommended=list((self.recommended_by_situation or {}).get(advice, [])),
            helped=list((self.helped_by_situation or {}).get(care, [])),
            situation=situation_words(advice),
            care_situation=situation_words(care),
        )

    @property
    def cohort_size(self) -> int:
        return len(self.similarities)

    @property
    def mean_similarity(self) -> float:
        return sum(self.similarities) / len(self.similarities) if self.similarities else 0.0


@dataclass
class Section:
    source: str
    title: str
    lines: list[tuple[int, str]]

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)


@dataclass
class ComposedPrompt:
    text: str
    sections: list[dict]
    risk_flags: list[RiskFlag]
    peers: list[dict]
    token_count: int
    over_budget: bool
    redactions: int
    summary: SelfInformed


def self_section(s: SelfInformed) -> list[tuple[int, str]]:
    lines = []
    facts = [f"Age {s.age}" if s.age is not None else "Age unknown"]
    if s.gravida is not None:
        facts.append(f"G{s.gravida} P{s.parity if s.parity is not None else '?'}")
    if s.pregnancy.dated:
        facts.append(f"pregnant, {s.pregnancy.label} (from the {s.pregnancy.basis})")
    elif s.pregnancy.pregnant:
        facts.append(
            f"pregnant, gestational age not recorded ({s.pregnancy.basis}): the pregnancy rules read her values of "
            f"the last {_span(s.pregnancy.window_days)}, and those that need the gestational age "
            f"({', '.join(GESTATIONAL_AGE_RULES)}) were not applied"
        )
    else:
        facts.append(s.pregnancy.label)  # "not pregnant", or how and when her pregnancy ended if recently
    if s.bmi:
        facts.append(f"BMI {s.bmi.value:.1f} ({s.bmi.category})")
    lines.append((NEVER_CUT, "- " + "; ".join(facts) + "."))
    if s.flags:
        lines.append((NEVER_CUT, "- Risk flags: " + "; ".join(f"{f.label} — {f.evidence}" for f in s.flags) + "."))
    else:
        lines.append((NEVER_CUT, "- Risk flags: none raised by the WHO antenatal rules."))
    if s.latest:
        lines.append(
            (
                1,
                "- Latest results: "
                + "; ".join(f"{label} {value} ({ago(days)})" for label, value, days in s.latest)
                + ".",
            )
        )
    if s.conditions:
        lines.append((1, "- Active conditions: " + "; ".join(s.conditions[:12]) + "."))
    if s.medicines:
        lines.append((1, "- Current medicines: " + "; ".join(s.medicines[:10]) + "."))
    if s.allergies:
        lines.append((1, "- Allergies: " + "; ".join(s.allergies) + "."))
    if s.preferences:
        lines.append((1, "- Her preferences: " + "; ".join(habit_phrase(p) for p in s.preferences) + "."))
    for trend in s.trends:
        lines.append((2, f"- Trend: {trend.text}" + (f" {trend.forecast}" if trend.forecast else "")))
    if s.lifestyle:
        lines.append((2, "- Lifestyle now: " + "; ".join(habit_phrase(h) for h in s.lifestyle) + "."))
    if s.engaged:
        lines.append((3, "- Care she kept up: " + "; ".join(s.engaged) + "."))
    if s.dropped:
        lines.append((2, "- Care she dropped or is losing: " + "; ".join(s.dropped) + "."))
    return lines


def _span(days: int) -> str:
    return f"{days // 7} weeks" if days >= 14 else f"{days} days"


def peer_section(p: PeerSummary | None) -> list[tuple[int, str]]:
    if p is None or not p.cohort_size:
        return [(NEVER_CUT, "- No peer model has been trained yet: no similar-patient information.")]
    if p.basis == "features":
        basis = (
            "She has too few care ratings of her own, so peers were matched on clinical features "
            "(age, parity, gestational age, BMI category, risk flags)"
        )
    else:
        basis = "Peers were matched on similar care-item ratings (Surprise KNNBaseline)"
    lines = [(NEVER_CUT, f"- {basis}: {p.cohort_size} similar patients, mean similarity {p.mean_similarity:.2f}.")]
    if p.predicted:
        lines.append(
            (
                1,
                "- Predicted to help her (not yet tried; predicted rating out of 5): "
                + "; ".join(f"{name} {score:.1f}" for name, score in p.predicted)
                + ".",
            )
        )
    # Situated peers (PeerSummary.situated) name the situation their advice and ratings come from.
    while_she_is = f" while {p.care_situation}" if p.care_situation else ""
    at_visits_like_hers = f" at comparable visits ({p.situation})" if p.situation else ""
    if p.helped:
        lines.append(
            (
                2,
                f"- What helped similar patients{while_she_is} (mean rating, raters): "
                + "; ".join(f"{name} {mean:.1f} ({n})" for name, mean, n in p.helped)
                + ".",
            )
        )
    elif p.care_situation:
        lines.append(
            (2, f"- No care-item ratings from similar patients in a comparable situation ({p.care_situation}).")
        )
    if p.recommended:
        lines.append(
            (
                1,
                f"- Their physicians most often recommended{at_visits_like_hers}: "
                + "; ".join(f"{item} ({share:.0%})" for item, share in p.recommended)
                + ".",
            )
        )
    elif p.situation:
        lines.append((1, f"- No similar patient's physician advice from a comparable situation ({p.situation})."))
    return lines


def compose(
    history: PatientHistory,
    question: str,
    template: TemplateSpec,
    *,
    peer: PeerSummary | None = None,
    knowledge: list[str] = (),
    count_tokens: Callable[[str], int],
    identifiers: list[str] = (),
    summary: SelfInformed | None = None,
    room_for_sources: bool | None = None,
) -> ComposedPrompt:
    """`room_for_sources`: cut her record and peers to the budget less `template.sources_room` first (by default
    when `knowledge` is given; a prefill asks for it without passages, to read the same start)."""
    summary = summary or summarise(history)
    sections = [
        Section(
            "instructions", template.titles.get("instructions", "Instructions"), [(NEVER_CUT, template.instructions)]
        ),
        Section("self", template.titles["self"], self_section(summary)),
        Section("peer", template.titles["peer"], peer_section(peer.situated(summary.pregnancy) if peer else None)),
        # The best two passages weigh like her latest results; further ones go before her trends.
        Section(
            "knowledge",
            template.titles["knowledge"],
            [(1 if n <= 2 else 3, f"[{n}] {passage}") for n, passage in enumerate(knowledge, 1)],
        ),
        Section("question", template.titles["question"], [(NEVER_CUT, question.strip())]),
    ]
    sections = [s for s in sections if s.lines]
    if (bool(knowledge) if room_for_sources is None else room_for_sources) and template.sources_room:
        # Her record and peers fit the budget less the room, and the sources with the question fit the room (the
        # last passage goes first): her prompt's start is the same whatever is asked, and what is read after it
        # is bounded, so a prefilled model answers in a bounded time.
        _cut_to(
            [s for s in sections if s.source not in QUESTION_SECTIONS],
            template.token_budget - template.sources_room,
            count_tokens,
        )
        _cut_to([s for s in sections if s.source in QUESTION_SECTIONS], template.sources_room, count_tokens)
    text = _render(sections)
    tokens = count_tokens(text)
    while tokens > template.token_budget:
        if not _drop_one_line(sections):
            break
        text = _render(sections)
        tokens = count_tokens(text)
    clean, redactions = scrub(text, identifiers)
    clean_sections = [
        {"source": s.source, "title": s.title, "text": scrub(s.text, identifiers)[0]} for s in sections if s.lines
    ]
    peers = (
        [{"similarity": round(similarity, 4), "basis": peer.basis} for similarity in peer.similarities] if peer else []
    )
    flags = [RiskFlag(f.code, f.label, scrub(f.evidence, identifiers)[0]) for f in summary.flags]
    return ComposedPrompt(
        clean,
        clean_sections,
        flags,
        peers,
        count_tokens(clean) if redactions else tokens,
        tokens > template.token_budget,
        redactions,
        summary,
    )


def _render(sections: list[Section]) -> str:
    return render([{"title": s.title, "text": s.text} for s in sections if s.lines])


def render(sections: list[dict]) -> str:
    """The prompt text from its sections (dicts with a title and a text), in order."""
    return "\n\n".join(f"### {s['title']}\n{s['text']}" for s in sections)


def _cut_to(sections: list[Section], budget: int, count_tokens: Callable[[str], int]) -> None:
    """Drop the least important lines of these sections until their text fits the budget (or nothing may go)."""
    while count_tokens(_render(sections)) > budget and _drop_one_line(sections):
        pass


def prompt_start(sections: list[dict]) -> str:
    """The text of a composed prompt before its question sections: what every question about her shares."""
    return render([s for s in sections if s["source"] not in QUESTION_SECTIONS]) + "\n\n"


def prompt_before_question(sections: list[dict]) -> str:
    """The text of a composed prompt up to the question's own words: her start and the guidance sources, then the
    question's heading. What a question being typed shares with the prompt it will bring, once its sources are
    known (`render` joins sections as this does)."""
    question = next(s for s in sections if s["source"] == "question")
    return render([s for s in sections if s["source"] != "question"]) + f"\n\n### {question['title']}\n"


def _drop_one_line(sections: list[Section]) -> bool:
    """Drop the least important line: highest priority number first; on a tie knowledge, then
    peers, then her record; within a section the last line first."""
    candidates = [
        (priority, -CUT_ORDER.index(section.source), index, section)
        for section in sections
        if section.source in CUT_ORDER
        for index, (priority, _) in enumerate(section.lines)
        if priority != NEVER_CUT
    ]
    if not candidates:
        return False
    _, _, index, section = max(candidates, key=lambda c: c[:3])
    del section.lines[index]
    return True


def inputs_hash(
    history: PatientHistory,
    question: str,
    template: TemplateSpec | str,
    peer: PeerSummary | None,
    knowledge: list[str] = (),
) -> str:
    """A fingerprint of everything that made the prompt: the same inputs give the same prompt. `template`: the
    whole spec (its budget and room change prompts under the same version), or a version alone."""
    payload = {
        "history": asdict(history),
        "question": question.strip(),
        "template": asdict(template) if is_dataclass(template) else template,
        "peer": asdict(peer) if peer is not None and is_dataclass(peer) else None,
        "knowledge": list(knowledge),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
