"""Grounding: every guidance is checked against her record, and the sentences that assert
something about her that her record does not support are marked. No Django import.

A sentence is marked only when it attributes something to *her*:

- a finding (`findings.FINDINGS`, the refinement guard's vocabulary) stated as hers ("she has
  gestational diabetes", "her anaemia", "she smokes", "can exacerbate pre-eclampsia", or low blood
  sugar to watch for, which presumes diabetes treatment) that her record does not affirm;
- a number with a unit stated as hers ("her blood pressure of 160/110 mmHg", "she is 34 weeks
  pregnant", "she is on 75 mg aspirin") found nowhere in her record (`findings.numbers`, the
  guard's invented-number test);
- a medicine stated as current ("continue labetalol", "her iron tablets", "she takes metformin")
  that is not among her medicines.

General advice ("avoid alcohol in pregnancy"), safety-netting ("report headaches, which can
indicate pre-eclampsia"), hypotheticals ("if she develops…"), negations ("she has no diabetes"),
risks ("she is at risk of pre-eclampsia") and advice with numbers ("offer aspirin 150 mg") are not
claims about her: a warning on every sentence would be noise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .findings import FINDING_PATTERNS, affirmed_findings, numbers
from .safety import table

# Topics of general advice or anatomy, not findings a sentence can wrongly give her.
_NOT_CLAIMS = {"alcohol", "caffeine", "placenta"}
# A finding her record affirms also supports the findings it implies.
_IMPLIED_BY = {"hypertension": {"pre-eclampsia", "eclampsia"}, "pre-eclampsia": {"eclampsia"}}
_HISTORY_OF = re.compile(r"\b(?:previous\s+|past\s+)?history of\b", re.IGNORECASE)
_SUBJECT = r"(?:she|you|the patient|the woman|this woman|this patient)"
# Words that make what follows a risk, a test, a hypothetical, a negation or advice, not a fact about her.
_HEDGES = {
    "risk",
    "risks",
    "chance",
    "chances",
    "likelihood",
    "odds",
    "likely",
    "unlikely",
    "may",
    "might",
    "could",
    "can",
    "would",
    "should",
    "must",
    "will",
    "need",
    "needs",
    "to",
    "for",
    "about",
    "against",
    "of",
    "or",
    "if",
    "sign",
    "signs",
    "symptom",
    "symptoms",
    "screening",
    "screen",
    "screened",
    "test",
    "tests",
    "tested",
    "testing",
    "check",
    "checked",
    "checks",
    "no",
    "not",
    "never",
    "without",
    "prevent",
    "prevention",
    "avoid",
    "avoiding",
    "stop",
    "quit",
    "reduce",
    "protection",
    "offered",
    "advised",
    "counselled",
    "asked",
    "developing",
    "develop",
    "become",
}
# Verbs that make the next "her" an object ("give her iron"), not a possessive ("her iron").
_GIVING = {
    "offer",
    "give",
    "giving",
    "prescribe",
    "start",
    "advise",
    "tell",
    "ask",
    "refer",
    "encourage",
    "recommend",
    "help",
    "remind",
    "counsel",
    "teach",
    "provide",
    "send",
    "allow",
    "let",
    "show",
    "get",
    "make",
    "support",
    "about",
    "whether",
    "for",
    "on",
}
_CONDITIONAL = re.compile(r"\b(?:if|unless|whether|when|once|until|in case|should)\s*$", re.IGNORECASE)
_AFTER_NOT_HERS = re.compile(
    r"^[\w-]*\s+(?:status|test|tests|testing|screen|screening|serology|result|results|risk)\b", re.IGNORECASE
)
_PRESUPPOSE = re.compile(r"\b(?:worsen\w*|exacerbat\w*|aggravat\w*)\s+(?:her\s+|the\s+|existing\s+)?$", re.IGNORECASE)
_HYPOGLYCAEMIA = re.compile(r"hypoglyc|low blood (?:sugar|glucose)", re.IGNORECASE)
_DIABETES_TREATED = re.compile(r"diabet|insulin|metformin|glibenclamide|hypoglyc", re.IGNORECASE)
_REFERS_TO_HER = re.compile(r"\b(?:she|her|you|your)\b", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[,;:()]|\b(?:which|because|but|as|while|so)\b", re.IGNORECASE)

_UNIT = (
    r"mg|mcg|µg|micrograms?|g/dl|g/l|mmol/l|mmhg|kg/m2|kg/m²|kg|iu|units?|weeks?|wks?|days?|years?|%|bpm|"
    r"beats per minute|cm|ml"
)
_QUANTITY = re.compile(
    rf"(?<![\w.,/])\d+(?:[.,]\d+)?(?:\s*/\s*\d+(?:[.,]\d+)?)?\s*(?:{_UNIT})(?!\w)"
    r"|(?<![\w.,/])\d{2,3}/\d{2,3}(?![\w/])"
    r"|(?<=\bbmi )\d+(?:[.,]\d+)?|(?<=\bbmi of )\d+(?:[.,]\d+)?|(?<=\bbmi is )\d+(?:[.,]\d+)?",
    re.IGNORECASE,
)
_NUMBER_HEDGES = {
    "to",
    "take",
    "should",
    "target",
    "aim",
    "goal",
    "below",
    "above",
    "under",
    "over",
    "less",
    "more",
    "than",
    "least",
    "most",
    "keep",
    "reduce",
    "increase",
    "if",
    "exceeds",
    "exceed",
    "reaches",
    "reach",
    "rises",
    "falls",
    "drops",
    "every",
    "within",
    "after",
    "before",
    "until",
    "from",
    "by",
    "up",
    "maintain",
    "between",
    "normal",
    "ideal",
    "may",
    "might",
    "could",
    "would",
    "will",
    "must",
    "can",
    "needs",
    "need",
    "no",
    "not",
    "never",
    "advised",
    "offered",
    "at",
    "in",
    "around",
    "about",
    "for",
    "per",
}
_MEDICINES = {
    "aspirin": r"aspirin",
    "labetalol": r"labetalol",
    "nifedipine": r"nifedipine",
    "methyldopa": r"methyldopa",
    "hydralazine": r"hydralazine",
    "metformin": r"metformin",
    "insulin": r"insulin",
    "iron": r"ferrous|ferric|\biron\b",
    "folic acid": r"folic|folate",
    "levothyroxine": r"levothyrox|thyroxine",
    "heparin": r"heparin|enoxaparin|dalteparin|tinzaparin|\blmwh\b",
    "progesterone": r"progesterone",
    "calcium": r"calcium",
    "vitamin D": r"vitamin d|colecalciferol|cholecalciferol",
    "antiretroviral therapy": r"antiretroviral|dolutegravir|tenofovir|efavirenz|zidovudine",
    "paracetamol": r"paracetamol|acetaminophen",
    "nitrofurantoin": r"nitrofurantoin",
    "cefalexin": r"cefalexin|cephalexin",
    "azithromycin": r"azithromycin",
    "metronidazole": r"metronidazole",
    "omeprazole": r"omeprazole",
    "sertraline": r"sertraline",
    "fluoxetine": r"fluoxetine",
    "citalopram": r"citalopram",
    "salbutamol": r"salbutamol|albuterol",
    "prednisolone": r"prednisolone",
    "lamotrigine": r"lamotrigine",
    "levetiracetam": r"levetiracetam",
    "carbamazepine": r"carbamazepine",
    "magnesium sulfate": r"magnesium sulph|magnesium sulf",
}
_CURRENT_ADJECTIVES = (
    r"(?:(?:current|usual|regular|daily|prescribed|low-dose|oral|\d+(?:\.\d+)?\s*(?:mg|mcg|units?|iu))\s+)*"
)
_MEDICINES_LINE = re.compile(r"current medicines:\s*(.*)", re.IGNORECASE)


def _medicine_patterns() -> dict[str, re.Pattern]:
    """The curated obstetric medicines, then every medicine of the safety table by its terms."""
    patterns = dict(_MEDICINES)
    for entry in table()["medicines"]:
        patterns.setdefault(entry["name"], "|".join(re.escape(t) for t in entry["terms"]))
    return {name: re.compile(rf"(?<![a-z])(?:{p})", re.IGNORECASE) for name, p in patterns.items()}


@dataclass(frozen=True)
class Claim:
    """A sentence of the guidance that asserts something about her that her record does not support."""

    sentence: str
    start: int  # offsets into the guidance text
    end: int
    reason: str
    kinds: tuple[str, ...]  # finding | number | medicine

    def as_dict(self) -> dict:
        return {**asdict(self), "kinds": list(self.kinds)}


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: split at . ! ? before a space, and at line ends; a decimal
    point stays inside its sentence; list markers are left out."""
    spans = []
    for match in re.finditer(r"[^\n]+", text or ""):
        line_start = match.start()
        for part in re.finditer(r".+?(?:[.!?](?=\s|$)|$)", match.group(0)):
            chunk = part.group(0)
            lead = len(chunk) - len(chunk.lstrip(" \t-*•>#")) if chunk.strip() else len(chunk)
            lead += len(re.match(r"(?:\d+[.)]\s+)?", chunk[lead:]).group(0))
            start, end = line_start + part.start() + lead, line_start + part.start() + len(chunk.rstrip())
            if end > start and re.search(r"[a-zA-Z]", text[start:end]):
                spans.append((start, end))
    return spans


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _word_start(sentence: str, at: int) -> int:
    while at > 0 and (sentence[at - 1].isalnum() or sentence[at - 1] == "-"):
        at -= 1
    return at


