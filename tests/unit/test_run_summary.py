"""The run page's summary on hand-made run directories: grouping of exactly equal backends, the INT8 effect,
not-run reasons, parent metrics for reused stages, and escaping of everything that came from data."""

import json
from pathlib import Path

import pytest

from workbench.runs.index_page import write_index
from workbench.runs.store import Run
from workbench.runs.summary import group_equal, lineage_metrics, summarize

HOSTILE = "<script>alert('x')</script> & \"quotes\""


def _run(root, name, stages, metrics, parent=None, reused=()):
    path = root / name
    for sub in ("notebooks", "html", "artifacts"):
        (path / sub).mkdir(parents=True)
    man = {
        "run_id": name,
        "status": "succeeded",
        "params": {"dataset": "npz", "conformal_alpha": 0.1},
        "parent": parent,
        "reused_from_parent": list(reused),
        "stages": stages,
    }
    (path / "manifest.json").write_text(json.dumps(man))
    (path / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    for name_, entry in stages.items():
        for rel in (entry.get("html") or {}).values():
            (path / rel).write_text(f"<html><body>{name_}</body></html>")
    return Run(path)


def _m(stage, name, backend, value, **extra):
    return {"stage": stage, "name": name, "backend": backend, "value": value, **extra}


@pytest.fixture()
def parent_and_child(tmp_path):
    pages = lambda n: {"full": f"html/{n}.html", "results": f"html/{n}.results.html"}  # noqa: E731
    parent = _run(
        tmp_path,
        "p-run",
        {
            "01_train_or_load": {"status": "succeeded", "duration_s": 3.0, "html": pages("01_train_or_load")},
            "05_calibrate_int8": {"status": "succeeded", "html": pages("05_calibrate_int8")},
            "06_compile_hailo": {
                "status": "bundle-only",
                "stage_status": {"status": "bundle-only", "hef": None, "reason": HOSTILE},
            },
        },
        [
            _m("01_train_or_load", "test_accuracy", "torch-fp32", 0.9),
            _m("05_calibrate_int8", "code_flip_rate", "ort-int8-emulated", 0.0625),
        ],
    )
    child = _run(
        tmp_path,
        "c-run",
        {
            "07_evaluate_on_device": {
                "status": "succeeded",
                "backends": ["ort-fp32", "ort-int8-emulated", "torch-fp32"],
                "stage_status": {"status": "succeeded", "not_evaluated": {"hailo8-device": "no HailoRT " + HOSTILE}},
                "html": pages("07_evaluate_on_device"),
            },
        },
        [
            _m("07_evaluate_on_device", "accuracy", "torch-fp32", 0.9, n=720),
            _m("07_evaluate_on_device", "accuracy", "ort-fp32", 0.9, n=720),
            _m("07_evaluate_on_device", "accuracy", "ort-int8-emulated", 0.875, n=720),
        ],
        parent="p-run",
        reused=["01_train_or_load", "05_calibrate_int8", "06_compile_hailo"],
    )
    return parent, child


def test_group_equal_groups_only_exact_ties():
    assert group_equal({"a": 0.9, "b": 0.9, "c": 0.9000001}) == [(["a", "b"], 0.9), (["c"], 0.9000001)]


def test_summary_of_a_child_uses_the_parent_for_reused_stages(parent_and_child):
    _, child = parent_and_child
    s = summarize(child)
    assert s.accuracy == [(["torch-fp32", "ort-fp32"], 0.9), (["ort-int8-emulated"], 0.875)]
    assert s.int8["delta_accuracy"] == pytest.approx(-0.025) and s.int8["code_flip_rate"] == 0.0625
    assert [(n.what, n.reason) for n in s.not_run] == [("HEF", HOSTILE), ("Hailo-8 device", "no HailoRT " + HOSTILE)]
    assert {m["from_run"] for m in lineage_metrics(child) if "from_run" in m} == {"p-run"}
    assert s.reused == {"01_train_or_load": "p-run", "05_calibrate_int8": "p-run", "06_compile_hailo": "p-run"}


def test_index_escapes_data_and_links_inside_html(parent_and_child):
    _, child = parent_and_child
    page = write_index(child).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "href='../" not in page and "<a href='01_train_or_load.html'>" in page
    assert (
        child.path / "html" / "01_train_or_load.html"
    ).read_text() == "<html><body>01_train_or_load</body></html>"  # copied from the parent
    assert "<code>torch-fp32</code> = <code>ort-fp32</code>" in page and "-2.50 points" in page
    assert "<details open" not in page


def test_list_with_chosen_metrics_includes_parent_numbers(parent_and_child):
    from workbench.runs.listing import format_metric_list

    parent, child = parent_and_child
    text = format_metric_list(["test_accuracy", "accuracy", "no_such_metric"], parent.path.parent)
    lines = text.splitlines()
    assert lines[0].split() == [
        "run",
        "status",
        "test_accuracy",
        "[torch-fp32]",
        "accuracy",
        "[ort-fp32]",
        "accuracy",
        "[ort-int8-emulated]",
        "accuracy",
        "[torch-fp32]",
    ]
    child_row = next(ln for ln in lines if ln.startswith("c-run"))
    assert child_row.split()[2:] == ["0.9", "0.9", "0.875", "0.9"]  # test_accuracy from the parent
    assert "(no run recorded: no_such_metric)" in text


def test_dry_run_prints_plan_and_creates_nothing(tmp_path, capsys):
    from workbench.cli import main

    out = tmp_path / "outputs"
    smoke = Path(__file__).resolve().parents[2] / "params" / "smoke.yaml"
    assert main(["run", "-f", str(smoke), "-p", "epochs", "3", "--to", "05", "--dry-run", "--outputs", str(out)]) == 0
    text = capsys.readouterr().out
    assert " * epochs: 3" in text and "   seed: 0" in text
    assert "05_calibrate_int8      run" in text and "06_compile_hailo       not run (after --to)" in text
    assert not out.exists()
