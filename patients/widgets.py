"""Form controls written out in Python, byte for byte as Django's widget templates write them.

The patient list renders its filters on every keystroke of a search; through the template engine its
four controls cost about a sixth of the page. These widgets give the same HTML without it (the tests
compare the two for every kind of value). Only plain inputs and selects without option groups."""

from django import forms
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe


def _attrs(attrs: dict) -> str:
    """As django/forms/widgets/attrs.html: in order, False left out, True as a bare name."""
    return "".join(
        format_html(" {}", name) if value is True else format_html(' {}="{}"', name, "%s" % value)
        for name, value in attrs.items()
        if value is not False
    )


class PlainTextInput(forms.TextInput):
    def _render(self, template_name, context, renderer=None) -> SafeString:
        widget = context["widget"]
        value = "" if widget["value"] is None else format_html(' value="{}"', "%s" % widget["value"])
        return mark_safe(
            format_html('<input type="{}" name="{}"', widget["type"], widget["name"])
            + value
            + _attrs(widget["attrs"])
            + ">"
        )


class PlainSelect(forms.Select):
    def _render(self, template_name, context, renderer=None) -> SafeString:
        widget = context["widget"]
        options = []
        for group_name, group_choices, _ in widget["optgroups"]:
            if group_name:
                raise ValueError("PlainSelect writes no option groups; use forms.Select")
            for option in group_choices:
                options.append(
                    format_html('\n  <option value="{}"', "%s" % option["value"])
                    + _attrs(option["attrs"])
                    + format_html(">{}</option>\n", option["label"])
                )
        return mark_safe(
            format_html('<select name="{}"', widget["name"])
            + _attrs(widget["attrs"])
            + ">"
            + "".join(options)
            + "\n</select>"
        )
