from django import forms

from prompting.services import MAX_QUESTION_CHARS


class PromptForm(forms.Form):
    question = forms.CharField(max_length=MAX_QUESTION_CHARS, widget=forms.Textarea(attrs={"rows": 3, "placeholder": "e.g. What should we plan for her next visit?"}))
    at = forms.DateField(required=False, label="Consultation date", widget=forms.DateInput(attrs={"type": "date"}),
                         help_text="The record is read as of this date (default today).")
