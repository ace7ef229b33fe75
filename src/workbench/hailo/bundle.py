"""The compile bundle: everything a DFC machine needs, written whether or not the DFC is here.

Files (in stage 06's artifact folder): npu.onnx, calibset_nhwc.npy, model.alls, split.json,
compile.sh (the exact ``hailo parser / optimize / compiler`` commands, REFERENCE.md §2) and
README.txt. Copy the folder to an x86_64 Linux machine with the Dataflow Compiler and run
``bash compile.sh``; bring model.hef back with ``python -m workbench hailo import-hef``.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from workbench.hailo.alls import script_calibset_size
from workbench.hailo.compile import HW_ARCHS
from workbench.hailo.versions import VERSION_PAIRS, pairs_text  # noqa: F401  (re-exported for notebook 06)

BUNDLE_FILES = ("npu.onnx", "calibset_nhwc.npy", "model.alls", "split.json", "compile.sh", "README.txt")
# Only with stage 05's mixed precision / input transform (issue 14).
SIXTEEN_BIT_FILES = ("sixteen_bit.json", "resolve16.py")
INPUT_TRANSFORM_FILE = "input_transform.json"


def compile_commands(
    *,
    net_name: str,
    hw_arch: str,
    end_node_names: Sequence[str],
    start_node_names: Optional[Sequence[str]] = None,
    onnx_name: str = "npu.onnx",
    calib_name: str = "calibset_nhwc.npy",
    alls_name: str = "model.alls",
    resolve_16bit: bool = False,
) -> list[str]:
    """The DFC CLI commands, shell-quoted: parse, [resolve the a16_w16 layers,] optimize, compile.

    With ``resolve_16bit`` a step after parsing runs ``resolve16.py`` on the parsed HAR: it maps the
    ONNX names in sixteen_bit.json to HN layers (``original_names``) and writes model_resolved.alls,
    which optimize then uses."""
    if hw_arch not in HW_ARCHS:
        raise ValueError(f"hw_arch {hw_arch!r} is not one of {', '.join(HW_ARCHS)}")
    if not end_node_names:
        raise ValueError("end_node_names is empty: split.json must name the NPU end nodes")
    q = shlex.quote
    parser = ["hailo", "parser", "onnx", onnx_name, "--hw-arch", hw_arch, "--net-name", net_name]
    if start_node_names:
        parser += ["--start-node-names", *start_node_names]
    parser += ["--end-node-names", *end_node_names, "-y"]
    resolve = [
        "python3",
        "resolve16.py",
        f"{net_name}.har",
        hw_arch,
        "sixteen_bit.json",
        alls_name,
        "model_resolved.alls",
    ]
    optimize = [
        "hailo",
        "optimize",
        f"{net_name}.har",
        "--hw-arch",
        hw_arch,
        "--calib-set-path",
        calib_name,
        "--model-script",
        "model_resolved.alls" if resolve_16bit else alls_name,
    ]
    compiler = ["hailo", "compiler", f"{net_name}_optimized.har", "--hw-arch", hw_arch]
    cmds = (parser, resolve, optimize, compiler) if resolve_16bit else (parser, optimize, compiler)
    return [" ".join(q(a) for a in cmd) for cmd in cmds]


def compile_script(
    *,
    net_name: str,
    hw_arch: str,
    end_node_names: Sequence[str],
    start_node_names: Optional[Sequence[str]] = None,
    calibset_shape: Sequence[int] = (),
    script_normalizes: bool = False,
    resolve_16bit: bool = False,
    input_transform: bool = False,
) -> str:
    """Text of compile.sh: strict bash, runs in its own folder, leaves model.hef next to it."""
    cmds = compile_commands(
        net_name=net_name,
        hw_arch=hw_arch,
        end_node_names=end_node_names,
        start_node_names=start_node_names,
        resolve_16bit=resolve_16bit,
    )
    parse, optimize, compile_ = cmds[0], cmds[-2], cmds[-1]
    resolve = (
        f"# 1b. a16_w16 layers: HN names exist only after parsing; map stage 05's ONNX names\n"
        f"#     (sixteen_bit.json) through each layer's original_names into model_resolved.alls\n"
        f"{cmds[1]}\n"
        if resolve_16bit
        else ""
    )
    transform_note = (
        "# Input: npu.onnx carries stage 05's input equalization (first-conv weights rescaled); the\n"
        "# host divides each channel by input_transform.json's scale and clips before the NPU.\n"
        if input_transform
        else ""
    )
    q = shlex.quote
    shape = "x".join(str(int(d)) for d in calibset_shape) or "?"
    norm_note = (
        "raw (model.alls normalises on the NPU)"
        if script_normalizes
        else "already normalised (no normalization layer in model.alls)"
    )
    return f"""#!/usr/bin/env bash
