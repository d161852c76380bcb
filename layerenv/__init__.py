"""layerenv: the right PyTorch build once per machine, layered under every project."""

__version__ = "0.1.0"
