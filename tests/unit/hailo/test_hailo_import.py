"""import-hef: copy, provenance, refusal to overwrite, and files that are not HEFs."""

from __future__ import annotations

import hashlib
import json

import pytest

from workbench.hailo.hef_import import HEF_MAGIC, HefImportError, hef_provenance, import_hef
from workbench.runs import Run


@pytest.fixture
def run(tmp_path):
    return Run.create("imp", root=tmp_path / "outputs")


def test_import_copies_and_records(run, tmp_path):
    src = tmp_path / "built.hef"
    data = HEF_MAGIC + bytes(range(200))
    src.write_bytes(data)
    dest = import_hef(src, run.stage_dir("06"), run.run_id)
    assert dest == run.path / "artifacts" / "06_compile_hailo" / "model.hef"
    assert dest.read_bytes() == data
    prov = json.loads((dest.parent / "hef_provenance.json").read_text())
    assert prov["sha256"] == hashlib.sha256(data).hexdigest()
    assert prov["size_bytes"] == len(data) and prov["source_path"] == str(src.resolve())
    assert prov["imported_at"].endswith("+00:00")
    info = hef_provenance(dest)
    assert info["imported"]["sha256"] == prov["sha256"] and info["size_bytes"] == len(data)
    assert not list(dest.parent.glob("*.part"))


def test_refuses_overwrite(run, tmp_path):
    src = tmp_path / "a.hef"
    src.write_bytes(HEF_MAGIC + b"first")
    import_hef(src, run.stage_dir("06"), run.run_id)
    other = tmp_path / "b.hef"
    other.write_bytes(HEF_MAGIC + b"second")
    with pytest.raises(HefImportError, match="never overwritten.*--parent"):
        import_hef(other, run.stage_dir("06"), run.run_id)
    assert (run.stage_dir("06") / "model.hef").read_bytes() == HEF_MAGIC + b"first"


def test_empty_missing_and_wrong_magic(run, tmp_path):
    empty = tmp_path / "empty.hef"
    empty.write_bytes(b"")
    with pytest.raises(HefImportError, match="empty"):
        import_hef(empty, run.stage_dir("06"), run.run_id)
    with pytest.raises(HefImportError, match="not a file"):
        import_hef(tmp_path / "nope.hef", run.stage_dir("06"), run.run_id)
    onnx_like = tmp_path / "model.onnx.hef"
    onnx_like.write_bytes(b"\x08\x07\x12\x04abcd")
    with pytest.raises(HefImportError, match="HEF magic 01 48 45 46"):
        import_hef(onnx_like, run.stage_dir("06"), run.run_id)
    little_endian = tmp_path / "le.hef"
    little_endian.write_bytes(b"FEH\x01" + b"x" * 10)  # byte order matters: HailoRT reads it big-endian
    with pytest.raises(HefImportError, match="found 46 45 48 01"):
        import_hef(little_endian, run.stage_dir("06"), run.run_id)
    assert not (run.stage_dir("06") / "model.hef").exists()