# Compile the NPU part of the Conv2d-FSQ model for {hw_arch} with the Hailo Dataflow Compiler (DFC).
# Written by workbench (stage 06). Needs x86_64 Linux with the DFC installed (`hailo --version`).
# Calibration set: calibset_nhwc.npy, float32 NHWC {shape}, {norm_note}.
# Output: model.hef in this folder.
{transform_note}set -euo pipefail
cd "$(dirname "$0")"
command -v hailo >/dev/null || {{ echo "hailo CLI not found: activate the Dataflow Compiler environment" >&2; exit 1; }}
hailo --version || true

# 1. parse: cut at the pre-Round tensor (end nodes from split.json)
{parse}
{resolve}# 2. optimize (quantize) with the real calibration set and the model script
{optimize}
# 3. compile to a HEF
{compile_}

if [ -f {q(net_name + ".hef")} ]; then
  cp {q(net_name + ".hef")} model.hef
  echo "built model.hef: bring it back with: python -m workbench hailo import-hef model.hef --run RUN"
else
  echo "the compiler did not leave {net_name}.hef here; look for *.hef in $(pwd)" >&2
  exit 1
fi
# Optional: quantization noise per layer
#   hailo analyze-noise {q(net_name + "_optimized.har")} --data-path calibset_nhwc.npy --analyze-mode advanced
"""


def _normalizes(script: str) -> bool:
    return any("normalization(" in ln.split("#", 1)[0] for ln in script.splitlines())


def _readme(net_name: str, hw_arch: str, split_info: dict, calib_shape: Sequence[int], alls: str) -> str:
    pairs = pairs_text()
    calib_state = "raw (model.alls normalises)" if _normalizes(alls) else "already normalised"
    return f"""Hailo compile bundle (workbench stage 06)
==========================================
net name : {net_name}
hw_arch  : {hw_arch}   (a hailo8l HEF runs on a Hailo-8, a hailo8 HEF does not run on a Hailo-8L)
input    : {split_info.get("npu_input_name")} NCHW {split_info.get("npu_input_shape")} -> parsed channels-last
end nodes: {", ".join(split_info.get("npu_end_nodes") or [])}  (the graph is cut before Round; the host
           rounds the pre-Round tensor and runs the head)
calib set: calibset_nhwc.npy float32 {tuple(int(d) for d in calib_shape)} NHWC, {calib_state};
           model.alls sets calibset_size={script_calibset_size(alls)} so every window is used.

On an x86_64 Linux machine with the Hailo Dataflow Compiler:
    bash compile.sh
Then copy model.hef back and run, in the workbench project:
    python -m workbench hailo import-hef model.hef --run <run id>

