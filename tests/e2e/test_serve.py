"""The inference service for real: `workbench serve` in a subprocess on a free 127.0.0.1 port, a real HTTP
client, a bundle from a real (smoke) run. Answers must equal stage 07's predictions for the same windows
and backend; bad input gets a 4xx naming the expected shape and the service keeps serving; a bounded
concurrent load completes without errors and /metrics counts it; a tampered bundle never starts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from support.serving import Served
from workbench.data.windowset import WindowSet
from workbench.graph.host import LOGIT_ROW_ULP_TOL, row_scaled_ulp

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MAX_WINDOWS = 64
MAX_BODY_MB = 1.0


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


@pytest.fixture(scope="module")
def run(smoke_run):
    return smoke_run


@pytest.fixture(scope="module")
def bundle_dir(run) -> Path:
    return run.artifact("deploy_manifest").parent


@pytest.fixture(scope="module")
def server(bundle_dir):
    s = Served(
        bundle_dir, "--backend", "ort-int8", "--max-windows", str(MAX_WINDOWS), "--max-body-mb", str(MAX_BODY_MB)
    ).wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stage07(run):
    with np.load(run.artifact("predictions_ort-int8-emulated"), allow_pickle=False) as z:
        ref = {k: z[k] for k in z.files}
    ws, _ = WindowSet.load(run.artifact("windows"))
    return ref, ws


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics").text
    want = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            got = head[len(name) :]
            if not labels or _labels(got) == _labels(want):
                return float(value)
    return 0.0


def _labels(s: str) -> dict:
    s = s.strip("{}")
    return dict(p.split("=", 1) for p in s.split(",") if p) if s else {}


def test_healthz_names_backend_run_and_model(server, bundle_dir, run):
    h = httpx.get(server.url + "/healthz").json()
    assert h["backend"] == "ort-int8-emulated" and h["run_id"] == run.run_id
    assert h["model_file"] == "npu_int8.onnx"
    assert h["model_sha256"] == hashlib.sha256((bundle_dir / "npu_int8.onnx").read_bytes()).hexdigest()
    assert h["hef_sha256"] is None  # the smoke run has no HEF
    assert h["uptime_s"] > 0 and h["input_shape"] == [9, 2, 100]


def test_npy_batches_equal_stage07(server, stage07):
    """Every test window stage 07 evaluated, in .npy batches: the same integer levels and code indices
    (the code index recomputed here from stage 07's levels), logits within the host post-processor's
    tolerance, probabilities softmax(logits / T)."""
    from scipy.special import softmax

    ref, ws = stage07
    idx = ref["index"]
    T = httpx.get(server.url + "/healthz").json()["temperature"]
    got = []
    for i in range(0, len(idx), MAX_WINDOWS):
        r = httpx.post(
            server.url + "/infer",
            content=npy(ws.X[idx[i : i + MAX_WINDOWS]]),
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["backend"] == "ort-int8-emulated"
        got += body["predictions"]
    levels = np.array([p["fsq_levels"] for p in got], dtype=np.float32)
    logits = np.array([p["logits"] for p in got], dtype=np.float32)
    assert np.array_equal(levels, ref["levels"])  # integer levels (JSON has no -0.0: compare values)
    assert row_scaled_ulp(logits, ref["logits"]).max() <= LOGIT_ROW_ULP_TOL
    assert [p["class_index"] for p in got] == ref["logits"].argmax(1).tolist()
    probs = np.array([p["probabilities"] for p in got])
    expected = softmax(ref["logits"].astype(np.float64) / T, axis=1)
    np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-12)
    L = np.array([8, 6, 5, 5, 4])
    basis = np.cumprod(np.r_[1, L[:-1]])
    assert [p["code_index"] for p in got] == ((ref["levels"].astype(np.int64) + L // 2) @ basis).tolist()


def test_json_one_window_equals_npy(server, stage07, bundle_dir):
    _, ws = stage07
    x = ws.X[3]
    a = httpx.post(server.url + "/infer", json={"windows": x.tolist()}).json()
    b = httpx.post(
        server.url + "/infer", content=npy(x[None]), headers={"content-type": "application/octet-stream"}
    ).json()
    assert a["n"] == b["n"] == 1
    assert a["predictions"] == b["predictions"]
    p = a["predictions"][0]
    assert set(p) == {"label", "class_index", "probabilities", "fsq_levels", "code_index", "conformal_set", "logits"}
    assert p["label"] == a["labels"][p["class_index"]]
    # the LAC set at the bundle's threshold, {y : 1 - p_y <= q}, recomputed from the returned probabilities
    conf = json.loads((bundle_dir / "deploy.json").read_text())["backends"]["ort-int8-emulated"]["conformal"]
    assert a["conformal"] == {"method": "LAC marginal", "alpha": conf["alpha"]}
    q = conf["thresholds"][0]
    assert p["conformal_set"] == [lab for lab, pk in zip(a["labels"], p["probabilities"]) if 1 - pk <= q]


def _bad_requests():
    good = np.zeros((2, 9, 2, 100), np.float32)
    nan = good.copy()
    nan[1, 3, 0, 7] = np.nan
    inf = good.copy()
    inf[0, 0, 0, 0] = np.inf
    big64 = np.full((1, 9, 2, 100), 1e300)  # finite in float64, inf in float32
    return [
        ("json wrong shape", json.dumps({"windows": [[1.0, 2.0], [3.0, 4.0]]}), "application/json", 422, "shape"),
        (
            "json transposed window",
            json.dumps({"windows": np.zeros((100, 2, 9)).tolist()}),
            "application/json",
            422,
            "shape",
        ),
        ("json ragged", json.dumps({"windows": [[1.0], [1.0, 2.0]]}), "application/json", 422, "shape"),
        ("json strings", json.dumps({"windows": [["a"] * 100] * 2}), "application/json", 422, "dtype"),
        ("json bools", json.dumps({"windows": np.zeros((9, 2, 100), bool).tolist()}), "application/json", 422, "dtype"),
        ("json null", json.dumps({"windows": None}), "application/json", 422, "dtype"),
        ("json no windows key", json.dumps({"window": []}), "application/json", 400, "bad_json"),
        ("json not an object", json.dumps([1, 2]), "application/json", 400, "bad_json"),
        ("json NaN literal", '{"windows": [NaN]}', "application/json", 400, "bad_json"),
        ("json broken", '{"windows": [1, 2', "application/json", 400, "bad_json"),
        ("json empty list", json.dumps({"windows": []}), "application/json", 422, "shape"),
        ("npy NaN", npy(nan), "application/octet-stream", 422, "not_finite"),
        ("npy inf", npy(inf), "application/octet-stream", 422, "not_finite"),
        ("npy beyond float32", npy(big64), "application/octet-stream", 422, "not_finite"),
        ("npy empty batch", npy(np.zeros((0, 9, 2, 100), np.float32)), "application/octet-stream", 422, "empty"),
        ("npy wrong shape", npy(np.zeros((2, 9, 100), np.float32)), "application/octet-stream", 422, "shape"),
        ("npy complex", npy(good.astype(np.complex64)), "application/octet-stream", 422, "dtype"),
        ("npy strings", npy(np.array(["a", "b"])), "application/octet-stream", 422, "dtype"),
        ("npy pickled objects", b"\x93NUMPY" + b"junk", "application/octet-stream", 400, "bad_npy"),
        (
            "npy too many windows",
            npy(np.zeros((MAX_WINDOWS + 1, 9, 2, 100), np.float32)),
            "application/octet-stream",
            413,
            "too_many",
        ),
        (
            "body too large",
            npy(np.zeros((300, 9, 2, 100), np.float32)),
            "application/octet-stream",
            413,
            "body_too_large",
        ),
        ("empty body", b"", "application/json", 422, "empty"),
        ("form content type", "windows=1", "application/x-www-form-urlencoded", 415, "content_type"),
        ("no content type", npy(good), None, 415, "content_type"),
    ]


@pytest.mark.parametrize("name,body,ctype,status,kind", _bad_requests(), ids=[b[0] for b in _bad_requests()])
def test_bad_input_is_a_4xx_naming_the_shape(server, name, body, ctype, status, kind):
    before = metric(server.url, "edgeinfer_errors_total", kind=kind)
    headers = {"content-type": ctype} if ctype else {}
    r = httpx.post(server.url + "/infer", content=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] == kind
    assert "(9, 2, 100)" in err["expected"] and "(N, 9, 2, 100)" in err["expected"]
    assert metric(server.url, "edgeinfer_errors_total", kind=kind) == before + 1
    ok = httpx.post(server.url + "/infer", json={"windows": np.zeros((9, 2, 100)).tolist()})  # still serving
    assert ok.status_code == 200


def test_pickled_npy_is_refused_not_loaded(server, tmp_path):
    obj = np.array([{"x": 1}], dtype=object)
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)
    r = httpx.post(server.url + "/infer", content=buf.getvalue(), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 400 and r.json()["error"] == "bad_npy"


def test_concurrent_load_without_errors_and_counted(server, stage07):
    """2,000 requests from 8 clients (threads, keep-alive connections), bounded in time."""
    _, ws = stage07
    bodies = [npy(ws.X[i : i + 1 + i % 3]) for i in range(16)]  # batches of 1-3 windows
    sent = {"n": 0, "windows": 0}
    lock = threading.Lock()
    errors: list[str] = []
    before = metric(server.url, "edgeinfer_requests_total", endpoint="/infer", status="200")
    before_w = metric(server.url, "edgeinfer_windows_total", backend="ort-int8-emulated")
    deadline = time.time() + 240

    def client(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for j in range(250):
                if time.time() > deadline:
                    errors.append("deadline")
                    return
                body = bodies[(k * 250 + j) % len(bodies)]
                r = c.post("/infer", content=body, headers={"content-type": "application/octet-stream"})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
                    continue
                with lock:
                    sent["n"] += 1
                    sent["windows"] += r.json()["n"]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sent["n"] == 2000
    assert metric(server.url, "edgeinfer_requests_total", endpoint="/infer", status="200") == before + 2000
    assert metric(server.url, "edgeinfer_windows_total", backend="ort-int8-emulated") == before_w + sent["windows"]
    text = httpx.get(server.url + "/metrics").text
    for stage in ("normalise", "npu", "host", "total"):
        assert f'edgeinfer_latency_seconds_count{{backend="ort-int8-emulated",stage="{stage}"}}' in text


def test_tampered_bundle_refused_at_start(bundle_dir, tmp_path):
    bad = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bad)
    data = bytearray((bad / "npu_int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / "npu_int8.onnx").write_bytes(bytes(data))
    s = Served(bad)
    try:
        code = s.proc.wait(timeout=60)
    finally:
        s.stop()
    err = s.proc.stderr.read()
    assert code == 2
    assert "npu_int8.onnx" in err and "sha256" in err and "refusing" in err
    with pytest.raises(httpx.TransportError):
        httpx.get(s.url + "/healthz", timeout=1)


def test_serving_imports_no_torch_papermill_or_training_stack(bundle_dir):
    """Load the bundle, serve it with uvicorn, answer a request: torch and papermill (absent on the Pi)
    never load, and neither do onnx, pandas or scipy (not in the bundle's requirements.txt)."""
    script = f"""
import json, sys, threading, time, urllib.request, socket
import numpy as np, uvicorn
from workbench.deploy.bundle import load_bundle
from workbench.deploy.predictor import Predictor
from workbench.deploy.service import create_app
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
srv = uvicorn.Server(uvicorn.Config(create_app(Predictor(load_bundle({str(bundle_dir)!r}), "auto")),
                                    host="127.0.0.1", port=port, log_level="warning"))
t = threading.Thread(target=srv.run); t.start()
while not srv.started: time.sleep(0.05)
body = json.dumps({{"windows": np.zeros((9, 2, 100)).tolist()}}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{{port}}/infer", data=body,
                             headers={{"content-type": "application/json"}})
status = urllib.request.urlopen(req).status
srv.should_exit = True; t.join()
heavy = ("torch", "papermill", "onnx", "pandas", "scipy", "matplotlib")
print(json.dumps({{"status": status, "loaded": [m for m in heavy if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {"status": 200, "loaded": []}


def test_fake_hailo_device_served_like_stage07(smoke_run_fake_hailo):
    """With HailoRT present and a device found (the fakes in tests/fakes compute the NPU part with ONNX
    Runtime and quantize it to the HEF's output grid), `auto` serves hailo8-device from the bundle's
    model.hef, and its answers equal stage 07's hailo8-device predictions."""
    run = smoke_run_fake_hailo
    bundle = run.artifact("deploy_manifest").parent
    assert (bundle / "model.hef").is_file()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests" / "fakes"), env.get("PYTHONPATH")]))
    s = Served(bundle, "--backend", "auto", env=env).wait_ready()
    try:
        h = httpx.get(s.url + "/healthz").json()
        assert h["backend"] == "hailo8-device"
        assert h["hef_sha256"] == hashlib.sha256((bundle / "model.hef").read_bytes()).hexdigest()
        with np.load(run.artifact("predictions_hailo8-device"), allow_pickle=False) as z:
            idx, levels = z["index"], z["levels"]
        ws, _ = WindowSet.load(run.artifact("windows"))
        r = httpx.post(
            s.url + "/infer", content=npy(ws.X[idx]), headers={"content-type": "application/octet-stream"}, timeout=60
        )
        assert r.status_code == 200, r.text
        got = np.array([p["fsq_levels"] for p in r.json()["predictions"]], dtype=np.float32)
        assert np.array_equal(got, levels)
    finally:
        s.stop()
