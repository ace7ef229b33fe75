"""Probe one training configuration against the INT8 remedy ladder without a run directory.

    python benchmarks/int8_remedy_probe.py --seed 1 --set fsq_margin_weight 0.3 --set fsq_bound_noise 0.1 \
        [--rungs int8,input16,input16_tail16] [--attribution]

Trains on HAPT (params/hapt.yaml plus the overrides), exports and splits the model like stages 02/04,
builds the stage-05 quantization calibration set (stratified, 1024 training windows) and prints the
ladder on validation and test windows (`ort-int8-emulated` vs `ort-fp32`), the FP32 margin quantiles on
validation windows and, with --attribution, the flip attribution. The exploratory rows of docs/QUANT.md
("what was tried") come from this script; the headline table comes from the sweep
(params/sweeps/hapt_int8.yaml).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from workbench.config import load_params
from workbench.data.prepare import prepare_data
from workbench.graph import export as gx
from workbench.graph import split as gs
from workbench.model.fit import fit_model
from workbench.quant import remedies as R
from workbench.quant.calibset import build_calibset
from workbench.quant.compare import cut_model_from_split
from workbench.quant.emulate import run_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/hapt.yaml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--rungs", default=",".join(R.RUNG_NAMES))
    ap.add_argument("--attribution", action="store_true")
    a = ap.parse_args()
    params = load_params([a.params], {"seed": a.seed, **{k: yaml.safe_load(v) for k, v in a.set}})
    out = Path(tempfile.mkdtemp(prefix="int8-probe-"))
    t0 = time.perf_counter()
    data = prepare_data(params)
    model, config, hist = fit_model(params, data, progress=False)
    print(f"trained in {time.perf_counter() - t0:.0f} s; best val accuracy {hist['best_val_acc']:.4f} (torch-fp32)")
    shape = (1, config.in_channels, config.sites, config.window)
    gx.export_onnx(model, out / "model.onnx", shape)
    gx.export_onnx(model, out / "model_dynamic.onnx", shape, dynamic_batch=True)
    gs.split_model(
        out / "model.onnx", out / "model_dynamic.onnx", out / "split", cut=params.cut, fsq_levels=config.fsq_levels
    )
    cm = cut_model_from_split(out / "split")
    ws, norm = data.windows, data.normalizer
    calib = build_calibset(
        ws.X,
        ws.y,
        ws.subject,
        data.split_of_window,
        norm.mean,
        norm.std,
        strategy=params.quant_calib_strategy,
        size=params.quant_calib_size,
        seed=params.seed,
    )
    splits = {
        s: (norm.apply(ws.X[getattr(data.splits, s)]).astype(np.float32), ws.y[getattr(data.splits, s)])
        for s in ("val", "test")
    }
    table, _ = R.run_ladder(
        cm.npu_model,
        calib.x_nchw,
        splits,
        cm.postprocess,
        cm.bound_of,
        config.fsq_levels,
        out / "ladder",
        rungs=[R.rung(n) for n in a.rungs.split(",")],
        clip_percentile=params.quant_clip_percentile,
    )
    pd.set_option("display.width", 200)
    print(
        table[
            [
                "remedy",
                "split",
                "code_flip_rate",
                "prediction_agreement",
                "accuracy_fp32",
                "accuracy_int8",
                "sqnr_db",
                "backend",
            ]
        ]
        .round(4)
        .to_string(index=False)
    )
    b = cm.bound_of(run_onnx(cm.npu_model, splits["val"][0]))
    m = 0.5 - np.abs(b - np.rint(b))
    print(
        f"FP32 margins on validation (ort-fp32): 1% quantile {np.quantile(m, 0.01):.4f}, 5% {np.quantile(m, 0.05):.4f}"
    )
    if a.attribution:
        print(
            R.flip_attribution(cm.npu_model, calib.x_nchw, splits["val"][0], cm.postprocess, out / "attribution")
            .round(4)
            .to_string(index=False)
        )


if __name__ == "__main__":
    main()