Match the versions: the HEF must come from a DFC that pairs with the HailoRT on the device
({pairs}). Without a GPU the DFC lowers the optimization level to 0 (look for
"Reducing optimization level" in its output).
"""


def write_bundle(
    out_dir: Union[str, Path],
    *,
    npu_onnx: Union[str, Path],
    split_info: dict,
    calibset_nhwc: Union[np.ndarray, str, Path],
    model_script: str,
    hw_arch: str,
    net_name: str,
    start_node_names: Optional[Sequence[str]] = None,
    sixteen_bit: Optional[dict] = None,
    input_transform: Optional[dict] = None,
) -> dict[str, Path]:
    """Write the bundle files into ``out_dir`` and return {file name: path}. Checks that the script's
    calibset_size equals the calibration set's length (the DFC otherwise uses 64 entries).

    ``sixteen_bit`` ({"onnx_nodes": [...], "inputs": [...]}, from stage 05's remedy) adds
    sixteen_bit.json + resolve16.py and a compile.sh step that turns them into a16_w16 lines;
    ``input_transform`` (per-channel scale and clip the host applies before the NPU) is written as
    input_transform.json so the device side feeds the equalized graph what it was calibrated on."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    npu_onnx = Path(npu_onnx)
    if not npu_onnx.is_file():
        raise FileNotFoundError(f"{npu_onnx} not found: stage 04 writes npu.onnx")
    if isinstance(calibset_nhwc, (str, Path)):
        calib_src = Path(calibset_nhwc)
        calib = np.load(calib_src, mmap_mode="r")
    else:
        calib_src, calib = None, np.asarray(calibset_nhwc)
    if calib.ndim != 4 or calib.dtype != np.float32:
        raise ValueError(f"calibration set must be float32 (N, S, T, C); got {calib.dtype} {calib.shape}")
    size = script_calibset_size(model_script)
    if size != len(calib):
        raise ValueError(
            f"model.alls calibset_size={size} but calibset_nhwc.npy has {len(calib)} windows; "
            f"regenerate the script with calibset_size={len(calib)}"
        )
    end_nodes = list(split_info.get("npu_end_nodes") or [])
    paths = {name: out / name for name in BUNDLE_FILES}
    if npu_onnx.resolve() != paths["npu.onnx"].resolve():
        shutil.copyfile(npu_onnx, paths["npu.onnx"])
    if calib_src is not None:
        if calib_src.resolve() != paths["calibset_nhwc.npy"].resolve():
            shutil.copyfile(calib_src, paths["calibset_nhwc.npy"])
    else:
        np.save(paths["calibset_nhwc.npy"], np.ascontiguousarray(calib))
    paths["model.alls"].write_text(model_script)
    paths["split.json"].write_text(json.dumps(split_info, indent=2))
    resolve = bool(sixteen_bit and (sixteen_bit.get("onnx_nodes") or sixteen_bit.get("inputs")))
    if resolve:
        from workbench.hailo import resolve16

        paths["sixteen_bit.json"] = out / "sixteen_bit.json"
        paths["sixteen_bit.json"].write_text(
            json.dumps(
                {
                    "onnx_nodes": list(sixteen_bit.get("onnx_nodes") or []),
                    "inputs": list(sixteen_bit.get("inputs") or []),
                },
                indent=2,
            )
        )
        paths["resolve16.py"] = out / "resolve16.py"
        shutil.copyfile(resolve16.__file__, paths["resolve16.py"])
    has_transform = bool(input_transform and (input_transform.get("scale") or input_transform.get("clip")))
    if has_transform:
        paths[INPUT_TRANSFORM_FILE] = out / INPUT_TRANSFORM_FILE
        paths[INPUT_TRANSFORM_FILE].write_text(json.dumps(input_transform, indent=2))
    script = compile_script(
        net_name=net_name,
        hw_arch=hw_arch,
        end_node_names=end_nodes,
        start_node_names=start_node_names,
        calibset_shape=calib.shape,
        script_normalizes=_normalizes(model_script),
        resolve_16bit=resolve,
        input_transform=has_transform,
    )
    paths["compile.sh"].write_text(script)
    paths["compile.sh"].chmod(0o755)
    paths["README.txt"].write_text(_readme(net_name, hw_arch, split_info, calib.shape, model_script))
    return paths


def bundle_table(out_dir: Union[str, Path]) -> list[dict]:
    """File name, size and whether it is part of the bundle, for the notebook's table."""
    out = Path(out_dir)
    rows = []
    for p in sorted(out.iterdir()):
        if p.is_file():
            rows.append(
                {
                    "file": p.name,
                    "bytes": p.stat().st_size,
                    "bundle": p.name in BUNDLE_FILES + SIXTEEN_BIT_FILES + (INPUT_TRANSFORM_FILE,),
                }
            )
    return rows
