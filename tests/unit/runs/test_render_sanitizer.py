"""The HTML exporter sanitises as a backstop: markup that reached a notebook output unescaped is shown
as text, while headings, paragraphs, pandas tables and their colours survive."""

from __future__ import annotations

import re

import nbformat
import pandas as pd
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from workbench.runs.pipeline import _render_to, sanitize_html


def _render(tmp_path, cells):
    path = tmp_path / "t.ipynb"
    nbformat.write(new_notebook(cells=cells), str(path))
    out = _render_to(path, tmp_path)
    return {k: (tmp_path / p).read_text() if not p.startswith("/") else open(p).read() for k, p in out.items()}


def test_unescaped_outputs_are_neutralised_and_layout_kept(tmp_path):
    df = pd.DataFrame({"x": ["<script>alert(1)</script>", 1.5]}, index=["<img src=x onerror=alert(2)>", "a"])
    raw_styler = df.style.format(precision=2).map(lambda v: "background-color: #d4edda").to_html()
    cells = [
        new_markdown_cell("# Title\n\nSome **bold** text and <script>alert(0)</script>."),
        new_code_cell(
            "x",
            outputs=[
                new_output("display_data", data={"text/html": raw_styler, "text/plain": "s"}),
                new_output("display_data", data={"text/html": df._repr_html_(), "text/plain": "d"}),
                new_output(
                    "display_data", data={"text/markdown": "<img src=x onerror=alert(3)> **b**", "text/plain": "m"}
                ),
                new_output("display_data", data={"application/javascript": "alert(4)"}),
                new_output("stream", name="stdout", text="<script>alert(5)</script>"),
            ],
        ),
    ]
    pages = _render(tmp_path, cells)
    for kind, page in pages.items():
        body = page[page.index("<body") :]
        assert not re.search(r"<script>alert|<img src=x", body), kind
        assert "alert(4)" not in body  # JavaScript outputs are dropped
        assert "<strong>b</strong>" in body and "<table" in body and "<th" in body
        assert "background-color" in body  # Styler colours survive
        assert "&lt;h1" not in body and "&lt;p&gt;" not in body and "&lt;thead" not in body
    assert re.search(r"<h1[^>]*>Title", pages["full"])


def test_sanitize_keeps_allowed_and_escapes_the_rest():
    out = sanitize_html(
        '<p onclick="x()">a</p><a href="javascript:alert(1)">l</a><iframe src=y></iframe>'
        '<table><tr><td style="color: red; behavior: url(x)">c</td></tr></table>'
    )
    assert "onclick" not in out and "javascript:" not in out and "<iframe" not in out
    assert "color: red" in out and "behavior" not in out
