from django import forms


class PatientSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Name or patient ID", "autocomplete": "off"}))
    pregnant = forms.ChoiceField(required=False, label="Pregnancy",
                                 choices=[("", "All patients"), ("yes", "Pregnant now"), ("no", "Not pregnant")])
    trimester = forms.TypedChoiceField(required=False, label="Trimester", coerce=int, empty_value=None,
                                       choices=[("", "Any trimester"), ("1", "First (0–13 wk)"), ("2", "Second (14–27 wk)"), ("3", "Third (28+ wk)")])

    def filters(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        pregnant = {"yes": True, "no": False}.get(data.get("pregnant", ""))
        return {"query": data.get("q", ""), "pregnant": pregnant, "trimester": data.get("trimester")}
