from pathlib import Path

import pytest

from workbench.config import ParamError, Params, load_params, parse_override

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["default.yaml", "smoke.yaml", "hapt.yaml"])
def test_shipped_param_files_validate(name):
    p = load_params([ROOT / "params" / name])
    assert isinstance(p, Params)


def test_default_is_the_seed_configuration():
    p = load_params([ROOT / "params" / "default.yaml"])
    assert (p.dataset, p.synthetic_channels, p.synthetic_sites, p.window) == ("synthetic", 9, 2, 100)
    assert p.fsq_levels == [8, 6, 5, 5, 4]


def test_unknown_name_is_rejected_with_suggestion(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("fsq_level: [8, 5]\n")
    with pytest.raises(ParamError) as e:
        load_params([f])
    assert "fsq_level: unknown parameter" in str(e.value)
    assert "fsq_levels" in str(e.value)


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ParamError) as e:
        load_params([], {"epochs": "many"})
    msg = str(e.value)
    assert "epochs" in msg and "expected int" in msg and "'many'" in msg


def test_levels_below_two_rejected():
    with pytest.raises(ParamError, match="must be >= 2"):
        load_params([], {"fsq_levels": [8, 1, 5]})


def test_real_dataset_needs_data_dir():
    with pytest.raises(ParamError, match="needs data_dir"):
        load_params([], {"dataset": "hapt"})


def test_load_mode_needs_checkpoint():
    with pytest.raises(ParamError, match="checkpoint_path"):
        load_params([], {"mode": "load"})


def test_split_fractions_must_leave_training_subjects():
    with pytest.raises(ParamError, match="at least 10% of subjects"):
        load_params([], {"val_fraction": 0.4, "conformal_fraction": 0.3, "test_fraction": 0.3})


def test_later_files_and_overrides_win(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("epochs: 3\nseed: 1\n")
    b.write_text("epochs: 5\n")
    p = load_params([a, b], {"seed": 7})
    assert (p.epochs, p.seed) == (5, 7)


def test_yaml_exponent_without_dot_is_read_as_float(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("learning_rate: 1e-4\n")  # YAML 1.1 reads this as a string
    assert load_params([f]).learning_rate == pytest.approx(1e-4)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ParamError, match="not found"):
        load_params([tmp_path / "nope.yaml"])
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ParamError, match="mapping"):
        load_params([f])


@pytest.mark.parametrize(
    "raw,value",
    [
        ("3", 3),
        ("1.0e-3", 1e-3),
        ("true", True),
        ("[8, 5, 5]", [8, 5, 5]),
        ("stratified", "stratified"),
        ("null", None),
    ],
)
def test_override_values_keep_their_type(raw, value):
    assert parse_override(raw) == value


def test_stage_subset_only_declared_names():
    p = Params()
    assert p.stage_subset(["epochs", "not_a_param"]) == {"epochs": 30}


def test_even_kernel_rejected_and_home_expanded():
    import os

    with pytest.raises(ParamError, match="kernel_time must be odd"):
        load_params([], {"kernel_time": 4})
    p = load_params([], {"dataset": "hapt", "data_dir": "~/hapt"})
    assert p.data_dir == os.path.expanduser("~/hapt") and not p.data_dir.startswith("~")
