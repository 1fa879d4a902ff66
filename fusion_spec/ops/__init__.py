"""The fusion operators and the primitives they are written in, as pure functions."""

from .attention import attention
from .primitives import gelu, gelu_tanh, layer_norm, linear, rms_norm, sigmoid, silu, softmax

__all__ = ["attention", "gelu", "gelu_tanh", "layer_norm", "linear", "rms_norm", "sigmoid", "silu", "softmax"]
