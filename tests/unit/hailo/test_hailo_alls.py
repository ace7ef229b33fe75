"""Model script generation and the DFC log / hailortcli parsers (pure text, no Hailo packages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.hailo.alls import make_model_script, script_calibset_size, script_layers
from workbench.hailo.cli_tools import parse_benchmark_output, parse_run_output
from workbench.hailo.dfc_log import parse_dfc_log

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "hailo"


def _base(**kw):
    args = dict(
        calibset_size=1024,
        calib_batch_size=8,
        optimization_level=2,
        compression_level=0,
        output_layer=None,
        extra_16bit_layers=[],
        performance_max=False,
        input_is_normalized=True,
    )
    args.update(kw)
    return make_model_script(**args)


def test_default_script_lines_exact():
    lines = [ln for ln in _base().splitlines() if not ln.startswith("#")]
    assert lines == [
        "model_optimization_config(calibration, batch_size=8, calibset_size=1024)",
        "model_optimization_flavor(optimization_level=2, compression_level=0)",
    ]
    assert "normalization" not in _base().replace("already normalised (no normalization layer)", "")


def test_16bit_output_extra_layers_and_performance():
    s = _base(
        calibset_size=300,
        calib_batch_size=4,
        optimization_level=0,
        compression_level=1,
        output_layer="output_layer1",
        extra_16bit_layers=["fc1", "output_layer1"],
        performance_max=True,
    )
    lines = [ln for ln in s.splitlines() if not ln.startswith("#")]
    assert lines == [
        "model_optimization_config(calibration, batch_size=4, calibset_size=300)",
        "model_optimization_flavor(optimization_level=0, compression_level=1)",
        "quantization_param(output_layer1, precision_mode=a16_w16)",
        "quantization_param(fc1, precision_mode=a16_w16)",
        "performance_param(compiler_optimization_level=max)",
    ]
    assert script_calibset_size(s) == 300
    assert script_layers(s) == ["output_layer1", "fc1"]


def test_normalization_only_for_raw_data():
    s = _base(input_is_normalized=False, normalization=([0.0, 1.5], [2.0, 0.25]))
    assert "normalization1 = normalization([0.0, 1.5], [2.0, 0.25])" in s.splitlines()
    with pytest.raises(ValueError, match="normalise a second time"):
        _base(input_is_normalized=True, normalization=([0.0], [1.0]))
    with pytest.raises(ValueError, match="one mean and one std"):
        _base(input_is_normalized=False, normalization=([0.0, 1.0], [1.0]))


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(calibset_size=0), "calibset_size must be >= 1"),
        (dict(calibset_size=4, calib_batch_size=8), "larger than calibset_size"),
        (dict(optimization_level=5), "optimization_level must be 0..4"),
        (dict(compression_level=6), "compression_level must be 0..5"),
        (dict(output_layer="net/output layer"), "not a model-script layer name"),
    ],
)
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _base(**kw)


def test_script_calibset_size_absent_and_commented():
    assert script_calibset_size("model_optimization_flavor(optimization_level=2)\n") is None
    assert script_calibset_size("# model_optimization_config(calibration, calibset_size=9)\n") is None


# ---- DFC log -------------------------------------------------------------------------------------
def test_dfc_log_no_gpu():
    facts = parse_dfc_log((FIX / "dfc_optimize_nogpu.log").read_text(), calibset_size=1024)
    assert facts["optimization_level_reduced_to"] == 0
    assert facts["no_gpu"] is True
    assert facts["calibration_entries"] == 1024
    assert facts["snr_db"] == {"fsq_npu/output_layer1": 31.72}
    assert facts["four_bit_lines"] == [] and facts["four_bit_ratio"] is None
    assert len(facts["warning_lines"]) == 1
    assert any("optimization level to 0" in w for w in facts["warnings"])
    assert not any("calibration entries" in w for w in facts["warnings"])


def test_dfc_log_explanation_names_both_reasons():
    facts = parse_dfc_log((FIX / "dfc_optimize_fewdata_nogpu.log").read_text(), calibset_size=256)
    assert facts["optimization_level_reduced_to"] == 0
    assert facts["reduced_for_too_few_entries"] is True and facts["recommended_calibration_entries"] == 1024
    assert facts["reduced_for_no_gpu"] is True and facts["calibration_entries"] == 256
    why = next(w for w in facts["warnings"] if "optimization level to 0" in w)
    assert "fewer than the recommended 1024 entries (it used 256)" in why and "quant_calib_size >= 1024" in why
    assert "no GPU was available" in why
    # one reason alone names only that one
    gpu_only = parse_dfc_log((FIX / "dfc_optimize_nogpu.log").read_text(), calibset_size=1024)
    why = next(w for w in gpu_only["warnings"] if "optimization level to 0" in w)
    assert "no GPU" in why and "recommended" not in why and gpu_only["reduced_for_too_few_entries"] is False
    few_only = parse_dfc_log(
        "[warning] Reducing optimization level to 1 (x) because there's less data than the "
        "recommended amount (1024)\n[info] Using dataset with 100 entries for calibration"
    )
    why = next(w for w in few_only["warnings"] if "optimization level to 1" in w)
    assert "recommended 1024" in why and "GPU" not in why and few_only["reduced_for_no_gpu"] is False


def test_dfc_log_default_64_entries_4bit_low_snr():
    facts = parse_dfc_log((FIX / "dfc_optimize_default64.log").read_text(), calibset_size=1024)
    assert facts["optimization_level_reduced_to"] is None and facts["no_gpu"] is False
    assert facts["calibration_entries"] == 64
    assert facts["four_bit_ratio"] == pytest.approx(0.20)
    assert len(facts["four_bit_lines"]) == 2  # "64-bit host" is not a 4-bit line
    assert facts["snr_db"]["fsq_npu/output_layer1"] == pytest.approx(7.95)
    text = " | ".join(facts["warnings"])
    assert "used 64 calibration entries, but the calibration set has 1024" in text
    assert "20% of the weights in 4 bit" in text
    assert "low output SNR" in text


def test_dfc_log_empty_says_nothing_invented():
    facts = parse_dfc_log("")
    assert facts["calibration_entries"] is None and facts["optimization_level_reduced_to"] is None
    assert facts["warnings"] == []


# ---- hailortcli -----------------------------------------------------------------------------------
def test_run_output_with_power():
    r = parse_run_output((FIX / "hailortcli_run_power.txt").read_text())
    assert r == {
        "fps": 1024.60,
        "hw_latency_ms": 0.37,
        "overall_latency_ms": 0.81,
        "power_avg_w": 1.18,
        "power_min_w": 1.05,
        "power_max_w": 1.34,
        "backend": "hailo8-device",
    }


def test_run_output_missing_fields_are_none():
    r = parse_run_output((FIX / "hailortcli_run_nopower.txt").read_text())
    assert r["fps"] == 960.0 and r["hw_latency_ms"] == 0.39
    assert r["overall_latency_ms"] is None and r["power_avg_w"] is None and r["power_max_w"] is None
    assert parse_run_output("")["fps"] is None


def test_run_output_milliwatts_converted():
    r = parse_run_output("    Average power consumption: 1180 mW\n")
    assert r["power_avg_w"] == pytest.approx(1.18)


def test_benchmark_output():
    r = parse_benchmark_output((FIX / "hailortcli_benchmark.txt").read_text())
    assert r["fps_hw_only"] == 2050.6 and r["fps"] == 2047.4
    assert r["hw_latency_ms"] == 0.362 and r["overall_latency_ms"] is None
    assert r["power_avg_w"] == 1.2 and r["power_max_w"] == 1.33 and r["backend"] == "hailo8-device"


def test_benchmark_output_missing_latency_and_power():
    r = parse_benchmark_output((FIX / "hailortcli_benchmark_nopower.txt").read_text())
    assert r["fps"] == 2047.4 and r["fps_hw_only"] == 2050.6
    assert r["hw_latency_ms"] is None and r["power_avg_w"] is None and r["power_max_w"] is None
