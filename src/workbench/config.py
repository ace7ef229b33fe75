"""Run parameters: one flat, typed namespace shared by every notebook.

Flat on purpose: papermill's ``-p name value`` and ``workbench run -p`` address a parameter by one
name, and each notebook declares only the names it reads in its ``parameters`` cell. The schema is
checked before anything runs, so a typo or an impossible value costs seconds, not a training run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.errors import ParamError

# The one list of evaluation backends: every number the workbench reports names one of these (or `data`,
# `numpy-fp32` for numbers no model backend produced).
BackendName = Literal["torch-fp32", "ort-fp32", "ort-int8-emulated", "hailo-emulator", "hailo8-device"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)
TORCH_FP32, ORT_FP32, ORT_INT8, HAILO_EMULATOR, HAILO8_DEVICE = BACKEND_NAMES


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # ---- run -------------------------------------------------------------------------------
    run_label: str = Field("run", description="short label that goes into the run id")
    seed: int = Field(0, description="seed for data generation, splits, initialisation and sampling")
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    # ---- 01 data ---------------------------------------------------------------------------
    dataset: Literal["synthetic", "hapt", "uci_har", "npz"] = "synthetic"
    data_dir: Optional[str] = Field(None, description="folder (hapt, uci_har) or .npz file (npz)")
    window: int = Field(100, ge=4, description="samples per window")
    hop: int = Field(50, ge=1, description="samples between window starts (50 = 50% overlap at 100)")
    sample_rate_hz: float = Field(50.0, gt=0)
    label_set: Optional[list[int]] = Field(
        None, description="dataset activity ids to keep (hapt default: 1-6, the basic activities)")
    synthetic_subjects: int = Field(24, ge=4)
    synthetic_windows_per_class: int = Field(24, ge=1, description="per subject and behaviour")
    synthetic_channels: int = Field(9, ge=1, description="9 = accelerometer, gyroscope, magnetometer")
    synthetic_sites: int = Field(2, ge=1)
    val_fraction: float = Field(0.15, gt=0, lt=1, description="share of subjects for validation")
    conformal_fraction: float = Field(0.15, gt=0, lt=1, description="share for conformal calibration")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of subjects for test")
    test_subjects: Optional[list[int]] = Field(None, description="explicit test subjects (overrides fraction)")

    # ---- 01 model and training ---------------------------------------------------------------
    mode: Literal["train", "load"] = "train"
    checkpoint_path: Optional[str] = None
    encoder_channels: list[int] = Field([32, 64, 64], min_length=1)
    kernel_time: int = Field(5, ge=1, description="temporal kernel width of every conv")
    fsq_levels: list[int] = Field([8, 6, 5, 5, 4], min_length=1)
    head_hidden: int = Field(64, ge=0, description="0 = linear head")
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(3.0e-3, gt=0)
    weight_decay: float = Field(1.0e-4, ge=0)
    patience: int = Field(6, ge=1, description="early stopping: epochs without validation gain")
    augment_rotation_deg: float = Field(0.0, ge=0, le=180,
                                        description="training: random 3-D rotation of each site's xyz triplets")
    augment_scale: float = Field(0.0, ge=0, lt=1, description="training: random gain U[1-s, 1+s] per sensor")
    max_train_seconds: Optional[float] = Field(None, gt=0, description="stop training after this long")

    # ---- 02 export ---------------------------------------------------------------------------
    opset: int = Field(13, ge=11, le=21)
    simplify: Literal["none", "onnxslim", "onnxsim"] = "none"
    parity_windows: int = Field(512, ge=1, description="held-out windows used for parity checks")
    parity_cosine_min: float = Field(0.99999, gt=0, le=1)

    # ---- 03 inspect --------------------------------------------------------------------------
    netron: bool = Field(True, description="start Netron on localhost when a notebook runs interactively")

    # ---- 04 split ----------------------------------------------------------------------------
    cut: Literal["after_bound", "after_projection"] = "after_bound"
    host_ops: list[str] = Field(["Round"], min_length=1, description="op types the NPU cannot run")

    # ---- 05 INT8 quantization calibration (quant) --------------------------------------------
    quant_calib_strategy: Literal["random_windows", "stratified", "gaussian_noise"] = "stratified"
    quant_calib_size: int = Field(1024, ge=1)
    quant_calib_method: Literal["MinMax", "Entropy", "Percentile", "Distribution"] = "MinMax"
    quant_output_16bit: bool = Field(False, description="keep the NPU output tensor in 16 bit")
    quant_compare: bool = Field(True, description="run the strategy x size x cut x bits comparison")
    quant_compare_sizes: list[int] = Field([64, 1024], min_length=1)
    quant_sensitivity: bool = Field(True, description="per-layer sensitivity pass")
    quant_eval_windows: Optional[int] = Field(None, ge=1, description="cap on test windows analysed")

    # ---- 06 Hailo compile --------------------------------------------------------------------
    hw_arch: Literal["hailo8", "hailo8l", "hailo8r"] = "hailo8"
    hailo_optimization_level: int = Field(2, ge=0, le=4)
    hailo_compression_level: int = Field(0, ge=0, le=5)
    hailo_calib_batch_size: int = Field(8, ge=1)
    hailo_output_16bit: bool = Field(False, description="quantization_param(<pre-Round layer>, a16_w16)")
    hailo_16bit_layers: list[str] = Field([], description="extra HN layers to keep at a16_w16")
    hailo_performance_max: bool = Field(False, description="performance_param(compiler_optimization_level=max)")
    hailo_run_emulator: bool = True

    # ---- 07 evaluate -------------------------------------------------------------------------
    backends: Optional[list[BackendName]] = Field(None, description="None = every backend available")
    hef_path: Optional[str] = Field(None, description="a HEF built elsewhere (else the run's own)")
    latency_iterations: int = Field(500, ge=1)
    latency_warmup: int = Field(50, ge=0)
    hailortcli_seconds: int = Field(10, ge=1)
    hailo_multi_process_service: bool = Field(
        False, description="share the Hailo-8 through HailoRT's multi-process service (hailort_service must "
                           "run); off: stage 07 releases the device before each hailortcli call")
    target_core_ms: float = Field(15.0, gt=0)
    target_e2e_p95_ms: float = Field(100.0, gt=0)

    # ---- 08 reliability (probability calibration) --------------------------------------------
    ece_bins: int = Field(15, ge=2)
    conformal_alpha: float = Field(0.1, gt=0, lt=1)
    bootstrap_samples: int = Field(1000, ge=10)
    target_accuracy: float = Field(0.85, gt=0, le=1)
    target_ece: float = Field(0.03, gt=0, le=1)

    # ------------------------------------------------------------------------------------------
    @field_validator("fsq_levels")
    @classmethod
    def _levels_at_least_two(cls, v: list[int]) -> list[int]:
        bad = [lv for lv in v if lv < 2]
        if bad:
            raise ValueError(f"every FSQ level count must be >= 2 (got {bad}); e.g. [8, 6, 5, 5, 4]")
        return v

    @field_validator("kernel_time")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel_time must be odd so 'same' padding keeps the time axis aligned "
                             f"(got {v}); use {v + 1}")
        return v

    @field_validator("data_dir", "checkpoint_path", "hef_path")
    @classmethod
    def _expand_home(cls, v: Optional[str]) -> Optional[str]:
        import os
        return os.path.expanduser(v) if v else v

    @field_validator("encoder_channels", "quant_compare_sizes")
    @classmethod
    def _positive_list(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError(f"entries must be >= 1 (got {v})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
        if self.val_fraction + self.conformal_fraction + self.test_fraction > 0.9 + 1e-9:
            raise ValueError("val_fraction + conformal_fraction + test_fraction must leave at least "
                             "10% of subjects for training")
        if self.dataset in ("hapt", "uci_har", "npz") and not self.data_dir:
            raise ValueError(f"dataset '{self.dataset}' needs data_dir (the folder or .npz to read); "
                             f"pass -p data_dir PATH or set it in the params file")
        if self.mode == "load" and not self.checkpoint_path:
            raise ValueError("mode 'load' needs checkpoint_path (a checkpoint.pt from an earlier run)")
        if self.dataset == "uci_har" and self.window != 128:
            raise ValueError("dataset 'uci_har' has fixed 128-sample windows: set window: 128")
        return self

    def stage_subset(self, names: list[str]) -> dict[str, Any]:
        """Values for the names a notebook declares in its parameters cell."""
        dumped = self.model_dump()
        return {n: dumped[n] for n in names if n in dumped}


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid parameters ({origin}):"]
    fields = Params.model_fields
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(whole file)"
        top = str(e["loc"][0]) if e["loc"] else ""
        if e["type"] == "extra_forbidden":
            close = _close_names(top)
            hint = f" Did you mean {close}?" if close else " See params/default.yaml for every name."
            lines.append(f"  - {key}: unknown parameter.{hint}")
            continue
        expected = ""
        if top in fields:
            ann = fields[top].annotation
            expected = f" (expected {getattr(ann, '__name__', None) or str(ann).replace('typing.', '')})"
        got = e.get("input")
        lines.append(f"  - {key}: {e['msg']}{expected}; got {got!r}")
    return "\n".join(lines)


def _close_names(name: str) -> list[str]:
    import difflib
    return difflib.get_close_matches(name, list(Params.model_fields), n=3, cutoff=0.6)


def parse_override(raw: str) -> Any:
    """Read a ``-p name value`` string as YAML, so numbers, booleans and [lists] keep their type."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return raw if value is None and raw.strip() not in ("null", "~", "None") else value


