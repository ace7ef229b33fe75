"""Workbench: Conv2d-FSQ IMU models from training to the Hailo-8 NPU."""
__version__ = "0.1.0"
