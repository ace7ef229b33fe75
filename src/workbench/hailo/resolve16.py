"""Resolve stage 05's 16-bit ONNX names to HN layer names and write the a16_w16 model-script lines.

Standalone on purpose (standard library only, plus ``hailo_sdk_client`` when run as a script): stage 06
copies this file into the compile bundle, and ``compile.sh`` runs it after ``hailo parser`` on the DFC
machine, where the workbench package need not be installed. ``workbench.hailo.compile`` imports the
same functions for the Python-API path, so both paths resolve names identically.

HN layer names are only known after parsing; each parsed layer lists the ONNX names it was made from
in ``get_hn_dict()["layers"][name]["original_names"]`` (REFERENCE.md §2). Names no layer lists are
reported, never guessed.

Script use:  python resolve16.py NET.har HW_ARCH sixteen_bit.json model.alls model_resolved.alls
"""

from __future__ import annotations

import json
import sys
from typing import Sequence


def short_name(name: str) -> str:
    """HN layer name without the ``<net>/`` prefix, as model scripts write it."""
    return name.split("/", 1)[1] if "/" in name else name


def hn_layers_for_onnx_names(hn: dict, onnx_nodes: Sequence[str], input_names: Sequence[str] = ()) -> dict:
    """{ONNX node or graph-input name: HN layer (short name)} for every name some layer lists.

    Several ONNX nodes can fold into one HN layer (Conv + Relu, an Add into a bias). A graph input
    that no layer lists maps to the only HN input layer, if there is exactly one.
    """
    layers = hn.get("layers", {}) if isinstance(hn, dict) else {}
    wanted = set(onnx_nodes) | set(input_names)
    out: dict = {}
    for lname, layer in layers.items():
        for orig in layer.get("original_names") or []:
            if orig in wanted and orig not in out:
                out[orig] = short_name(lname)
    ins = [n for n, layer in layers.items() if layer.get("type") == "input_layer"]
    for name in input_names:
        if name not in out and len(ins) == 1:
            out[name] = short_name(ins[0])
    return out


def sixteen_bit_lines(hn: dict, onnx_nodes: Sequence[str], input_names: Sequence[str] = ()) -> tuple:
    """(model-script lines, unresolved names): one ``quantization_param(<layer>, precision_mode=a16_w16)``
    per distinct HN layer, in graph order of the names given."""
    mapping = hn_layers_for_onnx_names(hn, onnx_nodes, input_names)
    names = list(input_names) + list(onnx_nodes)
    layers = list(dict.fromkeys(mapping[n] for n in names if n in mapping))
    unresolved = [n for n in names if n not in mapping]
    return [f"quantization_param({layer}, precision_mode=a16_w16)" for layer in layers], unresolved


def resolved_script(model_script: str, hn: dict, spec: dict) -> tuple:
    """``model_script`` with the resolved a16_w16 lines appended; ``spec`` is sixteen_bit.json
    ({"onnx_nodes": [...], "inputs": [...]}). Returns (text, unresolved). Raises ValueError when names
    were asked for and none resolves (the mixed precision would silently be lost)."""
    nodes, inputs = list(spec.get("onnx_nodes") or []), list(spec.get("inputs") or [])
    if not nodes and not inputs:
        return model_script, []
    lines, unresolved = sixteen_bit_lines(hn, nodes, inputs)
    if not lines:
        raise ValueError(
            f"none of the 16-bit ONNX names {unresolved} is listed in any HN layer's "
            f"original_names: the parsed net cannot carry stage 05's mixed precision"
        )
    text = (
        model_script.rstrip("\n") + "\n# a16_w16 layers resolved from stage 05's ONNX names "
        f"(unresolved: {', '.join(unresolved) or 'none'})\n" + "\n".join(lines) + "\n"
    )
    return text, unresolved


def main(argv: Sequence[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    har, hw_arch, spec_path, alls_in, alls_out = argv
    from hailo_sdk_client import ClientRunner

    runner = ClientRunner(hw_arch=hw_arch, har=har)
    with open(spec_path) as f:
        spec = json.load(f)
    with open(alls_in) as f:
        script = f.read()
    text, unresolved = resolved_script(script, runner.get_hn_dict(), spec)
    with open(alls_out, "w") as f:
        f.write(text)
    if unresolved:
        print(f"resolve16: not listed in any HN layer (folded or renamed): {unresolved}", file=sys.stderr)
    print(f"resolve16: wrote {alls_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
