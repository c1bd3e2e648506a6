"""A readable line diff of two texts as HTML: removed lines in <del>, added lines in <ins>."""

from __future__ import annotations

import difflib
from html import escape

from django.utils.safestring import SafeString, mark_safe


def diff_html(before: str, after: str) -> SafeString:
    old, new = before.splitlines(), after.splitlines()
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [f'<span class="same">{escape(line) or "&nbsp;"}</span>' for line in old[i1:i2]]
            continue
        rows += [f'<del aria-label="removed">{escape(line) or "&nbsp;"}</del>' for line in old[i1:i2]]
        rows += [f'<ins aria-label="added">{escape(line) or "&nbsp;"}</ins>' for line in new[j1:j2]]
    return mark_safe('<div class="diff">' + "".join(rows) + "</div>")
