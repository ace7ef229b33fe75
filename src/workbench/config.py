"""Run parameters: one flat, typed namespace shared by every notebook.

Flat on purpose: papermill's ``-p name value`` and ``workbench run -p`` address a parameter by one
name, and each notebook declares only the names it reads in its ``parameters`` cell. The schema is
checked before anything runs, so a typo or an impossible value costs seconds, not a training run.
"""

from __future__ import annotations

import re
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
# `workbench serve --backend`: short names for the serving paths -> the backend name every number carries.
SERVE_BACKENDS = {"hailo8-device": HAILO8_DEVICE, "ort-int8": ORT_INT8, "ort-fp32": ORT_FP32}
ConformalMethod = Literal["LAC marginal", "APS marginal", "LAC Mondrian", "APS Mondrian"]


class Params(BaseModel):
    # strict: a value must already have the field's type (no bool for int, no "3" for 3, no 3.7 for 3);
    # numbers in YAML files and -p overrides are read as YAML 1.2 (see read_yaml), so 1e-3 is a float.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    # ---- run -------------------------------------------------------------------------------
    run_label: str = Field("run", description="short label that goes into the run id")
    seed: int = Field(0, description="seed for data generation, splits, initialisation and sampling")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="torch device for training and evaluation (auto: cuda when available)"
    )

    # ---- 01 data ---------------------------------------------------------------------------
    dataset: Literal["synthetic", "hapt", "uci_har", "npz"] = Field(
        "synthetic",
        description="where windows come from: synthetic IMU data, UCI HAPT raw data, UCI HAR, or an .npz file",
    )
    data_dir: Optional[str] = Field(None, description="folder (hapt, uci_har) or .npz file (npz)")
    window: int = Field(100, ge=4, description="samples per window")
    hop: int = Field(50, ge=1, description="samples between window starts (50 at window 100: half-overlapping windows)")
    sample_rate_hz: Optional[float] = Field(
        None,
        gt=0,
        description="None: the data's own rate (the .npz's sample_rate_hz, the dataset README, "
        "50 Hz for synthetic); a value that contradicts the data is an error",
    )
    label_set: Optional[list[int]] = Field(
        None, description="hapt only: activity ids to keep (default 1-6, the basic activities)"
    )
    synthetic_subjects: int = Field(24, ge=4, description="synthetic data: number of subjects (splits are by subject)")
    synthetic_windows_per_class: int = Field(24, ge=1, description="synthetic data: windows per subject and behaviour")
    synthetic_channels: int = Field(
        9, ge=1, description="synthetic data: channels per site (9: accelerometer, gyroscope, magnetometer)"
    )
    synthetic_sites: int = Field(
        2, ge=1, description="synthetic data: sensor sites on the body (each with its own channels)"
    )
    val_fraction: float = Field(0.15, gt=0, lt=1, description="share of subjects for validation")
    conformal_fraction: float = Field(0.15, gt=0, lt=1, description="share for conformal calibration")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of subjects for test")
    test_subjects: Optional[list[int]] = Field(None, description="explicit test subjects (overrides fraction)")

    # ---- 01 model and training ---------------------------------------------------------------
    mode: Literal["train", "load", "import"] = Field(
        "train", description="train a new model, load one from checkpoint_path, or import your own (model_path)"
    )
    checkpoint_path: Optional[str] = Field(
        None, description="mode load: a checkpoint.pt written by stage 01 of an earlier run"
    )
    # bring your own model (mode: import)
    model_path: Optional[str] = Field(
        None, description="import: an .onnx file, or package.module:function (a factory returning the torch.nn.Module)"
    )
    weights_path: Optional[str] = Field(None, description="import from a factory: the state_dict file")
    normalizer_path: Optional[str] = Field(
        None,
        description='import: JSON {"mean": [...], "std": [...]} per channel (C) or channel x site (C x S), '
        "in data units; unset: fit on the training split",
    )
    model_input_layout: Literal["NCST", "NCT", "NTC"] = Field(
        "NCST", description="import: the model's input layout; NCT/NTC take channel c*S+s of (C, S, T) windows"
    )
    logits_output: Optional[str] = Field(
        None,
        description="import: graph output with the class logits (unset: first output whose last dim is "
        "the number of classes; 'none': an encoder without class output)",
    )
    encoder_channels: list[int] = Field(
        [32, 64, 64], min_length=1, description="output channels of each convolution block of the encoder"
    )
    kernel_time: int = Field(5, ge=1, description="temporal kernel width of every conv")
    fsq_levels: list[int] = Field(
        [8, 6, 5, 5, 4],
        min_length=1,
        description="FSQ levels per code dimension (each at least 2); their product is the codebook size",
    )
    head_hidden: int = Field(64, ge=0, description="hidden units of the classifier head (0: a linear head)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout probability in the classifier head")
    epochs: int = Field(30, ge=1, description="maximum training epochs (early stopping may end sooner)")
    batch_size: int = Field(128, ge=1, description="training batch size in windows")
    learning_rate: float = Field(3.0e-3, gt=0, description="peak AdamW learning rate of the one-cycle schedule")
    weight_decay: float = Field(1.0e-4, ge=0, description="AdamW weight decay")
    patience: int = Field(6, ge=1, description="early stopping: epochs without validation gain")
    augment_rotation_deg: float = Field(
        0.0, ge=0, le=180, description="training: random 3-D rotation of each site's xyz triplets"
    )
    augment_scale: float = Field(0.0, ge=0, lt=1, description="training: random gain U[1-s, 1+s] per sensor")
    max_train_seconds: Optional[float] = Field(None, gt=0, description="stop training after this long")
    # FSQ codes that survive INT8 (issue 14, docs/QUANT.md): training-time remedies.
    fsq_margin_weight: float = Field(
        0.0,
        ge=0,
        description="training: weight of the FSQ margin term that keeps "
        "pre-Round values away from the .5 rounding thresholds",
    )
    fsq_margin: float = Field(0.25, gt=0, le=0.5, description="training: margin (code units) the term asks for")
    fsq_margin_warmup: float = Field(
        0.0, ge=0, le=1, description="training: share of the schedule over which the margin weight ramps up from 0"
    )
    fsq_bound_noise: float = Field(
        0.0, ge=0, lt=0.5, description="training: U(-a, a) noise on the FSQ bound before rounding"
    )
    qat_epochs: int = Field(0, ge=0, description="quantization-aware fine-tuning epochs after training (0: off)")
    qat_learning_rate: float = Field(3.0e-4, gt=0, description="peak learning rate of the fine-tuning")
    qat_input_bits: Literal[8, 16] = Field(16, description="fine-tuning: bits of the input layer + first conv")
    qat_tail_bits: Literal[8, 16] = Field(16, description="fine-tuning: bits of the FSQ tail (projection, bound)")

    # ---- 02 export ---------------------------------------------------------------------------
    opset: int = Field(
        13, ge=11, le=21, description="ONNX opset of the exported model (the Hailo DFC reads 11-17 best)"
    )
    simplify: Literal["none", "onnxslim", "onnxsim"] = Field(
        "none", description="graph simplifier run after export (none keeps the exporter's graph)"
    )
    parity_windows: int = Field(512, ge=1, description="held-out windows used for parity checks")
    parity_cosine_min: float = Field(
        0.99999, gt=0, le=1, description="export check: smallest acceptable cosine between PyTorch and ONNX outputs"
    )

    # ---- 03 inspect --------------------------------------------------------------------------
    netron: bool = Field(True, description="start Netron on localhost when a notebook runs interactively")

    # ---- 04 split ----------------------------------------------------------------------------
    cut: Literal["after_bound", "after_projection"] = Field(
        "after_bound", description="where the NPU part ends: after FSQ's tanh bound or after the projection before it"
    )
    host_ops: list[str] = Field(["Round"], min_length=1, description="op types the NPU cannot run")
    cut_tensor: Optional[str] = Field(
        None,
        description="cut at this tensor instead of the FSQ chain found in "
        "the graph (graphs whose quantizer is not FSQ)",
    )

    # ---- 05 INT8 quantization calibration (quant) --------------------------------------------
    quant_calib_strategy: Literal["random_windows", "stratified", "gaussian_noise"] = Field(
        "stratified",
        description="how INT8 calibration windows are chosen (gaussian_noise is a deliberately poor baseline)",
    )
    quant_calib_size: int = Field(1024, ge=1, description="number of windows in the INT8 calibration set")
    quant_calib_method: Literal["MinMax", "Entropy", "Percentile", "Distribution"] = Field(
        "MinMax", description="onnxruntime calibration method that sets the INT8 ranges"
    )
    quant_compare: bool = Field(True, description="run the strategy x size x cut x bits comparison")
    quant_compare_sizes: list[int] = Field(
        [64, 1024], min_length=1, description="calibration set sizes tried by the strategy x size comparison"
    )
    quant_sensitivity: bool = Field(True, description="per-layer sensitivity pass")
    quant_eval_windows: Optional[int] = Field(None, ge=1, description="cap on windows analysed per split")
    # Remedies (issue 14, docs/QUANT.md): each rung of the ladder is measured on VALIDATION windows and
    # the pick (quant_remedy: auto) flows into stages 06-08; test windows only report.
    quant_remedy: Literal[
        "auto", "int8", "equalize", "equalize_clip", "input16", "input16_tail16", "equalize_clip_tail16"
    ] = Field(
        "auto",
        description="auto: the rung with the fewest validation code flips (cheapest within "
        "quant_pick_tolerance); or force one rung",
    )
    quant_clip_percentile: float = Field(
        99.9,
        gt=50,
        le=100,
        description="input range clipped at this calibration percentile (and 100 - it) in the clip rungs",
    )
    quant_allow_16bit: bool = Field(True, description="may auto pick rungs with a16_w16 layers")
    quant_pick_tolerance: float = Field(
        0.002, ge=0, description="flip-rate slack within which auto prefers the cheaper rung"
    )

    # ---- 06 Hailo compile --------------------------------------------------------------------
    hw_arch: Literal["hailo8", "hailo8l", "hailo8r"] = Field(
        "hailo8", description="Hailo target of the Dataflow Compiler"
    )
    hailo_optimization_level: int = Field(
        2, ge=0, le=4, description="DFC model optimization level (0 fastest, 4 most accurate; above 0 wants a GPU)"
    )
    hailo_compression_level: int = Field(0, ge=0, le=5, description="DFC weight compression level (0 none)")
    hailo_calib_batch_size: int = Field(8, ge=1, description="batch size the DFC uses while calibrating")
    hailo_output_16bit: bool = Field(False, description="quantization_param(<pre-Round layer>, a16_w16)")
    hailo_16bit_layers: list[str] = Field([], description="extra HN layers to keep at a16_w16")
    hailo_performance_max: bool = Field(
        False, description="ask the DFC compiler for its maximum performance optimization (slow to compile)"
    )
    hailo_run_emulator: bool = Field(True, description="run the DFC emulator on the test windows after optimization")

    # ---- 07 evaluate -------------------------------------------------------------------------
    backends: Optional[list[BackendName]] = Field(
        None, description="evaluation backends (None: every backend available here)"
    )
    hef_path: Optional[str] = Field(None, description="a HEF built elsewhere (else the run's own)")
    latency_iterations: int = Field(500, ge=1, description="timed single-window iterations per backend")
    latency_warmup: int = Field(50, ge=0, description="untimed iterations before timing starts")
    hailortcli_seconds: int = Field(10, ge=1, description="duration of each hailortcli run or benchmark on a Hailo-8")
    hailo_multi_process_service: bool = Field(
        False,
        description="share the Hailo-8 through HailoRT's multi-process service (hailort_service must "
        "run); off: stage 07 releases the device before each hailortcli call",
    )
    target_core_ms: float = Field(15.0, gt=0, description="latency target for the NPU part (p95, ms)")
    target_e2e_p95_ms: float = Field(100.0, gt=0, description="end-to-end latency target (p95, ms)")

    # ---- 08 reliability (probability calibration) --------------------------------------------
    ece_bins: int = Field(15, ge=2, description="equal-width confidence bins for ECE")
    conformal_alpha: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="conformal miscoverage: prediction sets should contain the true class with probability 1 - alpha",
    )
    conformal_subject_delta: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="subject-level conformal: allowed share of new subjects whose own "
        "coverage falls below 1 - conformal_alpha (needs at least (1 - delta) / delta calibration subjects)",
    )
    bootstrap_samples: int = Field(1000, ge=10, description="subject bootstrap resamples for confidence intervals")
    target_accuracy: float = Field(0.85, gt=0, le=1, description="report card: smallest acceptable test accuracy")
    target_ece: float = Field(
        0.03, gt=0, le=1, description="report card: largest acceptable ECE after temperature scaling"
    )

    # ---- 09 deploy bundle ----------------------------------------------------------------------
    deploy_conformal_method: ConformalMethod = Field(
        "LAC marginal", description="which of stage 08's conformal predictors the inference service applies"
    )

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
            raise ValueError(
                f"kernel_time must be odd so 'same' padding keeps the time axis aligned (got {v}); use {v + 1}"
            )
        return v

    @field_validator("data_dir", "checkpoint_path", "hef_path", "weights_path", "normalizer_path")
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
            raise ValueError(
                "val_fraction + conformal_fraction + test_fraction must leave at least 10% of subjects for training"
            )
        if self.dataset in ("hapt", "uci_har", "npz") and not self.data_dir:
            raise ValueError(
                f"dataset '{self.dataset}' needs data_dir (the folder or .npz to read); "
                f"pass -p data_dir PATH or set it in the params file"
            )
        if self.mode == "load" and not self.checkpoint_path:
            raise ValueError("mode 'load' needs checkpoint_path (a checkpoint.pt from an earlier run)")
        if self.mode == "import" and not self.model_path:
            raise ValueError(
                "mode 'import' needs model_path: an .onnx file or package.module:function (with weights_path)"
            )
        if self.dataset == "uci_har" and self.window != 128:
            raise ValueError("dataset 'uci_har' has fixed 128-sample windows: set window: 128")
        if self.label_set is not None and self.dataset != "hapt":
            raise ValueError(
                f"label_set applies only to dataset 'hapt' (it picks HAPT activity ids); dataset "
                f"'{self.dataset}' would train on every class while the run recorded "
                f"{self.label_set}. Remove label_set, or keep only the wanted classes in the data "
                f"itself (for npz: X[np.isin(y, keep)] with y remapped to 0..K-1)"
            )
        return self

    def not_applied(self) -> dict[str, str]:
        """Parameters whose value has no effect with this dataset / mode, with the reason.

        Recorded next to the parameters in the manifest so no one reads them as applied; the run
        prints the ones the user set explicitly (`model_fields_set`)."""
        out: dict[str, str] = {}
        if self.dataset != "synthetic":
            for name in ("synthetic_subjects", "synthetic_windows_per_class", "synthetic_channels", "synthetic_sites"):
                out[name] = f"dataset is '{self.dataset}', not synthetic"
        if self.dataset in ("npz", "uci_har"):
            out["hop"] = f"dataset '{self.dataset}' holds windows already cut"
        if self.mode == "train" and self.checkpoint_path:
            out["checkpoint_path"] = "mode is 'train'; the checkpoint is only read with mode 'load'"
        if self.hef_path and self.backends is not None and HAILO8_DEVICE not in self.backends:
            out["hef_path"] = f"backends {self.backends} do not include {HAILO8_DEVICE}, the only one that runs a HEF"
        if self.mode == "load":
            for name in (
                "epochs",
                "batch_size",
                "learning_rate",
                "weight_decay",
                "patience",
                "augment_rotation_deg",
                "augment_scale",
                "max_train_seconds",
                "dropout",
            ):
                out[name] = "mode is 'load': the checkpoint is not trained again"
        return out

    def explicitly_set_not_applied(self) -> dict[str, str]:
        """The subset of `not_applied` the user set (in a file or with -p), worth a warning."""
        return {k: v for k, v in self.not_applied().items() if k in self.model_fields_set}

    def stage_subset(self, names: list[str]) -> dict[str, Any]:
        """Values for the names a notebook declares in its parameters cell."""
        dumped = self.model_dump()
        return {n: dumped[n] for n in names if n in dumped}


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid parameters ({origin}):"]
    fields = Params.model_fields
    for e in err.errors():
        if not e["loc"]:  # a rule across parameters: its message names them
            lines.append(f"  - {str(e['msg']).removeprefix('Value error, ')}")
            continue
        key = ".".join(str(p) for p in e["loc"])
        top = str(e["loc"][0])
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


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars: ``1e-3`` is a float (YAML 1.1 reads a string) and
    only true/false are booleans (YAML 1.1 also turns yes/no/on/off into booleans)."""


_REPLACED_TAGS = (
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:timestamp",
)
_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED_TAGS]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)


def _construct_int12(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    """Decimal unless 0x / 0o: YAML 1.1 would read 010 as octal 8."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    if text.startswith(("0x", "0o")):
        return int(text[2:], 16 if text[1] == "x" else 8)
    return int(text, 10)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int12)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[0-9][0-9_]*[eE][-+]?[0-9]+)
                  |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
# a float resolver must be tried before the int one for the same first character
for _ch, _res in _Yaml12Loader.yaml_implicit_resolvers.items():
    _res.sort(key=lambda tr: tr[0] != "tag:yaml.org,2002:float")


def read_yaml(text: str) -> Any:
    """Parse YAML text with YAML 1.2 numbers and booleans (parameter files, sweeps, -p values)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def parse_override(raw: str) -> Any:
    """Read a ``-p name value`` string as YAML, so numbers, booleans and [lists] keep their type."""
    try:
        value = read_yaml(raw)
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
            raise ParamError(f"parameter file not found: {path} (params/ holds default.yaml, smoke.yaml, hapt.yaml)")
        try:
            content = read_yaml(path.read_text()) or {}
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