def _possessed(before: str, max_between: int = 2) -> bool:
    """Whether `before` ends in "her"/"your" followed by at most a few words that keep it hers."""
    match = re.search(rf"\b(?:her|your)\s+((?:[\w'-]+\s+){{0,{max_between}}})$", before, re.IGNORECASE)
    if not match:
        return False
    between = _HISTORY_OF.sub("", match.group(1))
    preceding = _words(before[: match.start()])
    if preceding and preceding[-1] in _GIVING:
        return False
    return not (set(_words(between)) & _HEDGES)


def _subject_states(before: str, max_between: int = 6) -> bool:
    """Whether `before` ends in "she …" (a clause with her as its subject) that states a fact."""
    match = None
    for match in re.finditer(rf"\b{_SUBJECT}\b", before, re.IGNORECASE):
        pass
    if not match:
        return False
    tail = _HISTORY_OF.sub("", before[match.end() :])
    if _CLAUSE_BREAK.search(tail) or len(_words(tail)) > max_between or set(_words(tail)) & _HEDGES:
        return False
    return not _CONDITIONAL.search(before[: match.start()].rstrip()) and not re.search(
        r"\b(?:if|unless|whether)\b", before[: match.start()], re.IGNORECASE
    )


def _finding_claims(sentence: str, affirmed: set[str]) -> list[str]:
    reasons = []
    for name, pattern in FINDING_PATTERNS.items():
        if name in _NOT_CLAIMS or name in affirmed or _IMPLIED_BY.get(name, set()) & affirmed:
            continue
        for match in pattern.finditer(sentence):
            start = _word_start(sentence, match.start())
            before, after = sentence[:start], sentence[start:]
            hers = (
                (_possessed(before) and not _AFTER_NOT_HERS.search(after))
                or _subject_states(before)
                or _PRESUPPOSE.search(before)
            )
            if hers:
                reasons.append(f"{name} is stated as hers, but her record does not affirm it")
                break
    if (
        "diabetes" not in affirmed
        and _HYPOGLYCAEMIA.search(sentence)
        and _REFERS_TO_HER.search(sentence)
        and not re.search(r"\b(?:if|unless|whether)\b", sentence, re.IGNORECASE)
        and not any("diabetes" in r for r in reasons)
    ):
        reasons.append("low blood sugar presumes diabetes treatment, but her record has no diabetes")
    return reasons


