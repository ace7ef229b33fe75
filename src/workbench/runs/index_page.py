"""The run's HTML index for reviewers: one self-contained page (images embedded, no server needed)
linking every executed notebook, with headline metrics per backend, the report card and provenance."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Iterable, Optional

from workbench.runs.store import STAGE_NAMES, Run
from workbench.runs.summary import RunSummary, lineage_metrics, report_card_rows, stage_statuses, summarize

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1150px;
color:#1d2430;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#5a6473;margin-top:0}
.tablewrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.6rem 0 1.4rem;font-size:.92rem}
th,td{border:1px solid #d5dae1;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f2f4f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.6rem;font-size:.8rem;font-weight:600}
.ok{background:#d8f3dc;color:#1b5e20}.bad{background:#fde2e1;color:#9b1c1c}.neutral{background:#e8ecf2;color:#37474f}
.synthetic{background:#fff3cd;color:#7a5b00}
.summary{background:#f7f9fc;border:1px solid #d5dae1;border-radius:.5rem;padding:.4rem 1.2rem 1rem;margin:1rem 0}
.summary h2{margin-top:.6rem} .summary p{margin:.45rem 0} .summary table{margin:.4rem 0 .6rem}
.note{color:#5a6473;font-size:.88rem}
figure{display:inline-block;margin:.4rem;max-width:48%;vertical-align:top;cursor:zoom-in}
figure.big{display:block;max-width:100%;cursor:zoom-out}
figure img{max-width:100%;border:1px solid #e3e7ed}
figcaption{font-size:.8rem;color:#5a6473} details{margin:.5rem 0} pre{background:#f6f8fa;padding:.6rem;
overflow:auto;font-size:.8rem;max-height:30rem}
"""

PASS_WORDS = {"succeeded", "passed", "bundle-only", "compiled"}


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(t, (int, float)) for t in v):
        return f"[{_fmt(float(v[0]))}, {_fmt(float(v[1]))}]"
    return _esc(v)


def _badge(status: str) -> str:
    cls = "ok" if status in PASS_WORDS else "bad" if status in ("failed", "fail") else "neutral"
    return f'<span class="badge {cls}">{_esc(status)}</span>'


