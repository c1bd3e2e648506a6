from django import forms

from prompting.models import LLMEndpoint
from prompting.pmlm.evaluation import REFINED_VARIANTS, VARIANT_LABELS
from prompting.prompts import MAX_QUESTION_CHARS
from prompting.ratings import ab_kinds_available


class PromptForm(forms.Form):
    question = forms.CharField(
        max_length=MAX_QUESTION_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "e.g. What should we plan for her next visit?"}),
    )
    at = forms.DateField(
        required=False,
        label="Consultation date",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The record is read as of this date (default today).",
    )


class GuidanceForm(PromptForm):
    endpoint = forms.ModelChoiceField(queryset=None, required=False, empty_label=None, label="LLM")
    use_retrieval = forms.BooleanField(required=False, initial=True, label="Ground in guidance sources")

    def __init__(self, *args, endpoints: list[LLMEndpoint] | None = None, **kwargs):
        """`endpoints`: the active endpoints, when the page has read them already (the choices are then shown
        without reading them again; what is posted is still checked against the database)."""
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = LLMEndpoint.objects.filter(active=True)
        if endpoints is not None:
            self.fields["endpoint"].choices = [(e.pk, str(e)) for e in endpoints]


class RefinementRunForm(forms.Form):
    steps = forms.IntegerField(min_value=1, max_value=500, label="Steps", help_text="GRPO updates of the policy.")
    max_examples = forms.IntegerField(
        min_value=2,
        max_value=5000,
        label="Examples",
        help_text="Encounters with a physician recommendation; a quarter of the patients are held out for validation.",
    )
    num_generations = forms.IntegerField(
        min_value=2,
        max_value=16,
        label="Group size",
        help_text="Edits the policy samples per example, which GRPO compares.",
    )
    endpoint = forms.ModelChoiceField(
        queryset=None,
        required=False,
        label="Target LLM",
        empty_label="The default endpoint",
        help_text="The LLM whose guidance is scored.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = LLMEndpoint.objects.filter(active=True)


class RatingForm(forms.Form):
    accuracy = forms.IntegerField(min_value=1, max_value=5)
    completeness = forms.IntegerField(min_value=1, max_value=5)
    personalisation = forms.IntegerField(min_value=1, max_value=5)
    safety = forms.IntegerField(min_value=1, max_value=5)
    clarity = forms.IntegerField(min_value=1, max_value=5)
    would_follow = forms.NullBooleanField(
        required=False, widget=forms.Select(choices=[("", "Unsure"), ("yes", "Yes"), ("no", "No")])
    )
    comment = forms.CharField(required=False, max_length=4000)

    def clean_would_follow(self):
        return {"yes": True, "no": False, True: True, False: False}.get(self.data.get("would_follow"), None)


class ABForm(PromptForm):
    kind = forms.ChoiceField(label="Compare", choices=())

    def __init__(self, *args, patient=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = ab_kinds_available(patient) if patient is not None else []


class EvaluationRunForm(forms.Form):
    limit_patients = forms.IntegerField(
        min_value=1,
        max_value=10_000,
        required=False,
        label="Held-out patients",
        help_text="At most this many (empty: every held-out patient).",
    )
    endpoints = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        label="LLMs",
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every active endpoint.",
    )
    retrieval = forms.ChoiceField(
        choices=[
            ("both", "With and without guidance sources"),
            ("on", "With guidance sources"),
            ("off", "Without guidance sources"),
        ],
        initial="both",
        label="Guidance sources",
    )
    variants = forms.MultipleChoiceField(
        choices=(), initial=(), widget=forms.CheckboxSelectMultiple, label="Prompt variants"
    )
    judge = forms.ModelChoiceField(
        queryset=None,
        required=False,
        label="LLM judge",
        empty_label="No judge",
        help_text="Scores each answer on a HealthBench-style rubric; the judge is named in the report.",
    )

    def __init__(self, *args, refined_ready: bool = True, **kwargs):
        """`refined_ready`: her organisation has a finished refinement run, which the refined variants apply; without
        one they start unticked, and say why."""
        super().__init__(*args, **kwargs)
        self.fields["endpoints"].queryset = self.fields["judge"].queryset = LLMEndpoint.objects.filter(active=True)
        self.fields["variants"].choices = list(VARIANT_LABELS.items())
        self.fields["variants"].initial = [v for v in VARIANT_LABELS if refined_ready or v not in REFINED_VARIANTS]
        if not refined_ready:
            waiting = "PMLM + best fixed edit and PMLM + RL need a finished refinement run first (Refinement)."
            self.fields["variants"].help_text = waiting
