"""Shared machinery of the fake Hailo packages (tests only).

The fakes compute real numbers: the "NPU" is the given npu.onnx run with onnxruntime on the NHWC
input transposed back to NCHW, so a layout mistake in the code under test gives wrong numbers, not
just a shape error. Output quantization is a per-tensor affine grid from the calibration data
(q = clip(round(y / scale + zp), 0, 2^bits - 1)), and the fake HEF carries the ONNX bytes and that
grid behind the real HEF magic (01 48 45 46, big-endian, as HailoRT's hef.cpp checks).
"""
from __future__ import annotations

import base64
import json
import struct
from typing import Any, Optional

import numpy as np

HEF_MAGIC = bytes.fromhex("01484546")

CALLS: list[tuple[str, dict]] = []   # every recorded call of both fakes, in order


def record(_call: str, **kwargs: Any) -> None:
    CALLS.append((_call, kwargs))


def calls(name: str) -> list[dict]:
    return [kw for n, kw in CALLS if n == name]


def reset() -> None:
    CALLS.clear()


class OnnxNet:
    """npu.onnx under onnxruntime; takes NHWC, runs NCHW."""

    def __init__(self, onnx_bytes: bytes):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.bytes = onnx_bytes
        self.sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        self.input_nchw = [int(d) if isinstance(d, int) else -1 for d in inp.shape]
        self.output_name = self.sess.get_outputs()[0].name

    def run_nhwc(self, x_nhwc: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.transpose(np.asarray(x_nhwc, np.float32), (0, 3, 1, 2)))
        rows = [self.sess.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))]
        return np.concatenate(rows).reshape(len(x), -1).astype(np.float32)


def grid_from(y: np.ndarray, bits: int) -> tuple[float, float]:
    lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
    levels = 2 ** bits - 1
    scale = (hi - lo) / levels if hi > lo else 1.0
    zp = float(np.round(-lo / scale))
    return scale, zp


def quantize(y: np.ndarray, scale: float, zp: float, bits: int) -> np.ndarray:
    return np.clip(np.round(y / scale + zp), 0, 2 ** bits - 1)


def encode_hef(meta: dict) -> bytes:
    payload = json.dumps(meta).encode()
    return HEF_MAGIC + struct.pack(">II", 0, len(payload)) + payload


def decode_hef(data: bytes) -> dict:
    if data[:4] != HEF_MAGIC:
        raise ValueError("fake HailoRT: not a HEF (bad magic)")
    _, n = struct.unpack(">II", data[4:12])
    return json.loads(data[12:12 + n].decode())


def onnx_b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def onnx_from_b64(s: str) -> bytes:
    return base64.b64decode(s.encode())


# ---- one holder of the (fake) Hailo-8 at a time, across processes --------------------------------
# A real Hailo-8 is held by one process unless HailoRT's multi-process service is used; a second
# opener (e.g. `hailortcli run` while a notebook still holds a VDevice) gets HAILO_OUT_OF_PHYSICAL_DEVICES.
# The fakes keep the holder's pid in a lock file so the fake `hailortcli` (a separate process) sees it.
OUT_OF_DEVICES = "HAILO_OUT_OF_PHYSICAL_DEVICES"


def device_lock_path() -> "Path":
    """HAILO_FAKE_DEVICE_LOCK, else one file per checkout of the fakes (clones never share a device)."""
    import hashlib
    import os
    import tempfile
    from pathlib import Path
    env = os.environ.get("HAILO_FAKE_DEVICE_LOCK")
    if env:
        return Path(env)
    tag = hashlib.sha1(str(Path(__file__).resolve().parent).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hailo-fake-device-{tag}.lock"


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def device_holder() -> "Optional[tuple[int, str]]":
    """(pid, what) of the live process holding the device, or None."""
    path = device_lock_path()
    try:
        pid_s, what = path.read_text().split(" ", 1)
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return (pid, what) if _alive(pid) else None


def acquire_device(what: str) -> None:
    """Take the device for this process; raise RuntimeError(HAILO_OUT_OF_PHYSICAL_DEVICES) if held."""
    import os
    held = device_holder()
    if held is not None:
        raise RuntimeError(f"{OUT_OF_DEVICES}: the Hailo-8 is held by pid {held[0]} ({held[1]}); release it "
                           f"first or use the multi-process service")
    record("device.acquire", what=what, pid=os.getpid())
    device_lock_path().write_text(f"{os.getpid()} {what}")


def check_device_free(what: str) -> None:
    """For multi-process-service clients: fail only when a process holds the device exclusively."""
    held = device_holder()
    if held is not None:
        raise RuntimeError(f"{OUT_OF_DEVICES}: the Hailo-8 is held exclusively by pid {held[0]} ({held[1]}), "
                           f"so {what} cannot reach it through the multi-process service")


def release_device() -> None:
    import os
    held = device_holder()
    if held is not None and held[0] == os.getpid():
        record("device.release", pid=os.getpid())
        device_lock_path().unlink()
