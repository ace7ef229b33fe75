"""workbench.model: FSQ quantizer, Conv2d-FSQ classifier, training loop and checkpoints."""
from .augment import Augmenter, random_rotations
from .checkpoint import CheckpointError, check_state_dict, load_checkpoint, save_checkpoint
from .fsq import FSQ, codebook_usage, fsq_numpy_constants, perplexity
from .network import FSQClassifier, ModelConfig
from .train import predict_logits, resolve_device, train_model

__all__ = [
    "Augmenter", "random_rotations",
    "FSQ", "fsq_numpy_constants", "codebook_usage", "perplexity",
    "ModelConfig", "FSQClassifier",
    "train_model", "predict_logits", "resolve_device",
    "save_checkpoint", "load_checkpoint", "check_state_dict", "CheckpointError",
]
