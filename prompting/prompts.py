"""Personalised prompts: built, found, audited and shown. Every surface (page, command, task, API) calls these."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from patients import models as pm
from prompting.errors import PromptError
from prompting.models import PersonalizedPrompt, PromptTemplate
from prompting.peer_models import peer_summary_for
from prompting.pmlm.composer import TemplateSpec, compose, inputs_hash, prompt_before_question, prompt_start
from prompting.pmlm.tokens import token_counter
from prompting.selectors import patient_history, patient_identifiers

MAX_QUESTION_CHARS = 2000


# A consultation is read as of a date from 1900 to the end of next year: the record's dates are
# reached from it by arithmetic that overflows near year 1 and year 9999.
EARLIEST_CONSULTATION = date(1900, 1, 1)


def latest_consultation() -> date:
    return date(timezone.now().year + 1, 12, 31)


def consultation_date_check(at: date | None) -> date:
    """The consultation date to use (today when not given); PromptError outside the sane range."""
    if at is None:
        return timezone.now().date()
    latest = latest_consultation()
    if not EARLIEST_CONSULTATION <= at <= latest:
        raise PromptError(
            f"The consultation date must be between {EARLIEST_CONSULTATION.isoformat()} and {latest.isoformat()}."
        )
    return at


def consultation_year_pattern() -> str:
    """A regular expression for the dates consultation_date_check accepts, by year (for the API's schema)."""
    last = latest_consultation().year  # 2000–2099
    decade, unit = divmod(last - 2000, 10)
    years = ["19[0-9]{2}"] + ([f"20[0-{decade - 1}][0-9]"] if decade else []) + [f"20{decade}[0-{unit}]"]
    return f"^(?:{'|'.join(years)})-"


def tokenizer_dir():
    return settings.VAR_DIR / "models" / "smollm2-tokenizer"


def count_tokens(text: str) -> int:
    return token_counter(tokenizer_dir())(text)


def prompt_template_active() -> PromptTemplate:
    template = PromptTemplate.objects.filter(active=True).first()
    if template is None:
        raise PromptError("No prompt template is active: a curator activates one in the admin.")
    return template


def template_spec(template: PromptTemplate) -> TemplateSpec:
    return TemplateSpec(
        version=template.version,
        instructions=template.instructions,
        token_budget=template.token_budget,
        sources_room=template.sources_room,
        titles={
            "instructions": "Instructions",
            "self": template.self_title,
            "peer": template.peer_title,
            "knowledge": template.knowledge_title,
            "question": template.question_title,
        },
    )


def prompt_build(
    *, patient: pm.Patient, question: str, at: date | None = None, user=None, knowledge: list[str] = ()
) -> PersonalizedPrompt:
    """Build (or find, when the inputs are the same) the personalised prompt, and store it."""
    question = (question or "").strip()
    if not question:
        raise PromptError("Type a question for the prompt.")
    if len(question) > MAX_QUESTION_CHARS:
        raise PromptError(f"The question is longer than {MAX_QUESTION_CHARS} characters.")
    at = consultation_date_check(at)
    template = prompt_template_active()
    spec = template_spec(template)
    history = patient_history(patient, at)
    peer, peer_model = peer_summary_for(patient)
    fingerprint = inputs_hash(history, question, spec, peer, knowledge)
    existing = PersonalizedPrompt.objects.filter(patient=patient, inputs_hash=fingerprint).first()
    if existing is not None:
        return existing
    composed = compose(
        history,
        question,
        spec,
        peer=peer,
        knowledge=list(knowledge),
        count_tokens=count_tokens,
        identifiers=patient_identifiers(patient),
    )
    try:
        with transaction.atomic():
            return PersonalizedPrompt.objects.create(
                patient=patient,
                question=question,
                consultation_date=at,
                template=template,
                template_version=spec.version,
                peer_model=peer_model,
                peer_model_version=peer_model.version if peer_model else None,
                text=composed.text,
                sections=composed.sections,
                risk_flags=[f.as_dict() for f in composed.risk_flags],
                peers=composed.peers,
                token_count=composed.token_count,
                inputs_hash=fingerprint,
                created_by=user if user is not None and user.is_authenticated else None,
            )
    except IntegrityError:  # built at the same moment by another request: use that one
        return PersonalizedPrompt.objects.get(patient=patient, inputs_hash=fingerprint)


def prompt_request(*, patient: pm.Patient, question: str, at: date | None = None, user=None) -> PersonalizedPrompt:
    """A person asks for her prompt (the workspace, the partner API, `build_prompt`): built or found, and audited.
    Prompts built for a guidance request, an evaluation or a refinement run are audited with those."""
    prompt = prompt_build(patient=patient, question=question, at=at, user=user)
    audit_record(AuditAction.BUILD_PROMPT, obj=patient, details={"prompt": prompt.pk})
    return prompt


def prompt_prefix(*, patient: pm.Patient, at: date | None = None, knowledge: list[str] | None = None) -> str:
    """The start every prompt for her that day grounded in guidance sources (the workspace's default) shares,
    whatever the question: the instructions, her record and her peers, cut to leave the sources their room, ending
    where the sources begin. A prompt without sources shares it too unless her record needed that room. Nothing is
    stored.

    With `knowledge` (the passages retrieved for a question being typed, as `passage_texts` gives them), the start
    runs on through those sources to where the question's own words begin: the prompt her question will bring if
    its sources stay the same, up to a question of ordinary length (a very long one may cut the last passage)."""
    at = consultation_date_check(at)
    spec = template_spec(prompt_template_active())
    peer, _ = peer_summary_for(patient)
    composed = compose(
        patient_history(patient, at),
        "?",
        spec,
        peer=peer,
        knowledge=list(knowledge or ()),
        count_tokens=count_tokens,
        identifiers=patient_identifiers(patient),
        room_for_sources=True,
    )
    return prompt_before_question(composed.sections) if knowledge else prompt_start(composed.sections)


def prompt_as_json(prompt: PersonalizedPrompt) -> dict:
    """The interface docs/DESIGN.md fixes for build_prompt --json and the API."""
    return {
        "patient": prompt.patient.external_id,
        "template_version": prompt.template_version,
        "prompt": prompt.text,
        "deidentified": True,
        "sections": prompt.sections,
        "risk_flags": prompt.risk_flags,
        "peers": prompt.peers,
    }


# --- peer model ---------------------------------------------------------------------------------------
