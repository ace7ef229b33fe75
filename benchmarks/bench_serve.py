"""Throughput and latency of the inference service, over HTTP and in-process, on this CPU.

For one deploy bundle and backend (default ``ort-int8``, i.e. ``ort-int8-emulated``: npu_int8.onnx in
ONNX Runtime), every row reports windows/s and p50/p95/p99 request latency in ms:

  in-process  Predictor.predict (normalise -> NPU part -> host post-processor -> probabilities -> sets);
              its "server CPU" column is the benchmark process's CPU per call
  http-json   POST /infer with {"windows": ...} to `workbench serve` on 127.0.0.1 (a subprocess)
  http-npy    POST /infer with a .npy body

at batch 1 and batch 256, from 1 and 8 concurrent clients (threads, each with its own keep-alive
connection). ``p50 vs in-process`` is the HTTP cost as a ratio of p50 latencies; the server and client
CPU microseconds per request (from /proc) say where the time goes when the machine is shared. The clients run on the
same machine as the server, so on 2 cores they compete with it for CPU: the HTTP rows are a lower
bound for a client elsewhere.

Targets (issue 15, this 2-core machine, ort-int8): >= 2,000 windows/s at batch 1, >= 100,000 windows/s
batched, batch-1 p99 <= 5 ms.

    .venv/bin/python benchmarks/bench_serve.py [--bundle DIR | --run RUN] [--backend ort-int8] [--json out.json]

Without --bundle, the newest run under outputs/ with a stage-09 bundle is used (`make run` makes one).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"batch1_windows_per_s_min": 2000.0, "batched_windows_per_s_min": 100000.0, "batch1_p99_ms_max": 5.0}


def find_bundle(run: Optional[str]) -> Path:
    """A bundle: the stage-09 folder of ``run`` (or of the newest run that has one)."""
    outputs = Path(os.environ.get("WORKBENCH_OUTPUTS", ROOT / "outputs"))
    if run:
        p = Path(run)
        cands = [p if p.is_dir() else outputs / run]
    else:
        cands = (
            sorted((d for d in outputs.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
            if outputs.is_dir()
            else []
        )
    for d in cands:
        b = d / "artifacts" / "09_deploy"
        if (b / "deploy.json").is_file():
            return b
    raise SystemExit(
        f"no deploy bundle found under {outputs}/ (run `make run` first, or pass --bundle DIR "
        f"from `workbench deploy RUN`)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def percentiles(lat_s: np.ndarray) -> dict:
    ms = lat_s * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def drive(call: Callable[[int], None], clients: int, requests: int) -> tuple[float, np.ndarray]:
    """``requests`` calls split over ``clients`` threads; (wall seconds, per-request latencies)."""
    per = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    lat = [np.empty(n) for n in per]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            clock = time.perf_counter
            for j in range(per[i]):
                t0 = clock()
                call(i)
                lat[i][j] = clock() - t0
        except BaseException as exc:  # report, do not hang the barrier of others
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, np.concatenate(lat)


class HttpClients:
    """One keep-alive connection per client thread; a non-200 answer is an error, not a data point."""

    def __init__(self, port: int, clients: int):
        self.conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(clients)]

    reconnects = 0

    def post(self, i: int, body: bytes, ctype: str) -> None:
        c = self.conns[i]
        try:
            c.request("POST", "/infer", body=body, headers={"content-type": ctype})
            r = c.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # the server closed an idle keep-alive connection (uvicorn: after 5 s); reconnect once, as any
            # HTTP client does, and count it
            HttpClients.reconnects += 1
            c.close()
            c.request("POST", "/infer", body=body, headers={"content-type": ctype})
            r = c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")

    def close(self) -> None:
        for c in self.conns:
            c.close()


def start_server(bundle: Path, backend: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "serve", str(bundle), "--backend", backend, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stdout.read()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not answer /healthz within 60 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", metavar="DIR")
    ap.add_argument("--run", metavar="RUN", help="use this run's stage-09 bundle")
    ap.add_argument("--backend", default="ort-int8", choices=["ort-int8", "ort-fp32", "hailo8-device", "auto"])
    ap.add_argument("--requests", type=int, default=4000, help="requests per batch-1 row")
    ap.add_argument("--batched-requests", type=int, default=200, help="requests per batch-256 row")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()

    from workbench.deploy.bundle import load_bundle
    from workbench.deploy.predictor import Predictor

    bundle_dir = Path(args.bundle) if args.bundle else find_bundle(args.run)
    bundle = load_bundle(bundle_dir)
    predictor = Predictor(bundle, args.backend)
    rng = np.random.default_rng(0)
    mean = predictor.normalizer.mean[None]
    std = predictor.normalizer.std[None]
    # windows in physical units drawn around the training statistics (inference cost does not depend on values)
    X = (mean + std * rng.standard_normal((args.batch, *predictor.input_shape))).astype(np.float32)
    one = X[:1]

    def npy(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        return buf.getvalue()

    bodies = {
        ("json", 1): json.dumps({"windows": one[0].tolist()}).encode(),
        ("npy", 1): npy(one),
        ("json", args.batch): json.dumps({"windows": X.tolist()}).encode(),
        ("npy", args.batch): npy(X),
    }
    rows = []

    def record(
        mode: str,
        body: str,
        batch: int,
        clients: int,
        n_req: int,
        wall: float,
        lat: np.ndarray,
        server_cpu: float = float("nan"),
        client_cpu: float = float("nan"),
    ) -> None:
        rows.append(
            {
                "mode": mode,
                "body": body,
                "batch": batch,
                "clients": clients,
                "requests": n_req,
                "windows_per_s": n_req * batch / wall,
                **percentiles(lat),
                "backend": predictor.backend,
                "server_cpu_us_per_req": 1e6 * server_cpu / n_req,
                "client_cpu_us_per_req": 1e6 * client_cpu / n_req,
            }
        )
        r = rows[-1]
        print(
            f"  measured {mode:<11} batch {batch:>4} clients {clients}: {r['windows_per_s']:,.0f} windows/s, "
            f"p50 {r['p50_ms']:.3f} ms",
            file=sys.stderr,
            flush=True,
        )

    for batch, n_req in ((1, args.requests), (args.batch, args.batched_requests)):
        x = one if batch == 1 else X
        for _ in range(20):
            predictor.predict(x)
        for clients in (1, 8):
            c0 = time.process_time()
            wall, lat = drive(lambda i, x=x: predictor.predict(x), clients, n_req)
            record("in-process", "array", batch, clients, n_req, wall, lat, server_cpu=time.process_time() - c0)

    port = free_port()
    proc = start_server(bundle_dir, args.backend, port)
    try:
        for body_kind, batch, n_req in (
            ("json", 1, args.requests),
            ("npy", 1, args.requests),
            ("npy", args.batch, args.batched_requests),
            ("json", args.batch, max(10, args.batched_requests // 10)),
        ):
            body = bodies[(body_kind, batch)]
            ctype = "application/json" if body_kind == "json" else "application/octet-stream"
            for clients in (1, 8) if body_kind == "npy" or batch == 1 else (1,):  # JSON batches: see 1 client
                cl = HttpClients(port, clients)
                for _ in range(3):  # round robin: no connection idles past uvicorn's keep-alive
                    for i in range(clients):
                        cl.post(i, body, ctype)
                s0, c0 = process_cpu_s(proc.pid), time.process_time()
                wall, lat = drive(lambda i, cl=cl, body=body, ctype=ctype: cl.post(i, body, ctype), clients, n_req)
                s1, c1 = process_cpu_s(proc.pid), time.process_time()
                cl.close()
                record(
                    f"http-{body_kind}",
                    body_kind,
                    batch,
                    clients,
                    n_req,
                    wall,
                    lat,
                    server_cpu=s1 - s0,
                    client_cpu=c1 - c0,
                )
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    if HttpClients.reconnects:
        print(
            f"note: {HttpClients.reconnects} requests reconnected after the server closed an idle keep-alive "
            f"connection",
            file=sys.stderr,
        )
    ref = {(r["batch"], r["clients"]): r for r in rows if r["mode"] == "in-process"}
    for r in rows:
        base = ref[(r["batch"], r["clients"])]
        r["http_over_inprocess_p50"] = r["p50_ms"] / base["p50_ms"]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"bundle {bundle_dir} (run {bundle.run_id}), backend {predictor.backend}, input {predictor.input_shape}; "
        f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {load[0]:.1f} (other processes share these CPUs)"
    )
    head = (
        f"{'mode':<11} {'batch':>5} {'clients':>7} {'requests':>8} {'windows/s':>11} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'p99 ms':>8} {'p50 vs in-process':>18} {'server CPU us/req':>18} {'client CPU us/req':>18}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['mode']:<11} {r['batch']:>5} {r['clients']:>7} {r['requests']:>8} {r['windows_per_s']:>11,.0f} "
            f"{r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['http_over_inprocess_p50']:>17.2f}x "
            f"{r['server_cpu_us_per_req']:>18,.0f} {r['client_cpu_us_per_req']:>18,.0f}"
        )

    http1 = [r for r in rows if r["mode"].startswith("http") and r["batch"] == 1]
    httpb = [r for r in rows if r["mode"] == "http-npy" and r["batch"] > 1]
    best1 = max(http1, key=lambda r: r["windows_per_s"])
    bestb = max(httpb, key=lambda r: r["windows_per_s"])
    p99_1 = min(r["p99_ms"] for r in http1 if r["clients"] == 1)
    verdicts = [
        (
            "batch-1 windows/s over HTTP",
            best1["windows_per_s"],
            ">=",
            TARGETS["batch1_windows_per_s_min"],
            f"{best1['mode']}, {best1['clients']} clients",
        ),
        (
            "batched windows/s over HTTP",
            bestb["windows_per_s"],
            ">=",
            TARGETS["batched_windows_per_s_min"],
            f"npy batch {bestb['batch']}, {bestb['clients']} clients",
        ),
        ("batch-1 p99 ms over HTTP, 1 client", p99_1, "<=", TARGETS["batch1_p99_ms_max"], "best body format"),
    ]
    print(f"\ntargets ({predictor.backend}, this machine):")
    for name, value, op, target, where in verdicts:
        ok = value >= target if op == ">=" else value <= target
        print(f"  {name:<36} {value:>11,.1f} {op} {target:>9,.0f}  {'PASS' if ok else 'MISS'}  ({where})")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "targets": TARGETS, "bundle": str(bundle_dir), "run_id": bundle.run_id}, indent=1)
        )
    predictor.close()


if __name__ == "__main__":
    main()
