from django import forms

from prompting.services import MAX_QUESTION_CHARS


class PromptForm(forms.Form):
    question = forms.CharField(max_length=MAX_QUESTION_CHARS, widget=forms.Textarea(attrs={"rows": 3, "placeholder": "e.g. What should we plan for her next visit?"}))
    at = forms.DateField(required=False, label="Consultation date", widget=forms.DateInput(attrs={"type": "date"}),
                         help_text="The record is read as of this date (default today).")


class GuidanceForm(PromptForm):
    endpoint = forms.ModelChoiceField(queryset=None, required=False, empty_label=None, label="LLM")
    use_retrieval = forms.BooleanField(required=False, initial=True, label="Ground in guidance sources")

    def __init__(self, *args, **kwargs):
        from prompting.models import LLMEndpoint

        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = LLMEndpoint.objects.filter(active=True)


class RefinementRunForm(forms.Form):
    steps = forms.IntegerField(min_value=1, max_value=500, label="Steps", help_text="GRPO updates of the policy.")
    max_examples = forms.IntegerField(min_value=2, max_value=5000, label="Examples",
                                      help_text="Encounters with a physician recommendation; a quarter of the patients are held out for validation.")
    num_generations = forms.IntegerField(min_value=2, max_value=16, label="Group size",
                                         help_text="Candidate rewrites per example that GRPO compares.")
    endpoint = forms.ModelChoiceField(queryset=None, required=False, label="Target LLM",
                                      empty_label="The default endpoint", help_text="The LLM whose guidance is scored.")

    def __init__(self, *args, **kwargs):
        from prompting.models import LLMEndpoint

        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = LLMEndpoint.objects.filter(active=True)