def load_params(files: list[str | Path] = (), overrides: dict[str, Any] | None = None) -> Params:
    """Merge YAML files in order, then overrides, and validate the result."""
    merged: dict[str, Any] = {}
    origins = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ParamError(f"parameter file not found: {path} (params/ holds default.yaml, smoke.yaml, "
                             f"hapt.yaml)")
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParamError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(content, dict):
            raise ParamError(f"{path} must hold a mapping of name: value, not {type(content).__name__}")
        merged.update(content)
        origins.append(str(path))
    if overrides:
        merged.update(overrides)
        origins.append("-p " + " ".join(overrides))
    return validate_params(merged, ", ".join(origins) or "defaults")


def validate_params(values: Mapping[str, Any], origin: str, only_known: bool = False) -> Params:
    """Params from a mapping, or a ParamError naming each bad key. ``only_known`` ignores names that are
    not parameters (a notebook namespace holds imports and variables too)."""
    if only_known:
        values = {k: v for k, v in values.items() if k in Params.model_fields}
    try:
        return Params(**values)
    except ValidationError as err:
        raise ParamError(_format_validation_error(err, origin)) from None


def dump_params(params: Params, path: Path) -> None:
    path.write_text(yaml.safe_dump(params.model_dump(), sort_keys=False))
