"""FAKE hailo_platform for tests: re-exports only names the real package exports (hailo8 branch,
``hailort/libhailort/bindings/python/platform/hailo_platform/__init__.py``) that the fakes implement.
InferModel, ConfiguredInferModel, ConfiguredNetwork live in ``hailo_platform.pyhailort.pyhailort``;
QuantInfo and VDeviceParams in ``hailo_platform.pyhailort._pyhailort``, as in HailoRT."""
from hailo_platform.pyhailort.pyhailort import (  # noqa: F401
    HEF, ConfigureParams, Device, FormatOrder, FormatType, HailoRTException, HailoSchedulingAlgorithm,
    HailoStreamInterface, InferVStreams, InputVStreamParams, OutputVStreamParams, VDevice)

__version__ = "0.0.0+fake"

__all__ = ["HEF", "ConfigureParams", "FormatType", "FormatOrder", "HailoStreamInterface", "InputVStreamParams",
           "OutputVStreamParams", "InferVStreams", "Device", "VDevice", "HailoRTException",
           "HailoSchedulingAlgorithm"]
