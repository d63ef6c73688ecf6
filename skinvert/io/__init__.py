"""Reading and writing generators: npz / safetensors files (never pickles), PyTorch import."""

from ._files import load_generator, save_generator
from ._torch import from_torch

__all__ = ["from_torch", "load_generator", "save_generator"]
