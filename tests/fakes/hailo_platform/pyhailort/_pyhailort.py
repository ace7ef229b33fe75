"""FAKE hailo_platform.pyhailort._pyhailort (tests only): the pybind11 types the fakes need.

In HailoRT these come from the compiled extension (``bindings/python/src/pyhailort.cpp``, branch
hailo8); they are NOT exported by ``hailo_platform`` itself. ``VDeviceParams.default()`` there sets
``scheduling_algorithm`` to NONE (pyhailort.cpp), which is what ``VDevice.create_params()`` returns.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SchedulingAlgorithm(enum.Enum):
    NONE = 0
    ROUND_ROBIN = 1


@dataclass
class QuantInfo:
    qp_zp: float
    qp_scale: float
    limvals_min: float
    limvals_max: float


@dataclass
class VDeviceParams:
    device_count: int = 1
    scheduling_algorithm: SchedulingAlgorithm = SchedulingAlgorithm.ROUND_ROBIN
    group_id: str = "SHARED"
    multi_process_service: bool = False
    device_ids: list = field(default_factory=list)

    @staticmethod
    def default() -> "VDeviceParams":
        return VDeviceParams(scheduling_algorithm=SchedulingAlgorithm.NONE)