def _table(headers: list[str], rows: Iterable[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='tablewrap'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def metrics_pivot(metrics: list[dict]) -> tuple[list[str], list[tuple[str, str, dict[str, Any]]]]:
    """Rows (stage, metric) x columns (backend): the headline numbers, each under its backend."""
    backends: list[str] = []
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for m in metrics:
        b = m.get("backend", "?")
        if b not in backends:
            backends.append(b)
        label = m["name"] + (f" [{m['unit']}]" if m.get("unit") else "")
        rows.setdefault((m["stage"], label), {})[b] = m["value"]
    return backends, [(s, n, v) for (s, n), v in rows.items()]


def _image_tag(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure onclick="this.classList.toggle(\'big\')" title="click to enlarge / shrink">'
        f'<img alt="{_esc(path.name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(path.parent.name)}/{_esc(path.name)} (click to enlarge)</figcaption></figure>"
    )


HEADLINE_FIGURES = ("*/headline_*.png", "08_reliability/reliability_diagrams.png")


def headline_figures(run: Run) -> list[Path]:
    """Figures a stage marks for the index (``headline_*.png``) plus the reliability diagrams."""
    found: list[Path] = []
    for pattern in HEADLINE_FIGURES:
        found += sorted((run.path / "artifacts").glob(pattern))
    return found


def _pct(v: float) -> str:
    return f"{100 * v:.2f} %"


def _backends(names: list[str]) -> str:
    return " = ".join(f"<code>{_esc(n)}</code>" for n in names)


def summary_html(summary: RunSummary) -> str:
    """The summary block at the top of the run page: what ran on what, and what it found."""
    parts = ["<section class='summary'><h2>Summary</h2>", f"<p>{_esc(summary.model_data)}</p>"]
    if summary.accuracy:
        rows = [
            [_backends(b), f"<td class='num'>{_pct(v)}</td>", "same accuracy" if len(b) > 1 else ""]
            for b, v in summary.accuracy
        ]
        n = f", {summary.test_windows} windows" if summary.test_windows else ""
        parts.append(
            f"<p><b>Accuracy</b> ({_esc(summary.accuracy_source)}{_esc(n)}); backends joined "
            "by = produced exactly the same accuracy:</p>" + _table(["backend", "accuracy", ""], rows)
        )
    i8 = summary.int8
    if i8:
        bits = []
        if "delta_accuracy" in i8:
            bits.append(
                f"accuracy {_pct(i8['fp32_accuracy'])} (<code>{_esc(i8['fp32_backend'])}</code>) "
                f"&rarr; {_pct(i8['int8_accuracy'])} (<code>ort-int8-emulated</code>), "
                f"&Delta; {100 * i8['delta_accuracy']:+.2f} points"
            )
        if "code_flip_rate" in i8:
            bits.append(f"{_pct(i8['code_flip_rate'])} of test windows change their whole FSQ code")
        if "level_flip_rate" in i8:
            bits.append(f"{_pct(i8['level_flip_rate'])} of individual FSQ levels change")
        if "prediction_flips" in i8:
            bits.append(f"{int(i8['prediction_flips'])} predicted classes change")
        if "npu_output_sqnr_db" in i8:
            bits.append(f"NPU output SQNR {i8['npu_output_sqnr_db']:.1f} dB")
        parts.append("<p><b>INT8 effect</b> (quantization emulated on CPU, stage 05/07): " + "; ".join(bits) + ".</p>")
    if summary.ece:
        rows = [
            [_backends(b), f"<td class='num'>{before:.4f}</td>", f"<td class='num'>{after:.4f}</td>"]
            for b, (before, after) in summary.ece
        ]
        parts.append(
            "<p><b>Probability calibration</b> (stage 08, temperature fitted on validation "
            "subjects, ECE on test subjects; lower is better):</p>"
            + _table(["backend", "ECE before", "ECE after temperature scaling"], rows)
        )
    if summary.conformal:
        rows = [
            [
                _esc(c["method"]),
                _backends(c["backends"]),
                f"<td class='num'>{_pct(c['coverage'])}</td>",
                f"<td class='num'>{c['set_size']:.2f}</td>",
                _esc(c.get("target") or ""),
                _badge("passed" if c["passed"] else "fail") if c["passed"] is not None else "",
            ]
            for c in summary.conformal
        ]
        alpha = summary.alpha
        meaning = (
            "Coverage is the share of test windows whose prediction set contains the true class; "
            + (f"the guarantee is at least {_pct(1 - alpha)} (1 &minus; &alpha;). " if alpha else "")
            + "<em>Pass</em> means the measured coverage lies in the target band; <em>fail</em> "
            "below it means the guarantee does not hold on these subjects, above it means the sets "
            "are larger (more cautious) than needed. Smaller average sets are more useful."
        )
        parts.append(
            "<p><b>Conformal prediction sets</b> (stage 08):</p>"
            + _table(["method", "backend", "coverage", "mean set size", "target", ""], rows)
            + f"<p class='note'>{meaning}</p>"
        )
    if summary.not_run:
        items = "".join(f"<li><b>{_esc(n.what)}</b>: not run &mdash; {_esc(n.reason)}</li>" for n in summary.not_run)
        parts.append(f"<p><b>Not run, and why</b></p><ul>{items}</ul>")
    if summary.reused:
        parents = sorted(set(summary.reused.values()))
        parts.append(
            "<p class='note'>Stages "
            + ", ".join(f"<code>{_esc(s)}</code>" for s in summary.reused)
            + " were reused from parent run "
            + ", ".join(f"<code>{_esc(p)}</code>" for p in parents)
            + "; their pages are copied into this folder and their numbers are marked "
            "<em>(parent)</em> below.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _copy_parent_pages(run: Run, html_dir: Path) -> dict[str, dict[str, str]]:
    """Reused stages' rendered pages, copied from the parent chain into this run's html/ so links stay
    inside the folder (which may be renamed, moved or sent on its own). Returns name -> kind -> file."""
    import shutil

    pages: dict[str, dict[str, str]] = {}
    for name, entry in stage_statuses(run).items():
        if not entry.get("reused_from"):
            continue
        parent = Run(run.path.parent / entry["reused_from"])
        for kind, rel in (entry.get("html") or {}).items():
            src = parent.path / "html" / Path(rel).name
            dst = html_dir / Path(rel).name
            if src.is_file():
                if not dst.exists():
                    shutil.copyfile(src, dst)
                pages.setdefault(name, {})[kind] = dst.name
    return pages


def _stage_links(html: dict[str, str]) -> str:
    # Pages live side by side in html/: link by file name only, so the folder can move.
    return " · ".join(
        f"<a href='{_esc(Path(rel).name)}'>{'notebook' if kind == 'full' else 'results only'}</a>"
        for kind, rel in html.items()
    )


def _is_synthetic(run: Run, dataset: str) -> bool:
    """Synthetic by parameter, or an array file whose provenance says it was generated (stage 01's
    data_summary.json records it), so generated windows are never badged as real data."""
    if dataset == "synthetic":
        return True
    path = run.artifact("data_summary", must_exist=False)
    try:
        return bool(json.loads(path.read_text()).get("synthetic")) if path.is_file() else False
    except (OSError, ValueError):
        return False


def write_index(run: Run) -> Path:
    man = run.manifest()
    html_dir = run.path / "html"
    html_dir.mkdir(exist_ok=True)
    copied = _copy_parent_pages(run, html_dir)
    metrics = lineage_metrics(run)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(run.run_id)}</title>"
        f"<style>{_CSS}</style></head><body>"
    ]
    params = man.get("params", {})
    dataset = params.get("dataset", "?")
    data_badge = (
        '<span class="badge synthetic">synthetic data</span>'
        if _is_synthetic(run, dataset)
        else f'<span class="badge neutral">{_esc(dataset)} (real data)</span>'
    )
    parts.append(
        f"<h1>Run {_esc(run.run_id)}</h1><p class='sub'>{_badge(man.get('status', '?'))} "
        f"{data_badge} created {_esc(man.get('created'))}"
        + (f" · parent run <code>{_esc(man['parent'])}</code>" if man.get("parent") else "")
        + "</p>"
    )
    try:
        parts.append(summary_html(summarize(run)))
    except Exception as exc:  # a summary must never hide the stage table of a broken run
        parts.append(f"<p class='note'>summary unavailable: {_esc(type(exc).__name__)}: {_esc(exc)}</p>")

    # stages
    rows = []
    statuses = stage_statuses(run)
    for name, entry in statuses.items():
        if entry.get("reused_from"):
            rows.append(
                [
                    f"<code>{_esc(name)}</code>",
                    _badge("reused"),
                    f"<td class='num'>{_fmt(entry.get('duration_s'))}</td>",
                    _stage_links(copied.get(name, {})) + f" (parent <code>{_esc(entry['reused_from'])}</code>)",
                    "",
                ]
            )
            continue
        err = (entry.get("error") or {}).get("summary", "")
        reason = (entry.get("stage_status") or {}).get("reason") or ""
        rows.append(
            [
                f"<code>{_esc(name)}</code>",
                _badge(entry.get("status", "?")),
                f"<td class='num'>{_fmt(entry.get('duration_s'))}</td>",
                _stage_links(entry.get("html") or {}),
                _esc(err or reason),
            ]
        )
    parts.append("<h2>Stages</h2>" + _table(["stage", "status", "seconds", "renders", "error / note"], rows))

    # report card
    card = report_card_rows(run)
    if card:

        def num(v: str) -> str:
            try:
                return f"{float(v):.4g}"
            except (TypeError, ValueError):
                return _esc(v)

        def verdict(r: dict) -> str:
            # report_card.csv has `status` (pass / warn / fail) since the coverage-direction change;
            # older cards only have the boolean `pass`
            status = r.get("status") or ("pass" if str(r.get("pass")) == "True" else "fail")
            return _badge({"pass": "passed", "fail": "fail"}.get(status, status))

        rows = [
            [
                _esc(r.get("backend")),
                _esc(r.get("check")),
                _esc(r.get("target")),
                f"<td class='num'>{num(r.get('measured'))}</td>",
                f"[{num(r.get('low'))}, {num(r.get('high'))}] {_esc(r.get('interval'))}",
                verdict(r),
                _esc(r.get("note") or ""),
            ]
            for r in card
        ]
        parts.append(
            "<h2>Report card (stage 08, test subjects)</h2>"
            + _table(["backend", "check", "target", "measured", "interval", "", "why"], rows)
        )

    # metrics
    if metrics:
        parent_stages = {m["stage"] for m in metrics if m.get("from_run")}
        backends, prow = metrics_pivot(metrics)
        rows = [
            [f"<code>{_esc(s)}</code>" + (" <em>(parent)</em>" if s in parent_stages else ""), _esc(n)]
            + [f"<td class='num'>{_fmt(v.get(b))}</td>" if b in v else "<td></td>" for b in backends]
            for s, n, v in prow
        ]
        parts.append(
            "<h2>Headline metrics (column = backend that produced the number)</h2>"
            + _table(["stage", "metric"] + backends, rows)
        )

    figs = headline_figures(run)
    if figs:
        parts.append(
            "<h2>Figures</h2><p class='note'>Click a figure to show it at full width.</p>"
            + "".join(_image_tag(f) for f in figs)
        )

    # provenance: collapsed, it is for whoever needs to reproduce the run
    summary_file = run.path / "artifacts" / STAGE_NAMES["01"] / "data_summary.json"
    prov = json.loads(summary_file.read_text()).get("provenance") if summary_file.exists() else None
    parts.append("<h2>Provenance</h2><details><summary>git, command, versions</summary>")
    parts.append(
        _table(
            ["", ""],
            [
                [
                    "git commit",
                    _esc((man.get("git") or {}).get("commit"))
                    + (" (uncommitted changes)" if (man.get("git") or {}).get("dirty") else ""),
                ],
                ["command", f"<code>{_esc(man.get('command'))}</code>"],
                ["parent run", _esc(man.get("parent") or "none")],
                ["versions", ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in (man.get("versions") or {}).items())],
            ],
        )
        + "</details>"
    )
    if prov:
        parts.append(
            "<details><summary>data provenance</summary><pre>" + _esc(json.dumps(prov, indent=2)) + "</pre></details>"
        )
    parts.append(
        "<details><summary>resolved parameters</summary><pre>" + _esc(json.dumps(params, indent=2)) + "</pre></details>"
    )
    parts.append("</body></html>")
    target = html_dir / "index.html"
    target.write_text("\n".join(parts), encoding="utf-8")
    return target


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> Optional[str]:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot_index(run: Run, png: Path, width: int = 1200, height: int = 2400) -> dict[str, Any]:
    """Open the run's index from disk in headless Chromium, save a screenshot and report what rendered:
    which metric names and backends appear in the DOM, and how many embedded images decoded."""
    import subprocess
    import tempfile

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("headless Chromium not found: apt-get install chromium")
    index = (run.path / "html" / "index.html").resolve()
    if not index.exists():
        raise FileNotFoundError(f"{index} does not exist: run the pipeline first")
    with tempfile.TemporaryDirectory() as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        subprocess.run(
            [chromium, *flags, f"--screenshot={png}", index.as_uri()], check=True, capture_output=True, timeout=120
        )
        # count images that decoded (naturalWidth > 0) by letting the page write it into its title
        probe = (
            "<script>window.onload=()=>{document.title='decoded:'+[...document.images]"
            ".filter(i=>i.naturalWidth>0).length}</script>"
        )
        probed = index.with_name("_probe_index.html")
        probed.write_text(index.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
        try:
            dom = subprocess.run(
                [chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
        finally:
            probed.unlink(missing_ok=True)
    import re

    m = re.search(r"<title>decoded:(\d+)</title>", dom)
    metrics = run.metrics()
    return {
        "png": str(png),
        "images_in_page": dom.count("<img"),
        "images_decoded": int(m.group(1)) if m else 0,
        "backends_shown": sorted({mm["backend"] for mm in metrics if mm["backend"] in dom}),
        "metric_names_shown": sorted({mm["name"] for mm in metrics if mm["name"] in dom}),
        "metric_names_total": len({mm["name"] for mm in metrics}),
        "has_report_card": "Report card" in dom,
    }