def _number_claims(sentence: str, known: set[str]) -> list[str]:
    reasons = []
    for match in _QUANTITY.finditer(sentence):
        quantity = match.group(0).strip()
        invented = sorted(numbers(quantity) - known)
        if not invented:
            continue
        before = sentence[: match.start()]
        anchor = re.search(
            r"\b(?:her|your)\s+((?:[\w'-]+\s+){0,4}?)(?:is|was|of|reads|reading|measured|remains|[:=])?\s*$",
            before,
            re.IGNORECASE,
        )
        subject = re.search(rf"\b{_SUBJECT}\s+((?:[\w'-]+\s+){{0,4}}?)$", before, re.IGNORECASE)
        hers = False
        if anchor and not (set(_words(anchor.group(1))) & _NUMBER_HEDGES):
            preceding = _words(before[: anchor.start()])
            hers = not (preceding and preceding[-1] in _GIVING)
        if not hers and subject and not (set(_words(subject.group(1))) & _NUMBER_HEDGES):
            hers = not re.search(r"\b(?:if|unless|whether|when)\b", before[: subject.start()], re.IGNORECASE)
        if hers:
            reasons.append(f"{quantity} is found nowhere in her record")
    return reasons


def _medicine_claims(sentence: str, medicines_text: str) -> list[str]:
    reasons = []
    for name, pattern in _medicine_patterns().items():
        if pattern.search(medicines_text):
            continue
        for match in pattern.finditer(sentence):
            start = _word_start(sentence, match.start())
            before = sentence[:start]
            continued = re.search(
                rf"\b(?:continue|continuing|continues|keep|remain|stay|stays|remains)\s+(?:on\s+|taking\s+|with\s+)?"
                rf"(?:her\s+|your\s+)?{_CURRENT_ADJECTIVES}$",
                before,
                re.IGNORECASE,
            )
            possessive = re.search(rf"\b(?:her|your)\s+{_CURRENT_ADJECTIVES}$", before, re.IGNORECASE)
            if possessive:
                preceding = _words(before[: possessive.start()])
                possessive = not (preceding and preceding[-1] in _GIVING)
            taking = re.search(
                rf"\b{_SUBJECT}\s+(?:is\s+|was\s+|has\s+been\s+)?(?:currently\s+|already\s+|still\s+|now\s+)?"
                rf"(?:takes|taking|on|uses|using|prescribed|receiving|receives)\s+{_CURRENT_ADJECTIVES}$",
                before,
                re.IGNORECASE,
            )
            if taking and re.search(r"\b(?:if|unless|whether|when)\b", before[: taking.start()], re.IGNORECASE):
                taking = None
            if continued or possessive or taking:
                reasons.append(f"{name} is stated as a current medicine, but it is not among her medicines")
                break
    return reasons


