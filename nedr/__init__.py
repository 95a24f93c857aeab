"""nedr: the NeDR dehazer from a PyTorch reference model to real-time video."""
__version__ = "0.1.0"
