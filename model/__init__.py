"""The NeDR reference model: network, checkpoints, inference helper."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .inference import dehaze
from .network import Architecture, NeDR, Prediction

__all__ = ["NeDR", "Architecture", "Prediction", "load_checkpoint", "save_checkpoint", "dehaze", "CheckpointError"]
