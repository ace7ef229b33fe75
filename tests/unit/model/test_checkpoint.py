"""Checkpoints: weights_only round trip, mismatch errors that name tensors and fields, bad files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from workbench.model import CheckpointError, FSQClassifier, ModelConfig, load_checkpoint, save_checkpoint

CFG = dict(
    in_channels=6,
    sites=1,
    window=50,
    num_classes=4,
    encoder_channels=[8, 16],
    kernel_time=3,
    fsq_levels=[8, 5, 5, 5],
    head_hidden=12,
    dropout=0.1,
)
LABELS = ["walk", "up", "down", "sit"]


def _saved(tmp_path, **overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**CFG, **overrides})
    m = FSQClassifier(cfg)
    # Move BN running stats off their defaults so the round trip checks buffers too.
    m.train()
    with torch.no_grad():
        m(torch.randn(16, 6, 1, 50))
    m.eval()
    norm = {"mean": np.full((6, 1, 1), 0.5, np.float32), "std": np.full((6, 1, 1), 2.0, np.float32)}
    path = save_checkpoint(
        tmp_path / "ckpt" / "checkpoint.pt",
        m,
        cfg,
        norm,
        LABELS,
        provenance={"kind": "real", "source": "hapt", "subjects": np.arange(3)},
        metrics={"val_acc": np.float64(0.91), "history": {"loss": [1.0, 0.5]}},
    )
    return path, m, cfg


def test_round_trip_gives_identical_logits_and_metadata(tmp_path):
    path, m, cfg = _saved(tmp_path)
    raw = torch.load(path, weights_only=True)  # plain types + tensors only
    assert raw["normalizer"]["mean"] == [[[0.5]]] * 6
    loaded, meta = load_checkpoint(path, expected=cfg)
    assert not loaded.training
    x = torch.randn(9, 6, 1, 50, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    assert meta["config"] == cfg and meta["label_names"] == LABELS
    assert meta["provenance"] == {"kind": "real", "source": "hapt", "subjects": [0, 1, 2]}
    assert meta["metrics"]["val_acc"] == 0.91 and isinstance(meta["metrics"]["val_acc"], float)
    assert np.asarray(meta["normalizer"]["std"]).shape == (6, 1, 1)
    assert "state_dict" not in meta


def test_config_mismatch_names_fields_tensors_and_fix(tmp_path):
    path, _, cfg = _saved(tmp_path)
    want = ModelConfig(**{**CFG, "encoder_channels": [12, 16], "fsq_levels": [8, 6, 5, 5, 4]})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, expected=want)
    msg = str(err.value)
    assert "encoder_channels: [8, 16] vs [12, 16]" in msg
    assert "fsq_levels: [8, 5, 5, 5] vs [8, 6, 5, 5, 4]" in msg
    assert "encoder.0.conv.weight: checkpoint (8, 6, 1, 3) vs model (12, 6, 1, 3)" in msg
    assert "encoder.1.conv.weight: checkpoint (16, 8, 1, 3) vs model (16, 12, 1, 3)" in msg
    assert "project.weight: checkpoint (4, 16) vs model (5, 16)" in msg
    assert "Fix:" in msg and "encoder_channels: [8, 16]" in msg.split("Fix:")[1]


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    path, _, _ = _saved(tmp_path)
    want = ModelConfig(**{**CFG, "head_hidden": 0})  # linear head: head.3.* disappear
    with pytest.raises(CheckpointError, match=r"unexpected in the checkpoint: head\.3\.weight, head\.3\.bias"):
        load_checkpoint(path, expected=want)
    # A checkpoint whose tensors no longer fit its own config (edited file, changed code).
    raw = torch.load(path, weights_only=True)
    del raw["state_dict"]["project.bias"]
    raw["state_dict"]["head.0.weight"] = torch.zeros(12, 3)
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "edited.pt")
    assert "missing from the checkpoint: project.bias" in str(err.value)
    assert "head.0.weight: checkpoint (12, 3) vs model (12, 4)" in str(err.value)


def test_non_shape_difference_is_still_reported(tmp_path):
    path, _, _ = _saved(tmp_path)
    with pytest.raises(CheckpointError, match=r"(?s)dropout: 0.1 vs 0.3.*All tensor shapes would fit"):
        load_checkpoint(path, expected=ModelConfig(**{**CFG, "dropout": 0.3}))


class _Evil:
    pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a workbench checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="no 'workbench-fsq-checkpoint' format tag"):
        load_checkpoint(other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "workbench-fsq-checkpoint", "obj": _Evil()}, pickled)
    with pytest.raises(CheckpointError, match=r"pickled reference to test_checkpoint._Evil") as err:
        load_checkpoint(pickled)
    assert "weights_only" not in str(err.value) and "safe_globals" not in str(err.value)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="not a workbench checkpoint"):
        load_checkpoint(plain)


def test_save_rejects_what_weights_only_cannot_load(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(**CFG)
    m = FSQClassifier(cfg)
    with pytest.raises(CheckpointError, match=r"provenance\.when: cannot store a _Evil"):
        save_checkpoint(tmp_path / "c.pt", m, cfg, {}, LABELS, provenance={"when": _Evil()}, metrics={})
    with pytest.raises(CheckpointError, match="3 label names for a model with 4 classes"):
        save_checkpoint(tmp_path / "c.pt", m, cfg, {}, LABELS[:3], provenance={}, metrics={})
    other = ModelConfig(**{**CFG, "head_hidden": 4})
    with pytest.raises(CheckpointError, match="different config"):
        save_checkpoint(tmp_path / "c.pt", m, other, {}, LABELS, provenance={}, metrics={})
