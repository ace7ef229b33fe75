"""`python -m workbench ...`: run the pipeline, list and compare runs, sweep, check data, import a HEF."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from workbench.config import load_params, parse_override
from workbench.errors import StageFailed, WorkbenchError


def _parse_p(pairs: Optional[list[list[str]]]) -> dict:
    out = {}
    for name, value in pairs or []:
        out[name] = parse_override(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks into a new outputs/<run-id>/")
    r.add_argument("-f", "--file", action="append", default=[], metavar="PARAMS.yaml",
                   help="parameter file (repeatable, merged in order)")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override one parameter (value read as YAML: 3, 1.0e-3, true, [8,5,5,5])")
    r.add_argument("--from", dest="from_stage", default="01", metavar="NN", help="first stage")
    r.add_argument("--to", dest="to_stage", default="08", metavar="NN", help="last stage")
    r.add_argument("--parent", metavar="RUN", help="run whose earlier-stage artifacts are reused")
    r.add_argument("--outputs", metavar="DIR", help="where run directories go (default outputs/)")
    r.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")

    ls = sub.add_parser("list", help="show runs with their headline metrics")
    ls.add_argument("--outputs", metavar="DIR")

    c = sub.add_parser("compare", help="put runs side by side (writes a comparison report)")
    c.add_argument("runs", nargs="+", metavar="RUN")
    c.add_argument("--outputs", metavar="DIR")
    c.add_argument("--no-notebook", action="store_true", help="tables only, skip compare_runs")

    sw = sub.add_parser("sweep", help="run a grid of parameter variations from one stage")
    sw.add_argument("-f", "--file", required=True, metavar="SWEEP.yaml")
    sw.add_argument("--workers", type=int, help="parallel processes (overrides the file)")
    sw.add_argument("--outputs", metavar="DIR")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dc = dsub.add_parser("check", help="validate a dataset folder or file before a run")
    dc.add_argument("path")

    h = sub.add_parser("hailo", help="Hailo tools")
    hsub = h.add_subparsers(dest="hailo_command", required=True)
    hi = hsub.add_parser("import-hef", help="bring a HEF compiled elsewhere into a run")
    hi.add_argument("path")
    hi.add_argument("--run", required=True, metavar="RUN")
    hi.add_argument("--outputs", metavar="DIR")

    dr = sub.add_parser("doctor", help="check this machine for the Hailo stages and say what to fix")
    dr.add_argument("--run", metavar="RUN", help="check the DFC <-> HailoRT pairing and hw_arch of this run's HEF")
    dr.add_argument("--hef", metavar="PATH", help="a HEF built elsewhere")
    dr.add_argument("--outputs", metavar="DIR")
    dr.add_argument("--no-device", action="store_true", help="do not call hailortcli fw-control identify")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.outputs) if getattr(args, "outputs", None) else None
    try:
        if args.command == "run":
            return _cmd_run(args, root)
        if args.command == "list":
            from workbench.runs.listing import format_run_list
            print(format_run_list(root))
            return 0
        if args.command == "compare":
            from workbench.runs.compare import compare_runs
            out = compare_runs(args.runs, root=root, notebook=not args.no_notebook)
            print(f"comparison written: {out / 'index.html'}")
            return 0
        if args.command == "sweep":
            from workbench.runs.sweep import run_sweep
            out = run_sweep(Path(args.file), workers=args.workers, root=root)
            print(f"sweep finished: {out}")
            return 0
        if args.command == "data":
            from workbench.data.check import check_dataset
            print(check_dataset(args.path))
            return 0
        if args.command == "doctor":
            from workbench.hailo.doctor import doctor
            from workbench.runs import Run
            run = Run.open(args.run, root) if args.run else None
            return doctor(run=run, hef=Path(args.hef) if args.hef else None, device=not args.no_device)
        if args.command == "hailo":
            from workbench.hailo.hef_import import import_hef
            from workbench.runs import Run
            run = Run.open(args.run, root)
            dest = import_hef(Path(args.path), run.stage_dir("06"), run.run_id)
            print(f"imported {args.path} -> {dest}")
            return 0
    except StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except WorkbenchError as exc:  # every deliberate error carries its own fix: no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def _cmd_run(args, root: Optional[Path]) -> int:
    from workbench.runs.pipeline import run_pipeline
    params = load_params(args.file or ["params/default.yaml"], _parse_p(args.param))
    run_pipeline(params, from_stage=args.from_stage, to_stage=args.to_stage, parent=args.parent,
                 root=root, progress=not args.no_progress and sys.stderr.isatty())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
