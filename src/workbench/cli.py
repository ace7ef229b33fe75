"""`python -m workbench ...`: run the pipeline, list and compare runs, sweep, check data, import a HEF."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, get_args

from workbench.config import SERVE_BACKENDS, ConformalMethod, load_params, parse_override
from workbench.errors import RunInterrupted, StageFailed, WorkbenchError
from workbench.runs.store import STAGES


def _parse_p(pairs: Optional[list[list[str]]]) -> dict:
    out = {}
    for name, value in pairs or []:
        out[name] = parse_override(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks into a new outputs/<run-id>/")
    r.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        metavar="PARAMS.yaml",
        help="parameter file (repeatable, merged in order; default: the --parent run's "
        "params.yaml, else params/default.yaml)",
    )
    r.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="override one parameter (value read as YAML: 3, 1.0e-3, true, [8,5,5,5])",
    )
    r.add_argument("--from", dest="from_stage", default="01", metavar="NN", help="first stage")
    r.add_argument("--to", dest="to_stage", default=None, metavar="NN", help="last stage (default: the last, 09)")
    r.add_argument("--parent", metavar="RUN", help="run whose earlier-stage artifacts are reused")
    r.add_argument("--outputs", metavar="DIR", help="where run directories go (default outputs/)")
    r.add_argument(
        "--no-progress",
        action="store_true",
        help="no per-cell progress (by default a live bar on a terminal, a line every few seconds elsewhere)",
    )
    r.add_argument(
        "--dry-run", action="store_true", help="print the resolved parameters and the stage plan, run nothing"
    )

    ch = sub.add_parser("child", help="make a child run for papermill and print its path (README)")
    ch.add_argument("parent", metavar="RUN", help="run id, outputs/<id> or path of the parent run")
    ch.add_argument("--stage", required=True, metavar="NN", help="the stage papermill will run")
    ch.add_argument("--outputs", metavar="DIR")

    ls = sub.add_parser("list", help="show runs with their headline metrics")
    ls.add_argument("--outputs", metavar="DIR")
    ls.add_argument(
        "--metrics", metavar="NAMES", help="comma-separated metric names to show, e.g. code_flip_rate,ece_after_ts"
    )

    c = sub.add_parser("compare", help="put runs side by side (writes a comparison report)")
    c.add_argument("runs", nargs="+", metavar="RUN")
    c.add_argument("--outputs", metavar="DIR")
    c.add_argument("--no-notebook", action="store_true", help="tables only, skip compare_runs")

    sw = sub.add_parser("sweep", help="run a grid of parameter variations from one stage")
    sw.add_argument("-f", "--file", required=True, metavar="SWEEP.yaml")
    sw.add_argument("--workers", type=int, help="parallel processes (overrides the file)")
    sw.add_argument("--outputs", metavar="DIR")
    sw.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local processes (default) or one Ray task per variation (shared filesystem)",
    )
    sw.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: a local instance)")

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

    dp = sub.add_parser("deploy", help="write a self-contained deploy bundle from a run (for `serve`)")
    dp.add_argument("run", metavar="RUN")
    dp.add_argument("--out", metavar="DIR", help="new bundle folder (default bundles/<run-id>-<hex>/)")
    dp.add_argument("--hef", metavar="PATH", help="a HEF built elsewhere instead of the run's model.hef")
    dp.add_argument(
        "--conformal-method",
        default="LAC marginal",
        choices=list(get_args(ConformalMethod)),
        help="which of stage 08's conformal predictors the service applies",
    )
    dp.add_argument("--outputs", metavar="DIR")

    sv = sub.add_parser("serve", help="serve a deploy bundle over HTTP (POST /infer, /healthz, /metrics)")
    sv.add_argument("bundle", metavar="BUNDLE")
    sv.add_argument(
        "--backend",
        default="auto",
        choices=["auto", *SERVE_BACKENDS],
        help="auto: hailo8-device when HailoRT finds a device and the bundle has a HEF, else ort-int8",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=9000)
    sv.add_argument("--max-windows", type=int, default=4096, help="most windows in one request")
    sv.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body in MiB")

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
        if args.command == "child":
            from workbench.runs.doors import reserve_child

            print(reserve_child(args.parent, args.stage, root).path)
            return 0
        if args.command == "list":
            from workbench.runs.listing import format_run_list

            if args.metrics:
                from workbench.runs.listing import format_metric_list

                print(format_metric_list([m.strip() for m in args.metrics.split(",") if m.strip()], root))
            else:
                print(format_run_list(root))
            return 0
        if args.command == "compare":
            from workbench.runs.compare import compare_runs

            out = compare_runs(args.runs, root=root, notebook=not args.no_notebook)
            from workbench.runs.compare import terminal_summary

            print(terminal_summary(out))
            print(f"comparison written: {out / 'index.html'}")
            return 0
        if args.command == "sweep":
            from workbench.runs.sweep import run_sweep

            out = run_sweep(
                Path(args.file), workers=args.workers, root=root, executor=args.executor, address=args.address
            )
            print(f"sweep finished: {out}")
            return 0
        if args.command == "data":
            from workbench.data.check import check_dataset

            print(check_dataset(args.path))
            return 0
        if args.command == "deploy":
            return _cmd_deploy(args, root)
        if args.command == "serve":
            return _cmd_serve(args)
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
    except RunInterrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130
    except WorkbenchError as exc:  # every deliberate error carries its own fix: no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def _cmd_run(args, root: Optional[Path]) -> int:
    from workbench.runs.pipeline import run_pipeline
    from workbench.runs.progress import progress_mode

    files = args.file or [_default_params_file(args.parent, root)]
    params = load_params(files, _parse_p(args.param))
    to_stage = args.to_stage or STAGES[-1][0]
    if args.dry_run:
        from workbench.runs.plan import format_plan

        print(format_plan(params, args.from_stage, to_stage, args.parent, root))
        return 0
    run = run_pipeline(
        params,
        from_stage=args.from_stage,
        to_stage=to_stage,
        parent=args.parent,
        root=root,
        progress=progress_mode(args.no_progress, sys.stderr),
    )
    from workbench.runs.plan import closing_table

    print(closing_table(run))
    return 0


def _default_params_file(parent: Optional[str], root: Optional[Path]) -> Path:
    """Without -f, a run with --parent starts from the parent's parameters (so the reused stages match
    them); any other run from params/default.yaml."""
    if parent:
        from workbench.runs import Run

        recorded = Run.open(parent, root).path / "params.yaml"
        if recorded.is_file():
            return recorded
    from workbench.runs.store import project_root

    return project_root() / "params" / "default.yaml"


def _cmd_deploy(args, root: Optional[Path]) -> int:
    import secrets

    from workbench.deploy.bundle import build_bundle, sources_from_run
    from workbench.errors import BundleError
    from workbench.runs import Run

    run = Run.open(args.run, root)
    out = Path(args.out) if args.out else Path("bundles") / f"{run.run_id}-{secrets.token_hex(2)}"
    resolved = out.expanduser().resolve()
    for parent in (resolved, *resolved.parents):
        if (parent / "manifest.json").is_file() and (parent / "artifacts").is_dir():
            raise BundleError(
                f"--out {out} lies inside run directory {parent}; runs are never rewritten. "
                f"Choose a folder outside it (default: bundles/)"
            )
    bundle = build_bundle(
        sources_from_run(run, Path(args.hef) if args.hef else None), out, conformal_method=args.conformal_method
    )
    print(f"bundle written: {bundle}\nserve it with: python -m workbench serve {bundle}")
    return 0


def _cmd_serve(args) -> int:
    from workbench.deploy.service import serve

    serve(
        args.bundle,
        backend=args.backend,
        host=args.host,
        port=args.port,
        max_windows=args.max_windows,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
