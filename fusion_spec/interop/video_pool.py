"""LLaVA-NeXT-Video's frame pooler: HF ``LlavaNextVideoPooler`` (the model's ``vision_resampler``) ->
:class:`LlavaNextVideoPooler`.

The pool's kind gives the mode (``AvgPool2d`` average, ``MaxPool2d`` max, ``Conv2d`` conv) and its stride
the stride; the conv's weight gives both widths. An average or max pool holds no weights, so the spec
converted from it takes any width (``dim=None``). The keys ``pool.weight`` / ``pool.bias`` are the module's
own. ``run_module(module, x [frames, S*S, D])`` is its ``forward``. Float64: ~1e-15.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.video_pool import LlavaNextVideoPooler
from .common import module_params, run_forward, run_spec_on, spec_state_dict
from .registry import Converter, register

_MODES = {"AvgPool2d": "average", "MaxPool2d": "max", "Conv2d": "conv"}


def _one(value: Any) -> int:
    """A pool's ``stride`` / ``kernel_size``: an int or a pair of equal ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    return pair[0] if len(pair) == 2 and pair[0] == pair[1] else -1


def video_pooler_from_module(module: Any) -> tuple[LlavaNextVideoPooler, dict[str, np.ndarray]]:
    """``LlavaNextVideoPooler`` -> the spec (mode, stride, widths from the conv) and its params."""
    pool = module.pool
    mode = _MODES.get(type(pool).__name__)
    if mode is None:
        raise FusionSpecError("interop.from_module", "module.pool", "AvgPool2d, MaxPool2d or Conv2d",
                              type(pool).__name__)
    stride = _one(pool.stride)
    if stride < 1 or _one(pool.kernel_size) != stride or getattr(pool, "padding", 0) not in (0, (0, 0)):
        raise FusionSpecError("interop.from_module", "module.pool", "square windows of side stride, no padding",
                              f"kernel {pool.kernel_size}, stride {pool.stride}, padding {getattr(pool, 'padding', 0)}")
    if mode == "conv":
        spec = LlavaNextVideoPooler(mode, stride, pool.in_channels, pool.out_channels)
    else:
        spec = LlavaNextVideoPooler(mode, stride, None, None)
    return spec, module_params("interop.from_module", module, spec)


register(Converter("LlavaNextVideoPooler", "transformers", LlavaNextVideoPooler, video_pooler_from_module,
                   spec_state_dict, run_forward, run_spec_on, children={"pool": "module"}))
