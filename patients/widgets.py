"""Form controls written out in Python, byte for byte as Django's widget templates write them.

The patient list renders its filters on every keystroke of a search; through the template engine its
four controls cost about a sixth of the page. These widgets give the same HTML without it (the tests
compare the two for every kind of value). Only plain inputs and selects without option groups."""

import html

from django import forms
from django.utils.safestring import SafeString, mark_safe


def escaped(value) -> str:
    """As the template engine and format_html escape a value (conditional_escape): HTML that is already safe as
    it is, anything else as str() with & < > " ' escaped. Written with the standard library's escape, which is
    what Django's calls, without its lazy-string wrapper: the list's rows escape some 200 values a request."""
    return value.__html__() if hasattr(value, "__html__") else html.escape(str(value))


def _attrs(attrs: dict) -> str:
    """As django/forms/widgets/attrs.html: in order, False left out, True as a bare name."""
    return "".join(
        f" {escaped(name)}" if value is True else f' {escaped(name)}="{escaped("%s" % value)}"'
        for name, value in attrs.items()
        if value is not False
    )


class PlainTextInput(forms.TextInput):
    def _render(self, template_name, context, renderer=None) -> SafeString:
        widget = context["widget"]
        value = "" if widget["value"] is None else f' value="{escaped("%s" % widget["value"])}"'
        return mark_safe(
            f'<input type="{escaped(widget["type"])}" name="{escaped(widget["name"])}"{value}{_attrs(widget["attrs"])}>'
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
                    f'\n  <option value="{escaped("%s" % option["value"])}"{_attrs(option["attrs"])}>'
                    f"{escaped(option['label'])}</option>\n"
                )
        return mark_safe(
            f'<select name="{escaped(widget["name"])}"{_attrs(widget["attrs"])}>{"".join(options)}\n</select>'
        )
