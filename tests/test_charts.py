"""Server-rendered charts and diffs: every point inside the axes, numbers readable without sight."""

import re

from pmlm_site.charts import _ticks, line_chart
from pmlm_site.textdiff import diff_html


def test_the_axis_ticks_cover_every_value():
    for low, high in [(-0.0677, 0.0975), (0.18, 0.24), (0, 1), (5, 5), (118, 176)]:
        ticks = _ticks(low, high)
        assert ticks[0] <= low
        assert ticks[-1] >= high
        assert len(ticks) >= 2


def test_every_point_lies_inside_the_plot_and_the_description_states_it():
    svg = line_chart(
        [("mean reward", [(1, 0.0696), (2, 0.0003), (3, 0.0975), (4, -0.0677)])],
        title="Reward per step",
        x_label="step",
        y_label="mean reward",
        width=640,
        height=260,
    )
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.-]+)"', svg)]
    assert len(ys) == 4
    assert all(16 <= y <= 260 - 44 for y in ys)
    assert ">Reward per step</title>" in svg
    assert "4 → -0.07" in svg


def test_an_empty_series_draws_nothing():
    assert line_chart([("x", [])], title="t", x_label="x", y_label="y") == ""


def test_the_diff_marks_removed_and_added_lines_and_escapes_them():
    html = diff_html("### Instructions\nAnswer <b>now</b>.\nSame", "Same\n### Instructions for this patient")
    assert "<del" in html
    assert "<ins" in html
    assert "&lt;b&gt;now&lt;/b&gt;" in html
    assert "<b>" not in html
