from django import forms
from django.urls import reverse_lazy

from patients.widgets import PlainSelect, PlainTextInput

# Each control refreshes the results in place (HTMX), sending the whole form and keeping the URL shareable.
_LIVE = {
    "hx-get": reverse_lazy("patients:list"),
    "hx-include": "closest form",
    "hx-target": "#patient-results",
    "hx-push-url": "true",
}
LIVE_SEARCH = {**_LIVE, "hx-trigger": "input changed delay:250ms, search"}
LIVE_FILTER = {**_LIVE, "hx-trigger": "change"}


class PatientSearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        widget=PlainTextInput(
            attrs={"type": "search", "placeholder": "Name or patient ID", "autocomplete": "off", **LIVE_SEARCH}
        ),
    )
    pregnant = forms.ChoiceField(
        required=False,
        label="Pregnancy",
        choices=[("", "All patients"), ("yes", "Pregnant now"), ("no", "Not pregnant")],
        widget=PlainSelect(attrs=LIVE_FILTER),
    )
    trimester = forms.TypedChoiceField(
        required=False,
        label="Trimester",
        coerce=int,
        empty_value=None,
        choices=[("", "Any trimester"), ("1", "First (0–13 wk)"), ("2", "Second (14–27 wk)"), ("3", "Third (28+ wk)")],
        widget=PlainSelect(attrs=LIVE_FILTER),
    )

    who = forms.ChoiceField(
        required=False,
        label="Show",
        choices=[("", "Living patients"), ("everyone", "Everyone, including deceased")],
        widget=PlainSelect(attrs=LIVE_FILTER),
    )

    def filters(self) -> dict:
        """Living patients, current pregnancies first, unless she asks for everyone."""
        data = self.cleaned_data if self.is_valid() else {}
        pregnant = {"yes": True, "no": False}.get(data.get("pregnant", ""))
        return {
            "query": data.get("q", ""),
            "pregnant": pregnant,
            "trimester": data.get("trimester"),
            "living_only": data.get("who") != "everyone",
            "pregnant_first": True,
        }
