"""Stage 01, model half: build and train the Conv2d-FSQ classifier or load a checkpoint, evaluate it
on a split, and save the stage's artifacts. Kept out of the notebook so it is tested and reusable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from workbench.config import Params
from workbench.data.prepare import PreparedData, data_summary, split_subjects
from workbench.errors import DataError
from workbench.evaluate.metrics import confusion_matrix

if TYPE_CHECKING:
    from workbench.model.network import FSQClassifier, ModelConfig


def model_config_for(params: Params, data: PreparedData) -> "ModelConfig":
    from workbench.model import ModelConfig

    _, c, s, t = data.windows.X.shape
    if t != params.window:
        raise DataError(f"the data has {t}-sample windows but window={params.window}; set window: {t}")
    return ModelConfig.from_params(params, in_channels=c, sites=s, num_classes=len(data.windows.label_names))


def peek_checkpoint(path: str) -> dict:
    """The checkpoint's metadata (split subjects, normaliser) before the data is loaded."""
    from workbench.model import load_checkpoint

    _, meta = load_checkpoint(path)
    return meta


def fit_model(
    params: Params, data: PreparedData, progress: bool = True
) -> tuple["FSQClassifier", "ModelConfig", dict[str, Any]]:
    """Build the model from params and the data's shape, train it, return (model, config, history)."""
    import torch

    from workbench.model import Augmenter, FSQClassifier, train_model

    config = model_config_for(params, data)
    augmenter = Augmenter(
        data.normalizer.mean, data.normalizer.std, rotation_deg=params.augment_rotation_deg, scale=params.augment_scale
    )
    torch.manual_seed(params.seed)
    model = FSQClassifier(config)
    history = train_model(
        model,
        data.arrays("train"),
        data.arrays("val"),
        epochs=params.epochs,
        batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        weight_decay=params.weight_decay,
        patience=params.patience,
        seed=params.seed,
        device=params.device,
        max_seconds=params.max_train_seconds,
        progress=progress,
        augment=augmenter if augmenter.enabled else None,
        margin_weight=params.fsq_margin_weight,
        margin=params.fsq_margin,
        bound_noise=params.fsq_bound_noise,
        margin_warmup=params.fsq_margin_warmup,
    )
    if params.qat_epochs > 0:
        history["qat"] = finetune_for_int8(model, params, data, progress=progress)
    return model, config, history


def finetune_for_int8(
    model: "FSQClassifier", params: Params, data: PreparedData, progress: bool = True
) -> dict[str, Any]:
    """Quantization-aware fine-tuning of the trained model (issue 14); returns its history.

    The fake-quant ranges come from a seeded sample of training windows of the size stage 05 uses
    for its quantization calibration set (never validation or test windows).
    """
    from workbench.model.qat import FakeQuantSpec, qat_finetune

    X_train, y_train = data.arrays("train")
    rng = np.random.default_rng(params.seed)
    take = rng.choice(len(X_train), size=min(params.quant_calib_size, len(X_train)), replace=False)
    spec = FakeQuantSpec(
        input_bits=params.qat_input_bits,
        first_conv_bits=params.qat_input_bits,
        tail_bits=params.qat_tail_bits,
        bound_on_npu=params.cut == "after_bound",
    )
    return qat_finetune(
        model,
        (X_train, y_train),
        data.arrays("val"),
        X_train[np.sort(take)],
        epochs=params.qat_epochs,
        learning_rate=params.qat_learning_rate,
        batch_size=params.batch_size,
        seed=params.seed + 7,
        spec=spec,
        margin_weight=params.fsq_margin_weight,
        margin=params.fsq_margin,
        bound_noise=params.fsq_bound_noise,
        device=params.device,
        progress=progress,
    )


def load_model(params: Params, data: PreparedData) -> tuple["FSQClassifier", "ModelConfig", dict[str, Any]]:
    """Load `checkpoint_path`, insisting that it fits the architecture the params describe."""
    from workbench.model import load_checkpoint

    config = model_config_for(params, data)
    model, meta = load_checkpoint(params.checkpoint_path, expected=config)
    if list(meta.get("label_names", [])) != list(data.windows.label_names):
        raise DataError(
            f"the checkpoint was trained on labels {meta.get('label_names')} but the data has "
            f"{data.windows.label_names}; load it with the dataset and label_set it was "
            f"trained on"
        )
    return model, config, meta


def evaluate_split(model: "FSQClassifier", data: PreparedData, split: str) -> dict[str, Any]:
    """torch-fp32 predictions, accuracy, confusion matrix and FSQ codes on one split."""
    import torch

    X, y = data.arrays(split)
    model.cpu().eval()  # train_model may leave it on CUDA; evaluation and export run on the CPU
    with torch.no_grad():
        parts = model.forward_parts(torch.from_numpy(X))
    from workbench.model.checkpoint import check_model_outputs

    check_model_outputs(model, parts, f"torch-fp32 on the {split} split")
    logits = parts["logits"].numpy()
    levels = parts["levels"].numpy().astype(np.int64)
    indices = model.fsq.codes_to_indices(parts["levels"]).numpy()
    pred = logits.argmax(1)
    k = len(data.windows.label_names)
    cm = confusion_matrix(y, pred, k) if len(y) else np.zeros((k, k), dtype=np.int64)
    return {
        "split": split,
        "backend": "torch-fp32",
        "n": int(len(y)),
        "y": y,
        "pred": pred,
        "logits": logits,
        "levels": levels,
        "indices": indices,
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "confusion": cm,
    }


def save_artifacts(
    stage: Any,
    model: "FSQClassifier",
    config: "ModelConfig",
    data: PreparedData,
    history: Optional[dict],
    metrics: dict[str, Any],
    params: Params,
) -> None:
    """checkpoint.pt, model_meta.json, windows.npz, data_summary.json, train_history.json in the stage
    folder. model_meta.json repeats the checkpoint's normaliser, labels and config as JSON, so stages
    06-08 can run where torch is not installed."""
    import json

    from workbench.model import save_checkpoint
    from workbench.model.meta import write_model_meta

    provenance = {
        "data": data.windows.provenance,
        "source": data.windows.source,
        "split_subjects": split_subjects(data),
        "seed": params.seed,
        "window": params.window,
        "hop": params.hop,
    }
    save_checkpoint(
        stage.artifact("checkpoint", must_exist=False),
        model,
        config,
        data.normalizer.to_dict(),
        data.windows.label_names,
        provenance,
        metrics,
    )
    write_model_meta(
        stage.artifact("model_meta", must_exist=False),
        normalizer=data.normalizer,
        label_names=data.windows.label_names,
        config=config,
    )
    data.windows.save(stage.artifact("windows", must_exist=False), split=data.split_of_window)
    stage.artifact("data_summary", must_exist=False).write_text(json.dumps(data_summary(data), indent=2))
    if history is not None:
        stage.artifact("train_history", must_exist=False).write_text(json.dumps(history, indent=2))
