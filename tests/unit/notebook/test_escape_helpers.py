"""Data-derived text in notebook output: escaped in Markdown and in pandas Styler tables."""

from __future__ import annotations

import pandas as pd
from nbconvert.filters import markdown2html

from workbench.notebook import escape_markdown, styled

NASTY = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "\"q\" & 'a'",
    "a_b*c",
    "[x](javascript:y)",
    "# h",
    "&lt;",
]


def test_escape_markdown_renders_the_text_itself():
    for raw in NASTY:
        out = markdown2html(escape_markdown(raw))
        assert "<script" not in out and "<img" not in out and "<a " not in out and "<h1" not in out
        # the browser shows exactly the original characters
        text = out.removeprefix("<p>").strip().removesuffix("</p>")
        assert __import__("html").unescape(text) == raw


def test_escape_markdown_joins_lists():
    assert escape_markdown(["a<b", "c"]) == "a&lt;b, c"


def test_styled_escapes_cells_index_columns_and_index_names():
    df = pd.DataFrame({"<b>col</b>": [NASTY[0], 0.123456], "ok": [True, None]}, index=[NASTY[1], "a&b"])
    df.index.name = "<i>idx</i>"
    # a plain Styler (what the notebooks used) leaves the markup live
    assert "<script>alert(1)" in df.style.format(precision=2).to_html()
    page = styled(df, precision=2, na_rep="-").map(lambda v: "color: red" if v is True else "").to_html()
    for raw in ("<script>", "<img", "<b>col", "<i>idx"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&amp;b" in page and "0.12" in page
    assert "color: red" in page


def test_names_are_drawn_as_text_not_tex():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import workbench.notebook  # noqa: F401  (switches math text off, as in every notebook)

    fig, ax = plt.subplots()
    ax.set_title(r"$\frac$")  # malformed TeX: matplotlib's parser would raise
    ax.set_xticks([0])
    ax.set_xticklabels(["$^$"])
    fig.canvas.draw()
    plt.close(fig)