def unsupported_claims(guidance: str, context: str, medicines: Sequence[str] | None = None) -> list[Claim]:
    """The sentences of `guidance` that assert about her what `context` (her record: the prompt's
    self section) does not support. `medicines`: her active medicines (default: the record's
    "Current medicines" line)."""
    affirmed = affirmed_findings(context)
    known = numbers(context)
    if medicines is None:
        medicines = [m.group(1) for m in _MEDICINES_LINE.finditer(context)]
    medicines_text = "\n".join(medicines)
    claims = []
    for start, end in sentences(guidance):
        sentence = guidance[start:end]
        found = {
            "finding": _finding_claims(sentence, affirmed),
            "number": _number_claims(sentence, known),
            "medicine": _medicine_claims(sentence, medicines_text),
        }
        reasons = [r for rs in found.values() for r in rs]
        if reasons:
            claims.append(Claim(sentence, start, end, "; ".join(reasons), tuple(k for k, rs in found.items() if rs)))
    return claims


def record_of(sections: Sequence[dict]) -> str:
    """Her record as the prompt carries it: the text of its self section(s)."""
    return "\n".join(s["text"] for s in sections if s.get("source") == "self")


def active_medicines(history) -> list[str]:
    """The medicines she takes now (`history`: a PatientHistory), as grounding reads them."""
    return [m.display for m in history.medications if m.active]


def guidance_claims(guidance: str, sections: Sequence[dict], history) -> list[dict]:
    """The marks of one guidance against the prompt's record of her and her active medicines
    (`history`: a PatientHistory); what guidance requests store, the evaluation counts and refinement guards."""
    return [c.as_dict() for c in unsupported_claims(guidance, record_of(sections), active_medicines(history))]
