"""The run page a reviewer receives: the summary tells the story, renders are clean, and the html/ folder
works wherever it is moved. Reads the session's smoke run (never writes into it); the child-run check
makes a child run (stage 08 only) beside it."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from workbench.runs import STAGE_NAMES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.hrefs.append(value)


def local_links(page: Path) -> list[str]:
    """Links of a page that point at files (not web addresses, anchors or embedded data)."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return [h for h in parser.hrefs if not urlparse(h).scheme and not h.startswith("#") and not h.startswith("//")]


def broken_links(html_dir: Path) -> list[tuple[str, str]]:
    broken = []
    for page in sorted(html_dir.glob("*.html")):
        for href in local_links(page):
            target = (page.parent / unquote(href.split("#")[0])).resolve()
            if not target.exists():
                broken.append((page.name, href))
    return broken


def test_summary_tells_int8_effect_and_what_did_not_run(smoke_run):
    index = (smoke_run.path / "html" / "index.html").read_text(encoding="utf-8")
    summary = index[index.index("<section class='summary'>") : index.index("</section>")]
    assert "INT8 effect" in summary and "of test windows change their whole FSQ code" in summary
    code_flip = next(m["value"] for m in smoke_run.metrics() if m["name"] == "code_flip_rate")
    assert f"{100 * code_flip:.2f} %" in summary
    reason = smoke_run.manifest()["stages"]["06_compile_hailo"]["stage_status"]["reason"]
    import html

    assert "<b>HEF</b>: not run" in summary and html.escape(reason) in summary
    assert "<b>Hailo-8 device</b>: not run" in summary
    assert "ECE before" in summary and "Conformal prediction sets" in summary
    # torch-fp32 and ort-fp32 agree exactly on the smoke run: one row naming both
    acc = {
        m["backend"]: m["value"]
        for m in smoke_run.metrics()
        if m["stage"] == "07_evaluate_on_device" and m["name"] == "accuracy"
    }
    if acc["torch-fp32"] == acc["ort-fp32"]:
        assert "<code>torch-fp32</code> = <code>ort-fp32</code>" in summary
    # provenance is collapsed
    assert "<details open" not in index


def test_html_folder_survives_renaming_and_moving(smoke_run, tmp_path):
    html_dir = smoke_run.path / "html"
    links = [h for p in html_dir.glob("*.html") for h in local_links(p)]
    assert links, "the index links its stage pages"
    assert not [h for h in links if h.startswith("..")], "links must stay inside html/"
    moved = tmp_path / "sent to a reviewer" / "renamed-pages"
    shutil.copytree(html_dir, moved)
    assert broken_links(moved) == []
    assert {f"{n}.html" for n in STAGE_NAMES.values()} <= set(local_links(moved / "index.html"))


TQDM_FRAGMENT = re.compile(r"\d+%\|[^|]*\|\s*\d+/\d+|\d+/\d+ \[\d\d:\d\d<|it/s\]|\u2588")
ANSI = re.compile(r"\x1b\[|&#27;\[|\\u001b\[|class=\"ansi-")


@pytest.mark.parametrize("stage", list(STAGE_NAMES.values()))
def test_successful_stage_renders_clean(smoke_run, stage):
    entry = smoke_run.manifest()["stages"][stage]
    assert entry["status"] != "failed"
    for rel in entry["html"].values():
        page = (smoke_run.path / rel).read_text(encoding="utf-8")
        assert not TQDM_FRAGMENT.search(page), (rel, TQDM_FRAGMENT.search(page).group(0))
        assert not ANSI.search(page), (rel, page[ANSI.search(page).start() - 200 : ANSI.search(page).end() + 200])
        assert "Traceback (most recent call last)" not in page, rel
    nb = nbformat.read(str(smoke_run.path / "notebooks" / f"{stage}.ipynb"), as_version=4)
    stray = [
        c.source.splitlines()[-1]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "execute_result"
        and re.fullmatch(r"-?\d+", o.get("data", {}).get("text/plain", "").strip())
    ]
    assert not stray, f"{stage}: cells ending in a bare value: {stray}"


def test_the_cleanliness_patterns_catch_what_they_name():
    assert TQDM_FRAGMENT.search("train:  63%|######3   | 19/30 [00:12<00:07,  1.50epoch/s]")
    assert TQDM_FRAGMENT.search("evaluate ort-fp32:   0%|          | 0/500 [00:00<?, ?it/s]")
    assert ANSI.search('<span class="ansi-red-fg">ValueError</span>')
    assert not TQDM_FRAGMENT.search("accuracy 90% of 720 windows, 3/4 subjects")


def test_child_run_page_shows_and_links_parent_stages(smoke_run, smoke_run_fake_hailo, tmp_path):
    """The suite's child run (stages 06-09 on the smoke run's 01-05) links and shows the parent's stages."""
    child = smoke_run_fake_hailo
    index = (child.path / "html" / "index.html").read_text(encoding="utf-8")
    for s in ("01", "05"):  # reused from the parent
        assert f"<a href='{STAGE_NAMES[s]}.html'>" in index
        assert (child.path / "html" / f"{STAGE_NAMES[s]}.html").is_file()
    fp32 = next(
        m["value"] for m in smoke_run.metrics() if m["name"] == "test_accuracy" and m["backend"] == "torch-fp32"
    )
    assert "(parent)" in index and f"{fp32:.4g}" in index
    assert "INT8 effect" in index  # from the parent's stage 05 and the child's stage 07
    assert smoke_run.run_id in index
    moved = tmp_path / "child-html"
    shutil.copytree(child.path / "html", moved)
    assert broken_links(moved) == []
    assert json.loads((child.path / "manifest.json").read_text())["parent"] == smoke_run.run_id
