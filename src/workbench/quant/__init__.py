"""workbench.quant: INT8 quantization calibration sets, ONNX Runtime INT8 emulation, and what
quantization does to the FSQ codes (code flips, SQNR, per-layer sensitivity, configuration comparison).

Not probability calibration: that is ``workbench.reliability``.
"""
from .analysis import (QuantReport, boundary_margin, code_flip_rate, codebook_stats, compare_npu_outputs,
                       cosine, fsq_bound_of, level_flip_rate, levels_to_indices, margin_histogram,
                       per_dim_flip_rate, per_layer_sqnr, select_eval_indices, sqnr_db)
from .calibset import (STRATEGIES, CalibSet, CalibSetError, assert_train_only, build_calibset,
                       load_calibset, load_windows_npz, save_calibset, select_indices)
from .compare import (CUTS, CutModel, best_config, build_calibsets, cut_model_from_split, other_cut_model,
                      plot_comparison, recommend, recommendation_text, run_comparison)
from .emulate import (BACKEND_FP32, BACKEND_INT8, ArrayCalibrationReader, QuantError, count_qdq,
                      make_batch_dynamic, output_quantization, quantize_npu, run_onnx)
from .sensitivity import alls_lines, hn_layer_guesses, layer_sensitivity, sixteen_bit_candidates

__all__ = [name for name in dir() if not name.startswith("_")]
