"""One image's token figures in a preset's model: :func:`count`, :func:`breakdown` and :func:`layout`.

They read a preset's pipeline (one of this package's processor families), whether its LLM
cross-attends to the image, and the marker tokens it adds where the pipeline writes no layout. A
preset is given as an object (:class:`fusion_spec.presets.Preset`) or by name. Names are looked up in
the table that :mod:`fusion_spec.presets` installs here when it loads (:func:`use_presets`):
``fusion_spec/__init__.py`` imports the presets, so the table is there before any caller can reach
this module. The presets import the token arithmetic, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Union

from ..errors import FusionSpecError
from .anyres import AnyRes, AnyResMax
from .base import Run, _size, merge_runs
from .gemma3 import PanAndScan
from .idefics3 import SplitTiles
from .internvl import DynamicTiles
from .llama4 import Llama4Tiles
from .llava import FixedGrid
from .mistral3 import PatchRows
from .mllama import CanvasTiles
from .qwen2_vl import SmartResize
from .resampler import Resampler

Pipeline = Union[FixedGrid, AnyRes, SmartResize, DynamicTiles, CanvasTiles, Resampler, PatchRows, SplitTiles,
                 PanAndScan, Llama4Tiles, AnyResMax]


class PresetLike(Protocol):
    """What the figures read of a preset (:class:`fusion_spec.presets.Preset` has all of it)."""

    name: str
    pipeline: Pipeline
    cross_attention: bool
    marker_tokens: int
    marker_tokens_per_crop: int


#: ``(get, preset class)`` installed by :func:`use_presets`.
_presets: tuple[Callable[[str], PresetLike], type] | None = None


def use_presets(get: Callable[[str], PresetLike], preset_class: type) -> None:
    """Install the preset table: ``get(name)`` returns the named preset (raising for an unknown name), and a
    preset passed as an object must be a ``preset_class``. :mod:`fusion_spec.presets` calls this."""
    global _presets
    _presets = (get, preset_class)


def _resolve(preset: PresetLike | str) -> PresetLike:
    assert _presets is not None, "fusion_spec.presets installs the preset table when fusion_spec is imported"
    get, preset_class = _presets
    if isinstance(preset, str):
        return get(preset)
    if not isinstance(preset, preset_class):
        raise FusionSpecError("tokens.count", "preset", "a preset name or fusion_spec.presets.Preset",
                              type(preset).__name__)
    return preset


def _crops_and_detail(pipe: Pipeline, height: int, width: int) -> tuple[int, str]:
    if not hasattr(pipe, "crops_and_detail"):
        raise FusionSpecError("tokens.count", "preset.pipeline", "a fusion_spec.tokens pipeline",
                              type(pipe).__name__)
    return pipe.crops_and_detail(height, width)


@dataclass(frozen=True)
class TokenCount:
    """Everything one image costs in a preset's model (the terms: :mod:`fusion_spec.tokens`)."""

    preset: str
    height: int
    width: int
    visual_tokens: int
    sequence_tokens: int
    cross_attention_tokens: int
    marker_tokens: int
    crops: int
    detail: str

    @property
    def context_tokens(self) -> int:
        """Tokens the image occupies in the LLM's context window: ``sequence_tokens + marker_tokens``."""
        return self.sequence_tokens + self.marker_tokens


def breakdown(preset: PresetLike | str, height: int, width: int) -> TokenCount:
    """Every token figure of one ``height x width`` image in ``preset`` (a name or a Preset)."""
    p = _resolve(preset)
    height, width = _size("tokens.count", height, width)
    visual = p.pipeline.tokens(height, width)
    crops, detail = _crops_and_detail(p.pipeline, height, width)
    if _writes_layout(p):
        markers = sum(r.count for r in p.pipeline.layout(height, width) if r.kind == "marker")
    else:
        markers = p.marker_tokens + (p.marker_tokens_per_crop * crops)
    if p.cross_attention:
        return TokenCount(p.name, height, width, visual, 0, visual, markers, crops, detail)
    return TokenCount(p.name, height, width, visual, visual, 0, markers, crops, detail)


def _writes_layout(p: PresetLike) -> bool:
    return hasattr(p.pipeline, "layout") and getattr(p.pipeline, "writes_layout", True) and not p.cross_attention


def layout(preset: PresetLike | str, height: int, width: int) -> list[Run]:
    """The runs of tokens the preset's processor writes into the text for one ``height x width`` image,
    in order: feature placeholders (``kind="image"``), special markers (``"marker"``) and plain text
    (``"text"``). Adjacent equal runs are joined. ``sum(r.count for r in runs if r.kind == "image")``
    is :func:`count`; the markers are ``breakdown(...).marker_tokens``."""
    p = _resolve(preset)
    height, width = _size("tokens.layout", height, width)
    if not _writes_layout(p):
        raise FusionSpecError("tokens.layout", "preset", "a preset whose image tokens go into the sequence and "
                              "whose layout is written down", p.name)
    return merge_runs(p.pipeline.layout(height, width))


def count(preset: PresetLike | str, height: int, width: int) -> int:
    """Visual tokens the LLM receives for one ``height x width`` image (markers not counted).

    Decoder-only fusion: positions in the LLM sequence filled with image features, equal to the
    model's HF processor. Cross-attention fusion: visual key/value tokens per image.
    """
    return breakdown(preset, height, width).visual_tokens
