"""The NeDR reference model: network, checkpoints, inference helper.

Names are imported on first use (PEP 562), as in `nedr.export`: `import nedr.model.<module>` of a
torch-free module (samples, synthesis, metrics, imageio) does not pull in torch through this package.
"""
from nedr.lazy import lazy_attributes

_NAMES = {
    "NeDR": "network", "Architecture": "network", "Prediction": "network",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "CheckpointError": "checkpoint",
    "dehaze": "inference",
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_attributes(__name__, _NAMES)
