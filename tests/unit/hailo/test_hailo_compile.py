"""The DFC compile path against the fake hailo_sdk_client, and the always-written bundle."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest

from support.hailo import TINY, fakes_env, make_tiny_npu_onnx, ort_reference
from workbench.data.layout import nchw_to_nhwc
from workbench.hailo.alls import make_model_script
from workbench.hailo.bundle import BUNDLE_FILES, compile_commands, write_bundle
from workbench.hailo.compile import CompileError, compile_with_dfc, dfc_available
from workbench.hailo.hef_import import HEF_MAGIC

C, S, T, D = TINY["C"], TINY["S"], TINY["T"], TINY["D"]


@pytest.fixture
def npu(tmp_path):
    onnx_path = tmp_path / "npu.onnx"
    split = make_tiny_npu_onnx(onnx_path)
    rng = np.random.default_rng(1)
    calib_nchw = rng.normal(0, 1, (40, C, S, T)).astype(np.float32)
    test_nchw = rng.normal(0, 1, (12, C, S, T)).astype(np.float32)
    return onnx_path, split, calib_nchw, test_nchw


def _script(n, **kw):
    return make_model_script(
        calibset_size=n,
        calib_batch_size=8,
        optimization_level=2,
        compression_level=0,
        output_layer=kw.pop("output_layer", None),
        extra_16bit_layers=[],
        performance_max=False,
        input_is_normalized=True,
        **kw,
    )


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("hailo_sdk_client") is not None,
    reason="the Dataflow Compiler is installed on this machine",
)
def test_dfc_absent_here():
    ok, why = dfc_available()
    assert ok is False and "not installed" in why


def test_compile_end_to_end_with_fake(hailo_fakes, npu, tmp_path):
    onnx_path, split, calib_nchw, test_nchw = npu
    calib = nchw_to_nhwc(calib_nchw)
    ok, version = dfc_available()
    assert ok and version == "0.0.0+fake"
    out = tmp_path / "06"
    res = compile_with_dfc(
        onnx_path,
        split,
        calib,
        _script(len(calib), output_layer="output_layer1"),
        out,
        "hailo8",
        "fsq_npu",
        emulate_inputs_nhwc=nchw_to_nhwc(test_nchw),
        emulate_indices=np.arange(100, 112),
    )
    core = hailo_fakes
    # arguments the DFC received
    assert core.calls("ClientRunner") == [{"hw_arch": "hailo8", "har": None}]
    tr = core.calls("translate_onnx_model")[0]
    assert tr["end_node_names"] == [TINY["end_node"]] and tr["start_node_names"] is None
    assert tr["net_input_shapes"] == {"imu": [1, C, S, T]} and tr["net_name"] == "fsq_npu"
    opt = core.calls("optimize")[0]
    assert opt["calib_shape"] == (40, S, T, C) and opt["calib_dtype"] == "float32"
    assert opt["calib_keys"] == ["fsq_npu/input_layer1"]
    assert "model_optimization_config(calibration, batch_size=8, calibset_size=40)" in opt["script"]
    assert "quantization_param(output_layer1, precision_mode=a16_w16)" in opt["script"]
    order = [
        n
        for n, _ in core.CALLS
        if n in ("translate_onnx_model", "load_model_script", "optimize", "infer", "compile", "save_har")
    ]
    assert order == ["translate_onnx_model", "load_model_script", "optimize", "infer", "infer", "compile", "save_har"]
    # files
    hef = (out / "model.hef").read_bytes()
    assert hef[:4] == HEF_MAGIC and res.hef_bytes == len(hef) and res.hef_path == out / "model.hef"
    assert (out / "model.har").is_file() and res.hn_input_shape == [-1, S, T, C]
    # log captured from the hailo logger and stdout, then parsed
    log = (out / "dfc.log").read_text()
    assert "Using dataset with 40 entries for calibration" in log and "Calibration: 100%" in log
    assert res.log_facts["calibration_entries"] == 40
    assert res.log_facts["optimization_level_reduced_to"] == 0
    assert "fsq_npu/output_layer1" in res.log_facts["snr_db"]
    # emulator outputs: FP equals the ONNX on NCHW input; quantized within half a 16-bit step
    fp = np.load(out / "emulator_fp_optimized_test.npy")
    q = np.load(out / "emulator_quantized_test.npy")
    ref = ort_reference(onnx_path, test_nchw)
    assert fp.shape == (12, D) and q.shape == (12, D)
    np.testing.assert_allclose(fp, ref, rtol=1e-5, atol=1e-6)
    ycal = ort_reference(onnx_path, calib_nchw)
    lo, hi = min(ycal.min(), 0.0), max(ycal.max(), 0.0)
    step = (hi - lo) / (2**16 - 1)  # a16_w16 output: 16-bit grid over the calib range
    inside = (ref >= lo) & (ref <= hi)
    assert inside.mean() > 0.5
    assert np.abs(q - ref)[inside].max() <= step * 0.5 + 1e-6
    np.testing.assert_allclose(q[~inside], np.clip(ref[~inside], lo, hi), atol=step)  # clipped at the range
    assert not np.array_equal(q, fp)
    np.testing.assert_array_equal(np.load(out / "emulator_test_indices.npy"), np.arange(100, 112))
    assert json.loads((out / "emulator_info.json").read_text())["backend"] == "hailo-emulator"
    assert json.loads((out / "compile_result.json").read_text())["hef_bytes"] == len(hef)


def test_fake_dfc_lowers_the_level_for_few_entries_and_no_gpu(hailo_fakes, npu, tmp_path, monkeypatch):
    """The DFC lowers the optimization level below 1024 calibration entries even with a GPU
    (REFERENCE.md §7); with 1024 and a GPU it keeps it."""
    import hailo_sdk_client

    onnx_path, split, calib_nchw, _ = npu
    monkeypatch.setattr(hailo_sdk_client, "HAS_GPU", True)
    res = compile_with_dfc(onnx_path, split, nchw_to_nhwc(calib_nchw), _script(40), tmp_path / "few", "hailo8", "n")
    assert res.log_facts["optimization_level_reduced_to"] == 0
    assert res.log_facts["reduced_for_too_few_entries"] and not res.log_facts["reduced_for_no_gpu"]
    big = np.random.default_rng(2).normal(size=(1024, C, S, T)).astype(np.float32)
    res = compile_with_dfc(onnx_path, split, nchw_to_nhwc(big), _script(1024), tmp_path / "full", "hailo8", "n")
    assert res.log_facts["optimization_level_reduced_to"] is None and res.log_facts["calibration_entries"] == 1024
    monkeypatch.setattr(hailo_sdk_client, "HAS_GPU", False)
    res = compile_with_dfc(onnx_path, split, nchw_to_nhwc(calib_nchw), _script(40), tmp_path / "both", "hailo8", "n")
    assert res.log_facts["reduced_for_too_few_entries"] and res.log_facts["reduced_for_no_gpu"]


def test_facts_from_the_dfc_log_file_when_no_record_was_captured(hailo_fakes, npu, tmp_path, monkeypatch):
    """Some DFC builds log only to hailo_sdk.client.log in the working directory: the facts then come from
    that file (this compile's lines only), and dfc.log keeps them."""
    import hailo_sdk_client

    onnx_path, split, calib_nchw, _ = npu
    monkeypatch.setattr(hailo_sdk_client, "LOG_RECORDS", False)
    out = tmp_path / "06"
    out.mkdir()
    (out / "hailo_sdk.client.log").write_text("[info] Using dataset with 7 entries for calibration\n")  # older run
    monkeypatch.chdir(tmp_path)
    res = compile_with_dfc(onnx_path, split, nchw_to_nhwc(calib_nchw), _script(40), out, "hailo8", "n")
    assert res.log_facts["source"] == "hailo_sdk.client.log"
    assert res.log_facts["calibration_entries"] == 40 and res.log_facts["reduced_for_no_gpu"]
    log = (out / "dfc.log").read_text()
    assert "hailo_sdk.client.log" in log and "Using dataset with 40 entries" in log and "7 entries" not in log
    assert not (tmp_path / "hailo_sdk.client.log").exists()  # the DFC ran inside the stage folder


def test_fake_dfc_rejects_keywords_the_real_one_does_not_take(hailo_fakes, npu):
    from hailo_sdk_client import ClientRunner

    onnx_path, split, _, _ = npu
    with pytest.raises(TypeError):
        ClientRunner(hw_arch="hailo8", target="x")
    runner = ClientRunner(hw_arch="hailo8")
    with pytest.raises(TypeError):
        runner.translate_onnx_model(str(onnx_path), "n", end_node_names=[TINY["end_node"]], not_a_dfc_arg=1)


def test_compile_2d_emulator_output_also_accepted(hailo_fakes, npu, tmp_path):
    import hailo_sdk_client

    hailo_sdk_client.INFER_OUTPUT_4D = False
    onnx_path, split, calib_nchw, test_nchw = npu
    calib = nchw_to_nhwc(calib_nchw)
    res = compile_with_dfc(
        onnx_path,
        split,
        calib,
        _script(len(calib)),
        tmp_path,
        "hailo8l",
        "n",
        emulate_inputs_nhwc=nchw_to_nhwc(test_nchw[:5]),
    )
    assert np.load(tmp_path / "emulator_quantized_test.npy").shape == (5, D)
    assert res.hw_arch == "hailo8l"


def test_nchw_calibration_rejected_with_hint(hailo_fakes, npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    with pytest.raises(CompileError, match="looks NCHW"):
        compile_with_dfc(onnx_path, split, calib_nchw, _script(len(calib_nchw)), tmp_path, "hailo8", "n")
    assert (tmp_path / "dfc.log").is_file()  # the log is written even when the run stops early


def test_calibset_size_mismatch_rejected(hailo_fakes, npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    with pytest.raises(CompileError, match="calibset_size=64 but the calibration set has 40"):
        compile_with_dfc(onnx_path, split, nchw_to_nhwc(calib_nchw), _script(64), tmp_path, "hailo8", "n")


def test_unknown_script_layer_rejected(hailo_fakes, npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    script = _script(40, output_layer="pre_round_out")
    with pytest.raises(CompileError, match="pre_round_out"):
        compile_with_dfc(onnx_path, split, nchw_to_nhwc(calib_nchw), script, tmp_path, "hailo8", "n")


def test_wrong_end_node_fails_in_the_dfc(hailo_fakes, npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    bad = dict(split, npu_end_nodes=["no_such_node"])
    with pytest.raises(ValueError, match="Unable to find end node names"):
        compile_with_dfc(onnx_path, bad, nchw_to_nhwc(calib_nchw), _script(40), tmp_path, "hailo8", "n")


def test_bad_hw_arch(npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    with pytest.raises(CompileError, match="hw_arch 'hailo9'"):
        compile_with_dfc(onnx_path, split, calib_nchw, "", tmp_path, "hailo9", "n")


# ---- bundle -----------------------------------------------------------------------------------------
def test_bundle_files_and_compile_sh(npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    split = dict(split, npu_end_nodes=["fsq bound/sub", "second_end"])  # quoting and order must survive
    calib = nchw_to_nhwc(calib_nchw)
    np.save(tmp_path / "calib_src.npy", calib)
    out = tmp_path / "bundle"
    paths = write_bundle(
        out,
        npu_onnx=onnx_path,
        split_info=split,
        calibset_nhwc=tmp_path / "calib_src.npy",
        model_script=_script(40),
        hw_arch="hailo8",
        net_name="fsq_npu",
    )
    assert sorted(paths) == sorted(BUNDLE_FILES)
    assert all((out / f).is_file() for f in BUNDLE_FILES)
    assert (out / "npu.onnx").read_bytes() == onnx_path.read_bytes()
    np.testing.assert_array_equal(np.load(out / "calibset_nhwc.npy"), calib)
    assert json.loads((out / "split.json").read_text())["npu_end_nodes"] == ["fsq bound/sub", "second_end"]
    sh = (out / "compile.sh").read_text()
    assert sh.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in sh
    assert (out / "compile.sh").stat().st_mode & 0o111
    parser = next(ln for ln in sh.splitlines() if ln.startswith("hailo parser"))
    argv = shlex.split(parser)
    assert argv[:4] == ["hailo", "parser", "onnx", "npu.onnx"]
    i = argv.index("--end-node-names")
    assert argv[i + 1 : i + 3] == ["fsq bound/sub", "second_end"] and argv[-1] == "-y"
    assert argv[argv.index("--hw-arch") + 1] == "hailo8" and argv[argv.index("--net-name") + 1] == "fsq_npu"
    optimize = shlex.split(next(ln for ln in sh.splitlines() if ln.startswith("hailo optimize")))
    assert optimize == [
        "hailo",
        "optimize",
        "fsq_npu.har",
        "--hw-arch",
        "hailo8",
        "--calib-set-path",
        "calibset_nhwc.npy",
        "--model-script",
        "model.alls",
    ]
    compiler = shlex.split(next(ln for ln in sh.splitlines() if ln.startswith("hailo compiler")))
    assert compiler == ["hailo", "compiler", "fsq_npu_optimized.har", "--hw-arch", "hailo8"]
    readme = (out / "README.txt").read_text()
    assert "calibset_size=40" in readme and "DFC 3.33.x <-> HailoRT 4.23" in readme


def test_bundle_script_is_valid_bash(npu, tmp_path):
    import shutil
    import subprocess

    if not shutil.which("bash"):
        pytest.skip("no bash")
    onnx_path, split, calib_nchw, _ = npu
    write_bundle(
        tmp_path,
        npu_onnx=onnx_path,
        split_info=split,
        calibset_nhwc=nchw_to_nhwc(calib_nchw),
        model_script=_script(40),
        hw_arch="hailo8r",
        net_name="n",
    )
    assert subprocess.run(["bash", "-n", str(tmp_path / "compile.sh")]).returncode == 0


def test_bundle_refuses_wrong_calibset_size(npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    with pytest.raises(ValueError, match="calibset_size=64 but calibset_nhwc.npy has 40"):
        write_bundle(
            tmp_path,
            npu_onnx=onnx_path,
            split_info=split,
            calibset_nhwc=nchw_to_nhwc(calib_nchw),
            model_script=_script(64),
            hw_arch="hailo8",
            net_name="n",
        )


def test_compile_commands_start_nodes_and_errors():
    cmds = compile_commands(net_name="n", hw_arch="hailo8", end_node_names=["e"], start_node_names=["s1"])
    assert "--start-node-names s1 --end-node-names e -y" in cmds[0]
    with pytest.raises(ValueError, match="end_node_names is empty"):
        compile_commands(net_name="n", hw_arch="hailo8", end_node_names=[])
    with pytest.raises(ValueError, match="hw_arch"):
        compile_commands(net_name="n", hw_arch="h8", end_node_names=["e"])


def test_bundle_with_raw_data_and_normalization_says_so(npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    script = make_model_script(
        calibset_size=40,
        calib_batch_size=8,
        optimization_level=2,
        compression_level=0,
        input_is_normalized=False,
        normalization=([0.0] * C, [1.0] * C),
    )
    write_bundle(
        tmp_path,
        npu_onnx=onnx_path,
        split_info=split,
        calibset_nhwc=nchw_to_nhwc(calib_nchw),
        model_script=script,
        hw_arch="hailo8",
        net_name="n",
    )
    assert "raw (model.alls normalises on the NPU)" in (tmp_path / "compile.sh").read_text()
    assert "raw (model.alls normalises)" in (tmp_path / "README.txt").read_text()


def test_fake_dfc_applies_script_normalization(hailo_fakes, npu, tmp_path):
    """A normalization line changes the numbers: normalising already-normalised data twice shows up."""
    onnx_path, split, calib_nchw, test_nchw = npu
    mean, std = [0.5] * C, [2.0] * C
    script = make_model_script(
        calibset_size=40,
        calib_batch_size=8,
        optimization_level=0,
        compression_level=0,
        input_is_normalized=False,
        normalization=(mean, std),
    )
    compile_with_dfc(
        onnx_path,
        split,
        nchw_to_nhwc(calib_nchw),
        script,
        tmp_path,
        "hailo8",
        "n",
        emulate_inputs_nhwc=nchw_to_nhwc(test_nchw),
    )
    fp = np.load(tmp_path / "emulator_fp_optimized_test.npy")
    np.testing.assert_allclose(fp, ort_reference(onnx_path, (test_nchw - 0.5) / 2.0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(fp, ort_reference(onnx_path, test_nchw), atol=1e-3)


# ---- issue 14: a16_w16 layers resolved from the parsed HN, in the API path and in the bundle ------------
def _hn():
    return {
        "name": "net",
        "layers": {
            "net/input_layer1": {"type": "input_layer", "original_names": ["imu"]},
            "net/conv1": {"type": "conv", "original_names": ["/enc/conv", "/enc/relu"]},
            "net/conv2": {"type": "conv", "original_names": ["/enc/mix"]},
            "net/fc1": {"type": "dense", "original_names": ["/project/Gemm", "/fsq/Add"]},
            "net/output_layer1": {"type": "output_layer", "original_names": ["/fsq/Sub"]},
        },
    }


def test_resolve16_maps_onnx_names_through_original_names():
    from workbench.hailo.resolve16 import resolved_script, sixteen_bit_lines

    lines, unresolved = sixteen_bit_lines(
        _hn(), ["/enc/conv", "/enc/relu", "/project/Gemm", "/fsq/Add", "/gone"], ["imu"]
    )
    assert lines == [
        "quantization_param(input_layer1, precision_mode=a16_w16)",
        "quantization_param(conv1, precision_mode=a16_w16)",
        "quantization_param(fc1, precision_mode=a16_w16)",
    ]  # Conv+Relu and Gemm+Add fold: one line each
    assert unresolved == ["/gone"]
    text, _ = resolved_script(
        "model_optimization_config(calibration, calibset_size=8)\n", _hn(), {"onnx_nodes": ["/enc/mix"], "inputs": []}
    )
    assert text.splitlines()[-1] == "quantization_param(conv2, precision_mode=a16_w16)"
    assert resolved_script("x\n", _hn(), {})[0] == "x\n"  # nothing asked, nothing added
    with pytest.raises(ValueError, match="none of the 16-bit ONNX names"):
        resolved_script("x\n", _hn(), {"onnx_nodes": ["'; rm -rf /"], "inputs": []})


def test_compile_with_dfc_appends_resolved_a16_w16_lines(hailo_fakes, npu, tmp_path):
    onnx_path, split, calib_nchw, _ = npu
    calib = nchw_to_nhwc(calib_nchw)
    out = tmp_path / "06"
    compile_with_dfc(
        onnx_path,
        split,
        calib,
        _script(len(calib)),
        out,
        "hailo8",
        "fsq_npu",
        sixteen_bit_onnx_nodes=["conv1", "relu1", "project", TINY["end_node"]],
        sixteen_bit_inputs=["imu"],
    )
    script = hailo_fakes.calls("optimize")[0]["script"]
    got = {ln.split("(", 1)[1].split(",")[0] for ln in script if ln.startswith("quantization_param(")}
    # the fake parser names layers <op><position> and lists each ONNX node in original_names
    assert got == {"input_layer1", "conv1", "relu2", "gemm5", "sub9"}
    assert (out / "model_resolved.alls").is_file()
    with pytest.raises(CompileError, match="none of the 16-bit ONNX names"):
        compile_with_dfc(
            onnx_path,
            split,
            calib,
            _script(len(calib)),
            tmp_path / "x",
            "hailo8",
            "fsq_npu",
            sixteen_bit_onnx_nodes=["not-a-node"],
        )


def test_bundle_with_sixteen_bit_and_transform(hailo_fakes, npu, tmp_path):
    import subprocess
    import sys

    onnx_path, split, calib_nchw, _ = npu
    calib = nchw_to_nhwc(calib_nchw)
    out = tmp_path / "bundle"
    paths = write_bundle(
        out,
        npu_onnx=onnx_path,
        split_info=split,
        calibset_nhwc=calib,
        model_script=_script(len(calib)),
        hw_arch="hailo8",
        net_name="fsq_npu",
        sixteen_bit={"onnx_nodes": ["conv1", "relu1"], "inputs": ["imu"]},
        input_transform={"scale": [1.0] * C, "clip": [-3.0, 3.0]},
    )
    assert {"sixteen_bit.json", "resolve16.py", "input_transform.json"} <= set(paths)
    sh = paths["compile.sh"].read_text()
    assert "python3 resolve16.py fsq_npu.har hailo8 sixteen_bit.json model.alls model_resolved.alls" in sh
    assert "--model-script model_resolved.alls" in sh and "input_transform.json" in sh
    assert sh.index("hailo parser") < sh.index("resolve16.py") < sh.index("hailo optimize")
    assert subprocess.run(["bash", "-n", str(paths["compile.sh"])]).returncode == 0
    # the bundled resolver runs standalone on a parsed HAR (the fake DFC's HAR here)
    from hailo_sdk_client import ClientRunner

    runner = ClientRunner(hw_arch="hailo8")
    runner.translate_onnx_model(
        str(onnx_path), "fsq_npu", end_node_names=split["npu_end_nodes"], net_input_shapes={"imu": [1, C, S, T]}
    )
    runner.save_har(str(out / "fsq_npu.har"))
    res = subprocess.run(
        [
            sys.executable,
            "resolve16.py",
            "fsq_npu.har",
            "hailo8",
            "sixteen_bit.json",
            "model.alls",
            "model_resolved.alls",
        ],
        cwd=out,
        capture_output=True,
        text=True,
        env=fakes_env(),
    )
    assert res.returncode == 0, res.stderr
    resolved = (out / "model_resolved.alls").read_text()
    assert "quantization_param(input_layer1, precision_mode=a16_w16)" in resolved
    assert resolved.count("precision_mode=a16_w16") == 3  # input layer, conv, relu (separate fake layers)
    plain = write_bundle(
        tmp_path / "plain",
        npu_onnx=onnx_path,
        split_info=split,
        calibset_nhwc=calib,
        model_script=_script(len(calib)),
        hw_arch="hailo8",
        net_name="fsq_npu",
    )
    assert "resolve16" not in plain["compile.sh"].read_text() and "sixteen_bit.json" not in plain
