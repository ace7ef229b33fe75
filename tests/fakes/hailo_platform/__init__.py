"""FAKE hailo_platform for tests: re-exports the fake pyhailort names, as the real package does."""
from hailo_platform.pyhailort.pyhailort import (  # noqa: F401
    HEF, ConfigureParams, ConfiguredInferModel, ConfiguredNetwork, Device, FormatOrder, FormatType,
    HailoRTException, HailoSchedulingAlgorithm, HailoStreamInterface, InferModel, InferVStreams,
    InputVStreamParams, OutputVStreamParams, QuantInfo, VDevice, VDeviceParams)

__version__ = "0.0.0+fake"
