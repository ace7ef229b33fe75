"""Latency statistics on a fake clock: the percentiles and the split into core / host time are
computed right. No assertion depends on real timing."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from workbench.evaluate.latency import (
    LatencyStats,
    measure_backend,
    percentiles_ms,
    summarize,
    target_table,
    time_split_pipeline,
)


class FakeClock:
    """Time only moves when the fake model says so."""

    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _fake_pipeline(clock: FakeClock, core_s: list[float], host_s: float):
    calls = {"core": 0, "host": 0, "shapes": []}

    def core(x):
        clock.t += core_s[calls["core"] % len(core_s)]
        calls["core"] += 1
        calls["shapes"].append(x.shape)
        return x

    def host(mid):
        clock.t += host_s
        calls["host"] += 1
        return mid

    return core, host, calls


def test_percentiles_match_statistics_inclusive_quantiles():
    rng = np.random.default_rng(0)
    samples = list(rng.exponential(0.004, 137))
    got = percentiles_ms(samples)
    cuts = statistics.quantiles([s * 1e3 for s in samples], n=100, method="inclusive")
    for q in (50, 95, 99):
        assert got[q] == pytest.approx(cuts[q - 1], rel=1e-12)


def test_percentiles_reject_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        percentiles_ms([])
    with pytest.raises(ValueError, match="finite and >= 0"):
        percentiles_ms([0.1, -0.2])


def test_split_pipeline_on_fake_clock_warmup_untimed_and_batch_one():
    clock = FakeClock()
    core_s = [0.001 * (i + 1) for i in range(10)]  # 1..10 ms, cycled
    core, host, calls = _fake_pipeline(clock, core_s, host_s=0.0005)
    x = np.zeros((4, 3, 2, 5), dtype=np.float32)
    e2e, core_t = time_split_pipeline(core, host, x, iterations=20, warmup=3, clock=clock)
    assert calls["core"] == 23 and calls["host"] == 23
    assert set(calls["shapes"]) == {(1, 3, 2, 5)}
    # timed iterations start after 3 warm-up calls in the core-time cycle
    expected_core = [core_s[(3 + i) % 10] for i in range(20)]
    assert core_t == pytest.approx(expected_core)
    assert e2e == pytest.approx([c + 0.0005 for c in expected_core])


def test_summarize_percentiles_throughput_and_host_time():
    e2e = [0.002, 0.004, 0.006, 0.008]
    core = [0.001, 0.003, 0.005, 0.007]
    s = summarize("ort-fp32", "CPU (onnxruntime FP32)", e2e, core, warmup=2)
    assert s.backend == "ort-fp32" and s.iterations == 4 and s.warmup == 2
    # linear interpolation: p50 of 2,4,6,8 ms = 5; p95 = 6 + 0.85*2 = 7.7; p99 = 6 + 0.97*2 = 7.94
    assert s.e2e_p50_ms == pytest.approx(5.0)
    assert s.e2e_p95_ms == pytest.approx(7.7)
    assert s.e2e_p99_ms == pytest.approx(7.94)
    assert s.core_p50_ms == pytest.approx(4.0)
    assert s.host_p50_ms == pytest.approx(1.0)
    assert s.throughput_fps == pytest.approx(4 / 0.020)
    with pytest.raises(ValueError, match="same iterations"):
        summarize("ort-fp32", "CPU", e2e, core[:3])


class _FakeBackend:
    name = "ort-int8-emulated"
    hardware = "CPU (onnxruntime INT8 QDQ emulation)"
    timing_note = "CPU INT8 emulation: not NPU latency"

    def __init__(self, clock):
        self.clock = clock

    def npu_output(self, x, index=None):
        self.clock.t += 0.002
        return x

    def host(self, mid):
        self.clock.t += 0.001
        return mid, mid


class _Replay(_FakeBackend):
    name = "hailo-emulator"
    hardware = "CPU (Hailo DFC emulator, SDK_QUANTIZED)"
    timing_meaningful = False
    timing_note = "latency not meaningful for the DFC emulator"


def test_measure_backend_and_emulator_not_reported():
    clock = FakeClock()
    x = np.zeros((3, 2, 2, 4), dtype=np.float32)
    s = measure_backend(_FakeBackend(clock), x, iterations=7, warmup=1, clock=clock)
    assert s.e2e_p95_ms == pytest.approx(3.0) and s.core_p95_ms == pytest.approx(2.0)
    assert "not NPU" in s.note
    r = measure_backend(_Replay(clock), x, iterations=7, warmup=1, clock=clock)
    assert not r.measured and r.e2e_p50_ms is None and "emulator" in r.note
    assert r.backend == "hailo-emulator"


def test_target_table_pass_fail_labels_backend_and_hardware():
    cpu = summarize("ort-fp32", "CPU (onnxruntime FP32)", [0.010, 0.020, 0.200], [0.005, 0.016, 0.009])
    emu = LatencyStats(backend="hailo-emulator", hardware="CPU (Hailo DFC emulator)", note="not meaningful")
    dev = summarize("hailo8-device", "Hailo-8 NPU (HailoRT)", [0.003] * 5, [0.002] * 5)
    cli = {"measure_latency": {"hw_latency_ms": 0.8, "overall_latency_ms": 1.3, "fps": 900.0}, "benchmark": None}
    t = target_table([cpu, emu, dev], target_core_ms=15.0, target_e2e_p95_ms=100.0, device_cli=cli)
    assert set(t["backend"]) == {"ort-fp32", "hailo-emulator", "hailo8-device"}
    cpu_rows = t[t.backend == "ort-fp32"].set_index("target")
    # core p95 of 5, 16, 9 ms = 9 + 0.9*7 = 15.3 > 15 -> fail; e2e p95 = 20 + 0.9*180 = 182 -> fail
    assert cpu_rows.loc["core inference", "measured_ms"] == pytest.approx(15.3)
    assert cpu_rows["passed"].tolist() == [False, False]
    assert "not NPU latency" in cpu_rows.loc["core inference", "note"]
    emu_rows = t[t.backend == "hailo-emulator"]
    assert emu_rows["passed"].isna().all() and emu_rows["measured_ms"].isna().all()
    dev_rows = t[t.backend == "hailo8-device"]
    assert len(dev_rows) == 4  # two from infer(), two from hailortcli
    cli_core = dev_rows[dev_rows.statistic.str.contains("hailortcli run") & (dev_rows.target == "core inference")]
    assert cli_core["measured_ms"].tolist() == [0.8] and cli_core["passed"].tolist() == [True]
    # hailortcli's overall latency is a mean: shown, never judged against the p95 target
    mean_row = dev_rows[dev_rows.statistic.str.startswith("mean")]
    assert mean_row["measured_ms"].tolist() == [1.3] and mean_row["passed"].isna().all()


def test_device_cli_without_hailortcli_reports_why(monkeypatch):
    import workbench.hailo.cli_tools as cli_tools
    from workbench.evaluate.latency import device_cli_measurements, device_cli_table

    monkeypatch.setattr(cli_tools, "hailortcli_available", lambda: (False, "hailortcli not on PATH"))
    cli = device_cli_measurements("model.hef", 2)
    assert cli["measure_latency"] is None and cli["benchmark"] is None
    t = device_cli_table(cli)
    assert t["backend"].tolist() == ["hailo8-device"] and t["value"].isna().all()
    assert t["note"].tolist() == ["hailortcli not on PATH"]


def test_device_cli_parsed_numbers_become_tagged_rows(monkeypatch):
    import workbench.hailo.cli_tools as cli_tools
    from workbench.evaluate.latency import device_cli_measurements, device_cli_table

    seen = []
    monkeypatch.setattr(cli_tools, "hailortcli_available", lambda: (True, "HailoRT-CLI version 4.20.0"))

    def fake_run(hef, seconds, multi_process_service=False):
        seen.append(("run", hef, seconds))
        assert multi_process_service is False
        return {
            "fps": 1500.0,
            "hw_latency_ms": 0.41,
            "overall_latency_ms": 0.9,
            "power_avg_w": None,
            "backend": "hailo8-device",
            "command": "hailortcli run ...",
            "power_error": "no power sensor",
            "raw": "FPS: 1500",
        }

    def fake_bench(hef, seconds, multi_process_service=False):
        raise RuntimeError("hailortcli benchmark exited 1")

    monkeypatch.setattr(cli_tools, "run_measure_latency", fake_run)
    monkeypatch.setattr(cli_tools, "benchmark", fake_bench)
    cli = device_cli_measurements("m.hef", 3)
    assert seen == [("run", "m.hef", 3)] and "raw" not in cli["measure_latency"]
    assert "exited 1" in cli["errors"]["benchmark"]
    t = device_cli_table(cli)
    assert set(t["backend"]) == {"hailo8-device"}
    vals = t.dropna(subset=["value"]).set_index("quantity")
    assert vals.loc["hw_latency_ms", "value"] == 0.41 and vals.loc["hw_latency_ms", "unit"] == "ms"
    assert vals.loc["fps", "unit"] == "fps"
    notes = " ".join(t["note"])
    assert "not measurable: no power sensor" in notes and "exited 1" in notes
    targets = target_table([], 15.0, 100.0, device_cli=cli)
    assert targets["measured_ms"].tolist() == [0.41, 0.9]
    assert targets["passed"].tolist()[0] is True and targets["passed"].tolist()[1] is None
