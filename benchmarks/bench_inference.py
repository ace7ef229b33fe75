"""Batch-1 inference latency on this CPU, side by side, for the paths a window can take.

Rows (every number tagged with the backend that produced it):
  torch-fp32   PyTorch eager, full model
  ort-fp32     ONNX Runtime, full model.onnx
  ort-fp32 + numpy-fp32   ONNX Runtime npu.onnx, then the numpy HostPostprocessor (the deployed split)
  numpy-fp32   HostPostprocessor alone (batch 1), and batched throughput

The model is built from the default Params architecture (9 channels x 2 sites x 100 samples, encoder
[32, 64, 64], FSQ [8, 6, 5, 5, 4], head 64) with random weights and randomised BatchNorm statistics:
latency does not depend on training. Both runtimes use one thread (intra_op_num_threads=1,
torch.set_num_threads(1)), which is fastest for a model this small and leaves the other core free.

    .venv/bin/python benchmarks/bench_inference.py [--iterations 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS = {"ort_speedup_min": 5.0, "host_p50_us_max": 15.0, "host_batched_per_s_min": 1.0e6}


def _time_calls(fn, iterations: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(iterations, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(iterations):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out / 1e3  # microseconds


def build_model(seed: int = 0):
    import torch

    from workbench.config import Params
    from workbench.model.network import FSQClassifier, ModelConfig

    p = Params()
    torch.manual_seed(seed)
    cfg = ModelConfig.from_params(p, in_channels=p.synthetic_channels, sites=p.synthetic_sites, num_classes=6)
    model = FSQClassifier(cfg)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return model.eval(), cfg, p


def run(iterations: int, warmup: int, batch: int, cut: str) -> dict:
    import onnxruntime as ort
    import torch

    from workbench.graph.export import export_onnx, ort_session
    from workbench.graph.host import HostPostprocessor
    from workbench.graph.split import split_model

    torch.set_num_threads(1)
    model, cfg, params = build_model()
    shape = (1, cfg.in_channels, cfg.sites, cfg.window)
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    xt = torch.from_numpy(x)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        static = export_onnx(model, d / "model.onnx", shape, opset=params.opset)
        dynamic = export_onnx(model, d / "model_dynamic.onnx", shape, opset=params.opset, dynamic_batch=True)
        info = split_model(static, dynamic, d / "split", cut=cut, fsq_levels=cfg.fsq_levels)
        full = ort_session(static, threads=1)
        npu = ort_session(d / "split" / "npu.onnx", threads=1)
        post = HostPostprocessor.from_files(d / "split" / "split.json", d / "split" / "host_weights.npz")

    in_name, npu_out_name = info["npu_input_name"], info["npu_output_tensor"]
    feed = {in_name: x}

    def torch_call():
        with torch.inference_mode():
            return model(xt)

    def ort_full():
        return full.run(["logits"], feed)

    def ort_split():
        return post(npu.run([npu_out_name], feed)[0])

    mid = npu.run([npu_out_name], feed)[0]

    def host_only():
        return post(mid)

    # the paths agree before they are timed
    ref = torch_call().numpy()
    np.testing.assert_allclose(ort_full()[0], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ort_split()[1], ref, rtol=1e-4, atol=1e-5)

    rows = []
    for name, backend, fn in [
        ("PyTorch eager, full model", "torch-fp32", torch_call),
        ("ONNX Runtime, full model", "ort-fp32", ort_full),
        ("ONNX Runtime NPU part + numpy host", "ort-fp32 + numpy-fp32", ort_split),
        ("numpy host post-processing alone", "numpy-fp32", host_only),
    ]:
        t = _time_calls(fn, iterations, warmup)
        rows.append(
            {
                "path": name,
                "backend": backend,
                "batch": 1,
                "p50_us": float(np.percentile(t, 50)),
                "p95_us": float(np.percentile(t, 95)),
                "mean_us": float(t.mean()),
                "iterations": iterations,
            }
        )

    noise = rng.normal(size=(batch, mid.shape[1])).astype(np.float32)
    big = np.ascontiguousarray(np.resize(mid, (batch, mid.shape[1])) + noise)
    reps = max(5, int(2e6 // batch))
    t = _time_calls(lambda: post(big), reps, 3)
    per_s = batch / (np.median(t) / 1e6)
    rows.append(
        {
            "path": f"numpy host post-processing, batch {batch}",
            "backend": "numpy-fp32",
            "batch": batch,
            "p50_us": float(np.percentile(t, 50)),
            "p95_us": float(np.percentile(t, 95)),
            "mean_us": float(t.mean()),
            "iterations": reps,
            "windows_per_s": float(per_s),
        }
    )

    by = {r["path"]: r for r in rows}
    speedup = by["PyTorch eager, full model"]["p50_us"] / by["ONNX Runtime, full model"]["p50_us"]
    host_p50 = by["numpy host post-processing alone"]["p50_us"]
    checks = {
        "ort_speedup_vs_torch_p50": float(speedup),
        "ort_speedup_ok": bool(speedup >= TARGETS["ort_speedup_min"]),
        "host_p50_ok": bool(host_p50 < TARGETS["host_p50_us_max"]),
        "host_batched_ok": bool(per_s > TARGETS["host_batched_per_s_min"]),
    }
    return {
        "rows": rows,
        "checks": checks,
        "targets": TARGETS,
        "cut": cut,
        "model": {
            "config": cfg.to_dict(),
            "weights": "random init (seed 0), randomised BatchNorm statistics",
            "input_shape": list(shape),
        },
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "threads": 1,
        },
    }


def format_table(res: dict) -> str:
    lines = [f"{'path':<44} {'backend':<22} {'batch':>6} {'p50 us':>9} {'p95 us':>9} {'windows/s':>12}"]
    for r in res["rows"]:
        wps = r.get("windows_per_s", 1e6 / r["p50_us"] * r["batch"])
        lines.append(
            f"{r['path']:<44} {r['backend']:<22} {r['batch']:>6} {r['p50_us']:>9.1f} {r['p95_us']:>9.1f} {wps:>12,.0f}"
        )
    c = res["checks"]
    lines.append(
        f"ORT vs torch eager at batch 1 (p50): {c['ort_speedup_vs_torch_p50']:.1f}x "
        f"(target >= {TARGETS['ort_speedup_min']:.0f}x: {'ok' if c['ort_speedup_ok'] else 'MISSED'}); "
        f"host p50 < {TARGETS['host_p50_us_max']:.0f} us: {'ok' if c['host_p50_ok'] else 'MISSED'}; "
        f"host batched > 1M/s: {'ok' if c['host_batched_ok'] else 'MISSED'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8192, help="batch size for the throughput row")
    ap.add_argument("--cut", choices=["after_bound", "after_projection"], default="after_bound")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(argv)
    res = run(a.iterations, a.warmup, a.batch, a.cut)
    print(
        f"model: {res['model']['weights']}; input {res['model']['input_shape']}; cut {res['cut']}; "
        f"1 thread; {res['machine']['processor']}"
    )
    print(format_table(res))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
