"""workbench.reliability: PROBABILITY calibration of the classifier's outputs (stage 08) -- ECE and
friends, subject-bootstrap intervals, temperature scaling, split conformal prediction sets, figures and
the report card. Not to be confused with INT8 quantization calibration (workbench.quant, stage 05).

All functions take plain arrays (logits or probabilities, labels, subject ids); ``sources`` is the one
module that knows how to get those arrays out of a run directory.
"""

from __future__ import annotations

from workbench import lazy_exports

# Loaded on first use (PEP 562): the Pi service needs metrics.softmax and conformal only, not pandas, scipy
# or tqdm that the stage-08 analysis modules import.
_WHERE = {
    "bootstrap": ("BootstrapCI", "resample_subject_indices", "subject_bootstrap", "subject_groups"),
    "conformal": (
        "ConformalPredictor",
        "aps_scores",
        "calibrate",
        "conformal_quantile",
        "conformal_rank",
        "coverage_interval",
        "lac_scores",
        "set_metrics",
    ),
    "metrics": (
        "BinStats",
        "CalibrationMetric",
        "ReliabilityInputError",
        "accuracy",
        "all_metrics",
        "bin_stats",
        "brier",
        "classwise_ece",
        "debiased_ece",
        "expected_calibration_error",
        "log_softmax",
        "maximum_calibration_error",
        "nll",
        "nll_from_logits",
        "softmax",
    ),
    "report": (
        "BackendReliability",
        "SplitLogits",
        "analyse_backend",
        "conformal_table",
        "deployment_shift",
        "metrics_table",
        "report_card",
        "summary_table",
        "temperature_verdict",
    ),
    "temperature": (
        "TemperatureCV",
        "TemperatureFit",
        "apply_temperature",
        "cross_validate_temperature",
        "fit_temperature",
    ),
}

__all__ = [name for names in _WHERE.values() for name in names]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
