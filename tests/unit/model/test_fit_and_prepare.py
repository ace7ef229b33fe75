"""Stage-01 logic: artifacts written for later stages, and loading that cannot leak test subjects."""

import numpy as np
import pytest

from workbench.config import load_params
from workbench.data import DataError, WindowSet, prepare
from workbench.data.splits import SPLIT_NAMES
from workbench.model import fit
from workbench.runs import Run, Stage


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    params = load_params(
        [],
        {
            "synthetic_subjects": 8,
            "synthetic_windows_per_class": 2,
            "epochs": 1,
            "encoder_channels": [4],
            "head_hidden": 0,
            "seed": 3,
        },
    )
    data = prepare.prepare_data(params)
    model, config, hist = fit.fit_model(params, data, progress=False)
    stage = Stage(Run.create("t", tmp_path_factory.mktemp("out")), "01")
    fit.save_artifacts(stage, model, config, data, hist, {"test_accuracy": 0.5}, params)
    return params, data, stage


def test_windows_npz_carries_the_split(trained):
    _, data, stage = trained
    ws, split = WindowSet.load(stage.artifact("windows"))
    assert np.array_equal(ws.X, data.windows.X)
    for name in SPLIT_NAMES:
        subjects = set(ws.subject[split == name].tolist())
        assert subjects == set(data.splits.subjects[name])
    assert set(split.tolist()) == set(SPLIT_NAMES)


def test_loading_reuses_checkpoint_split_and_normaliser(trained):
    params, data, stage = trained
    meta = fit.peek_checkpoint(str(stage.artifact("checkpoint")))
    # another seed would draw other subjects; the checkpoint's split must win
    other = load_params(
        [], {**params.model_dump(), "seed": 11, "mode": "load", "checkpoint_path": str(stage.artifact("checkpoint"))}
    )
    reloaded = prepare.prepare_data(other, checkpoint_meta=meta)
    for name in SPLIT_NAMES:
        assert np.array_equal(reloaded.splits.indices(name), data.splits.indices(name))
    assert np.allclose(reloaded.normalizer.mean, data.normalizer.mean)
    model, _, _ = fit.load_model(other, reloaded)
    a = fit.evaluate_split(model, reloaded, "test")
    assert a["backend"] == "torch-fp32" and a["n"] == len(data.splits.test)


def test_unknown_subjects_for_a_checkpoint_split_are_an_error():
    with pytest.raises(DataError, match=r"subjects \[9\] are not in the checkpoint's recorded split"):
        prepare.splits_from_subjects(np.array([1, 2, 9]), {"train": [1], "val": [2], "conformal": [], "test": []})


def test_window_mismatch_is_named(trained):
    params, data, _ = trained
    bad = load_params([], {**params.model_dump(), "window": 50})
    with pytest.raises(DataError, match="set window: 100"):
        fit.model_config_for(bad, data)


def test_normaliser_comes_from_training_windows_only(trained):
    from workbench.data import Normalizer

    _, data, _ = trained
    ws = data.windows
    assert np.allclose(data.normalizer.mean, Normalizer.fit(ws.X[data.splits.train]).mean)
    assert not np.allclose(data.normalizer.mean, Normalizer.fit(ws.X).mean)


def test_checkpoint_without_recorded_split_is_refused(trained):
    params, _, stage = trained
    meta = fit.peek_checkpoint(str(stage.artifact("checkpoint")))
    meta["provenance"].pop("split_subjects")
    with pytest.raises(DataError, match="records no subject split"):
        prepare.prepare_data(params, checkpoint_meta=meta)
