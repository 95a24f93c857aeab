"""The NeDR reference model: network, checkpoints, inference helper.

Names are imported on first use (PEP 562), as in `nedr.export`: `import nedr.model.<module>` of a
torch-free module (samples, synthesis, metrics, imageio) does not pull in torch through this package.
"""
from importlib import import_module

_NAMES = {
    "NeDR": "network", "Architecture": "network", "Prediction": "network",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "CheckpointError": "checkpoint",
    "dehaze": "inference",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value
