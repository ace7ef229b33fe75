"""WindowSet files, generic .npz arrays, subject splits, normalisation, check_dataset and dispatch."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.config import Params
from workbench.data import (
    DataError,
    Normalizer,
    WindowSet,
    check_dataset,
    load_dataset,
    load_npz,
    make_synthetic,
    split_by_subject,
)
from workbench.data.splits import Splits


def _arrays(n=12, c=3, s=2, t=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return dict(X=rng.normal(size=(n, c, s, t)).astype(np.float32), y=np.arange(n) % k, subject=np.arange(n) // 3 + 10)


def test_windowset_round_trip_with_split(tmp_path):
    ws = make_synthetic(3, 2, channels=6, sites=2, window=30, seed=4)
    split = np.array(["train", "test"] * (ws.n_windows // 2))
    ws.save(tmp_path / "w.npz", split=split)
    back, sp = WindowSet.load(tmp_path / "w.npz")
    np.testing.assert_array_equal(back.X, ws.X)
    np.testing.assert_array_equal(back.y, ws.y)
    np.testing.assert_array_equal(sp, split)
    assert (back.label_names, back.channel_names, back.site_names) == (ws.label_names, ws.channel_names, ws.site_names)
    assert back.provenance == ws.provenance and back.source == "synthetic"
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        assert z["label_names"].dtype.kind == "U"
    sub = ws.subset(np.flatnonzero(ws.y == 2))
    assert sub.n_windows == 6 and set(sub.y.tolist()) == {2}
    with pytest.raises(DataError, match="one name per window"):
        ws.save(tmp_path / "x.npz", split=split[:-1])


def test_windowset_rejects_inconsistent_arrays():
    a = _arrays()
    with pytest.raises(DataError, match="labels must lie in 0..1"):
        WindowSet(
            **a,
            label_names=["a", "b"],
            channel_names=["x", "y", "z"],
            site_names=["p", "q"],
            sample_rate_hz=50,
            source="npz",
        )
    with pytest.raises(DataError, match="2 channel names for 3 channels"):
        WindowSet(
            **a,
            label_names=list("abc"),
            channel_names=["x", "y"],
            site_names=["p", "q"],
            sample_rate_hz=50,
            source="npz",
        )


def test_load_npz_valid_and_names(tmp_path):
    a = _arrays()
    np.savez(tmp_path / "d.npz", **a, label_names=np.array(["sit", "walk", "run"]), sample_rate_hz=25.0)
    ws = load_npz(tmp_path / "d.npz")
    assert ws.X.shape == (12, 3, 2, 10) and ws.label_names == ["sit", "walk", "run"]
    assert ws.sample_rate_hz == 25.0 and ws.source == "npz" and ws.provenance["kind"] == "real"
    assert ws.channel_names == ["ch0", "ch1", "ch2"]
    # a WindowSet file keeps its own provenance kind through load_npz
    make_synthetic(2, 1, window=10).save(tmp_path / "syn.npz")
    assert load_npz(tmp_path / "syn.npz").provenance["kind"] == "synthetic"


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(X=None), r"missing array\(s\) \['X'\]"),
        (dict(X=np.zeros((12, 3, 10), np.float32)), r"looks like \(N, C, T\).*add a site axis with X\[:, :, None, :\]"),
        (
            dict(X=np.zeros((12, 10, 3), np.float32)),
            r"looks like \(N, T, C\).*X\.transpose\(0, 2, 1\)\[:, :, None, :\]",
        ),
        (dict(y=np.arange(11)), r"y must have shape \(12,\)"),
        (dict(subject=np.linspace(0, 1, 12)), "subject must be integers"),
        (dict(label_names=np.array(["a", "b"])), r"label 2 at window 2 has no name"),
        (dict(y=np.arange(12) - 1), "labels must be 0..K-1"),
        (dict(sample_rate_hz=-5.0), "sample_rate_hz must be one positive number"),
    ],
)
def test_load_npz_errors(tmp_path, change, message):
    a = _arrays()
    a.update(sample_rate_hz=50.0)
    a.update(change)
    np.savez(tmp_path / "d.npz", **{k: v for k, v in a.items() if v is not None})
    with pytest.raises(DataError, match=message):
        load_npz(tmp_path / "d.npz")


def test_load_npz_nan_rate_conflict_and_missing(tmp_path):
    a = _arrays()
    a["X"][4, 1, 0, 7] = np.nan
    np.savez(tmp_path / "d.npz", **a, sample_rate_hz=50.0)
    with pytest.raises(DataError, match="first at window 4, channel 1, site 0, sample 7"):
        load_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", **_arrays(), sample_rate_hz=100.0)
    with pytest.raises(DataError, match="records sample_rate_hz=100 but the parameters set sample_rate_hz=50"):
        load_npz(tmp_path / "e.npz", sample_rate_hz=50.0)
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "nope.npz")
    np.savez(tmp_path / "f.npz", **_arrays())
    with pytest.raises(DataError, match="no sample_rate_hz"):
        load_npz(tmp_path / "f.npz")
    assert load_npz(tmp_path / "f.npz", sample_rate_hz=20.0).sample_rate_hz == 20.0


def test_split_disjoint_deterministic_nonempty():
    subject = np.repeat(np.arange(20), 7)
    a = split_by_subject(subject, 0.15, 0.15, 0.2, seed=3)
    b = split_by_subject(subject, 0.15, 0.15, 0.2, seed=3)
    c = split_by_subject(subject, 0.15, 0.15, 0.2, seed=4)
    assert a.subjects == b.subjects and a.subjects != c.subjects
    sets = [set(a.subjects[k]) for k in ("train", "val", "conformal", "test")]
    assert [len(s) for s in sets] == [10, 3, 3, 4]
    assert set().union(*sets) == set(range(20)) and sum(map(len, sets)) == 20
    for name, subs in a.subjects.items():
        idx = a.indices(name)
        assert len(idx) > 0 and set(subject[idx].tolist()) == set(subs)
    names = a.names_per_window(len(subject))
    back = Splits.from_names(names, subject)
    assert back.subjects == a.subjects and np.array_equal(back.test, a.test)


def test_split_explicit_test_subjects_and_too_few():
    subject = np.repeat(np.array([2, 4, 9, 10, 12, 13, 18, 20]), 3)
    sp = split_by_subject(subject, 0.15, 0.15, 0.2, seed=0, test_subjects=[9, 4])
    assert sp.subjects["test"] == [4, 9]
    assert not set(sp.subjects["train"]) & {4, 9} and len(sp.subjects["train"]) >= 1
    with pytest.raises(DataError, match=r"test_subjects \[99\] not in the data"):
        split_by_subject(subject, 0.15, 0.15, 0.2, test_subjects=[99])
    with pytest.raises(DataError, match=r"too few subjects \(3\).*need at least 4"):
        split_by_subject(np.array([1, 2, 3]), 0.15, 0.15, 0.2)


def test_normalizer_statistics_match_an_independent_computation():
    # that stage 01 fits it on the training split only is asserted in test_stage01 on the real path
    ws = make_synthetic(8, 2, channels=6, sites=2, window=20, seed=2)
    sp = split_by_subject(ws.subject, 0.15, 0.15, 0.2, seed=0)
    norm = Normalizer.fit(ws.X[sp.train])
    ref = ws.X[sp.train].astype(np.float64).transpose(1, 2, 0, 3).reshape(6, 2, -1)
    np.testing.assert_allclose(norm.mean[:, :, 0], ref.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(norm.std[:, :, 0], ref.std(-1), rtol=1e-5)
    z = norm.apply(ws.X[sp.train])
    np.testing.assert_allclose(z.mean(axis=(0, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 3)), 1, atol=1e-3)
    back = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(back.mean, norm.mean)
    assert isinstance(norm.to_dict()["std"][0][0][0], float)
    flat = Normalizer.fit(np.zeros((3, 2, 1, 5)))
    assert np.all(flat.std == np.float32(1e-3))
    with pytest.raises(DataError, match=r"fitted on \(C, S\) = \(6, 2\)"):
        norm.apply(np.zeros((1, 3, 2, 20)))


def test_check_dataset_npz_and_unknown(tmp_path):
    np.savez(tmp_path / "d.npz", **_arrays(), sample_rate_hz=50.0)
    text = check_dataset(tmp_path / "d.npz")
    assert "windows: 12 of 10 samples at 50 Hz" in text and "subjects: 4 (10..13)" in text
    np.savez(tmp_path / "n.npz", **_arrays())
    assert "WARNING: no sample_rate_hz" in check_dataset(tmp_path / "n.npz")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="not an .npz"):
        check_dataset(tmp_path / "x.csv")
    with pytest.raises(DataError, match="unknown layout"):
        check_dataset(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        check_dataset(tmp_path / "missing")


def test_load_dataset_dispatch(tmp_path):
    p = Params(
        synthetic_subjects=4, synthetic_windows_per_class=2, synthetic_channels=6, synthetic_sites=1, window=40, seed=5
    )
    ws = load_dataset(p)
    assert ws.X.shape == (48, 6, 1, 40) and ws.provenance["seed"] == 5
    np.savez(tmp_path / "d.npz", **_arrays(), sample_rate_hz=50.0)
    with pytest.raises(DataError, match="set window: 10"):
        load_dataset(Params(dataset="npz", data_dir=str(tmp_path / "d.npz")))
    assert load_dataset(Params(dataset="npz", data_dir=str(tmp_path / "d.npz"), window=10)).n_windows == 12
    with pytest.raises(DataError, match="set sample_rate_hz: 50"):
        load_dataset(Params(dataset="hapt", data_dir=str(tmp_path), sample_rate_hz=100.0))


def test_preflight_rejects_before_any_run(tmp_path, hapt_dir):
    from workbench.config import load_params
    from workbench.data.preflight import preflight

    with pytest.raises(DataError, match="data_dir does not exist"):
        preflight(load_params([], {"dataset": "hapt", "data_dir": str(tmp_path / "nope")}))
    with pytest.raises(DataError, match=r"window=5000 is longer than every segment"):
        preflight(load_params([], {"dataset": "hapt", "data_dir": str(hapt_dir), "window": 5000}))
    with pytest.raises(DataError, match=r"activity ids \[13\]"):
        preflight(load_params([], {"dataset": "hapt", "data_dir": str(hapt_dir), "label_set": [1, 13]}))
    preflight(load_params([], {"dataset": "hapt", "data_dir": str(hapt_dir)}))  # the real data fits


def test_preflight_npz_window(tmp_path):
    from workbench.config import load_params
    from workbench.data.preflight import preflight

    f = tmp_path / "d.npz"
    np.savez(f, X=np.zeros((2, 3, 1, 64), np.float32), y=np.zeros(2, int), subject=np.arange(2), sample_rate_hz=50.0)
    with pytest.raises(DataError, match="set window: 64"):
        preflight(load_params([], {"dataset": "npz", "data_dir": str(f), "window": 100}))
