"""Parameter types are strict and parameters without effect are never recorded as applied."""

from __future__ import annotations

import pytest

from workbench.config import ParamError, Params, load_params, parse_override, read_yaml


@pytest.mark.parametrize(
    "name,raw",
    [
        ("epochs", "true"),
        ("epochs", "3.0"),
        ("epochs", "'3'"),
        ("batch_size", "false"),
        ("learning_rate", "true"),
        ("encoder_channels", "[8, true]"),
        ("run_label", "7"),
        ("netron", "1"),
        ("sample_rate_hz", ".nan"),
        ("max_train_seconds", ".inf"),
    ],
)
def test_no_silent_coercion(name, raw):
    with pytest.raises(ParamError, match=rf"{name}"):
        load_params([], {name: parse_override(raw)})


def test_bool_for_int_names_key_type_and_value():
    with pytest.raises(ParamError) as err:
        load_params([], {"epochs": parse_override("true")})
    assert "epochs: Input should be a valid integer (expected int); got True" in str(err.value)


@pytest.mark.parametrize(
    "raw,value",
    [
        ("1e-3", 1e-3),
        ("2.5E4", 2.5e4),
        ("3", 3),
        ("010", 10),
        ("0x10", 16),
        ("yes", "yes"),
        ("off", "off"),
        ("True", True),
        ("2026-01-02", "2026-01-02"),
        ("[1, 2.0]", [1, 2.0]),
    ],
)
def test_yaml_12_scalars(raw, value):
    got = read_yaml(raw)
    assert got == value and type(got) is type(value)


def test_int_is_accepted_for_float_fields_exactly():
    p = load_params([], {"learning_rate": 1, "sample_rate_hz": 100})
    assert p.learning_rate == 1.0 and p.sample_rate_hz == 100.0


def test_yaml_file_exponent_is_a_float(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("learning_rate: 5e-4\nepochs: 010\n")
    p = load_params([f])
    assert p.learning_rate == pytest.approx(5e-4) and p.epochs == 10


@pytest.mark.parametrize(
    "dataset,extra", [("synthetic", {}), ("npz", {"data_dir": "x.npz"}), ("uci_har", {"data_dir": "d", "window": 128})]
)
def test_label_set_only_for_hapt(dataset, extra):
    with pytest.raises(ParamError, match=rf"label_set applies only to dataset 'hapt'.*'{dataset}'"):
        load_params([], {"dataset": dataset, "label_set": [1, 2], **extra})
    assert load_params([], {"dataset": "hapt", "data_dir": "d", "label_set": [1, 2]}).label_set == [1, 2]


def test_parameters_without_effect_are_listed():
    p = load_params([], {"dataset": "npz", "data_dir": "x.npz", "synthetic_subjects": 40, "hop": 10})
    unused = p.not_applied()
    assert {"synthetic_subjects", "synthetic_channels", "hop"} <= set(unused)
    assert set(p.explicitly_set_not_applied()) == {"synthetic_subjects", "hop"}
    assert "epochs" not in unused and Params().not_applied() == {}
    hef = load_params([], {"hef_path": "m.hef", "backends": ["ort-fp32"]}).not_applied()
    assert "hef_path" in hef and "hailo8-device" in hef["hef_path"]
    loaded = load_params([], {"mode": "load", "checkpoint_path": "c.pt", "epochs": 5})
    assert loaded.explicitly_set_not_applied() == {"epochs": "mode is 'load': the checkpoint is not trained again"}


def test_sample_rate_defaults_to_the_data():
    assert Params().sample_rate_hz is None
    assert "sample_rate_hz" not in read_yaml(
        (__import__("pathlib").Path(__file__).resolve().parents[3] / "params" / "default.yaml").read_text()
    )
