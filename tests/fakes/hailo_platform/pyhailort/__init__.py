"""FAKE hailo_platform.pyhailort (tests only)."""
