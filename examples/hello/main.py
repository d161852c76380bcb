"""A tiny project that uses whatever torch build its layerenv base provides."""

import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
x = torch.rand(512, 512, device=device)
y = x @ x
print(f"torch {torch.__version__} on {device}: ({tuple(y.shape)}) matmul ok, loaded from {torch.__file__}")
