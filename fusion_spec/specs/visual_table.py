"""Spec for the visual embedding tables of Ovis2 and Ovis2.5 (``fusion_spec.ops.visual_embedding_table``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from ..errors import FusionSpecError
from ..xp import Array, namespace
from .base import Spec

#: Per variant: the parameter names (``Ovis2Model`` / ``Ovis2_5MultiModalProjector`` keys), the table's layout.
VARIANTS = {
    "ovis2": dict(head="vision_tower.head_linear", norm="vision_tower.head_norm", table="visual_embeddings_table",
                  layout="rows"),
    "ovis2_5": dict(head="visual_tokenizer.linear", norm="visual_tokenizer.norm", table="visual_embeddings_table",
                    layout="linear"),
}


@dataclasses.dataclass(frozen=True)
class VisualEmbeddingTable(Spec):
    """Ovis's probabilistic visual tokens: merge ``k x k`` patches, project them to logits over a visual
    vocabulary of ``vocab_size - num_indicators`` words (LayerNorm, softmax), and embed each merged patch as
    the probability-weighted sum of the table's rows (``ops.visual_embedding_table``).

    - ``variant="ovis2"`` (``Ovis2Model``: the vision tower's ``head_linear`` / ``head_norm`` and the model's
      ``visual_embeddings_table``, an ``nn.Embedding [V, D]``): ``x [B, S*S, C]``, a square grid with ``S`` a
      multiple of ``k = merge`` (``hidden_stride``), merged spatially (channel order ``(di, dj, c)``, merged
      tokens row-major) -> ``[B, (S/k)^2, D]``. (HF meant to zero-pad other grids, but its ``F.pad`` pads
      the token and batch axes instead and the reshape then fails: no other grid has a defined output.)
    - ``variant="ovis2_5"`` (``Ovis2_5MultiModalProjector``: ``visual_tokenizer.{linear,norm}`` and
      ``visual_embeddings_table``, an ``nn.Linear`` whose weight is ``[D, V]``): ``x [N, C]``, every
      ``k*k`` consecutive patches merged (the processor ordered each window) -> ``[N / k^2, D]``.

    The last ``num_indicators`` words are the indicator tokens' (image start/end, ...): their probability
    is 0 in every visual token; :meth:`indicator_embeddings` gives their embeddings (the table's last rows).
    LayerNorm eps ``eps`` (PyTorch's 1e-5). Defaults: Ovis2 (AIMv2 1024 wide, ``hidden_stride`` 1,
    vocabulary 16384 with 5 indicators, Qwen2.5 1536).
    """

    variant: str = "ovis2"
    """``ovis2`` (a square grid merged spatially, ``nn.Embedding`` table) or ``ovis2_5`` (consecutive patches merged,
    ``nn.Linear`` table)."""
    vision_dim: int = 1024
    """Width ``C`` of the vision patches."""
    merge: int = 1
    """Side ``k`` of the merged window (``hidden_stride``): ``k*k`` patches become one token."""
    vocab_size: int = 16384
    """Words of the visual vocabulary, the indicator tokens included."""
    num_indicators: int = 5
    """The last words reserved for the indicator tokens (probability 0 in visual tokens)."""
    llm_dim: int = 1536
    """Width of the table's rows: the language model's hidden size."""
    eps: float = 1e-5
    """Epsilon of the LayerNorm before the softmax."""
    op = "visual_embedding_table"

    def __post_init__(self) -> None:
        self._require_choice("variant", tuple(VARIANTS))
        self._require_positive("vision_dim", "merge", "vocab_size", "llm_dim")
        self._require_eps("eps")
        i = self.num_indicators
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.vocab_size:
            self._fail("num_indicators", f"an int in [0, vocab_size={self.vocab_size})", i)

    @classmethod
    def ovis2_5(cls, vision_dim: int = 1152, spatial_merge_size: int = 2, vocab_size: int = 65536,
                num_indicators: int = 4, llm_dim: int = 4096) -> "VisualEmbeddingTable":
        """Ovis2.5 (``vision_config``: ``hidden_size``, ``spatial_merge_size``, ``vocab_size``,
        ``num_visual_indicator_tokens``; the text ``hidden_size``)."""
        return cls("ovis2_5", vision_dim, spatial_merge_size, vocab_size, num_indicators, llm_dim)

    @property
    def names(self) -> dict[str, str]:
        return VARIANTS[self.variant]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        n, words = self.names, self.vocab_size - self.num_indicators
        table = (self.vocab_size, self.llm_dim) if n["layout"] == "rows" else (self.llm_dim, self.vocab_size)
        return {n["head"] + ".weight": (words, self.vision_dim * self.merge ** 2), n["norm"] + ".weight": (words,),
                n["norm"] + ".bias": (words,), n["table"] + ".weight": table}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        name, k = type(self).__name__, self.merge
        if self.variant == "ovis2":
            side = round(x_shape[1] ** 0.5) if len(x_shape) == 3 else 0
            if len(x_shape) != 3 or x_shape[2] != self.vision_dim or side * side != x_shape[1] or side % k:
                raise FusionSpecError(name, "x", f"shape [B, S*S, {self.vision_dim}] (a square patch grid, S a "
                                      f"multiple of merge={k})", f"shape {x_shape}")
            return (x_shape[0], (side // k) ** 2, self.llm_dim)
        if len(x_shape) != 2 or x_shape[1] != self.vision_dim or x_shape[0] % (k * k):
            raise FusionSpecError(name, "x", f"shape [N, {self.vision_dim}] with N a multiple of {k * k}",
                                  f"shape {x_shape}")
        return (x_shape[0] // (k * k), self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        xp, k, n = namespace(x), self.merge, self.names
        if self.variant == "ovis2_5":
            x = xp.reshape(x, (x.shape[0] // (k * k), k * k * x.shape[1]))
        elif k > 1:
            side = round(x.shape[1] ** 0.5)
            x = ops.merge_tokens(x, mode="spatial", grid=(side, side), factor=k)
        return ops.visual_embedding_table(x, params, head=n["head"], norm=n["norm"], table=n["table"],
                                          num_indicators=self.num_indicators, eps=self.eps, table_layout=n["layout"])

    def indicator_embeddings(self, params: Mapping[str, Array]) -> Array:
        """The ``num_indicators`` indicator tokens' embeddings ``[I, llm_dim]``, in id order."""
        self.check_params(params)
        n = self.names
        return ops.indicator_embeddings(params, table=n["table"], vocab_size=self.vocab_size,
                                        num_indicators=self.num_indicators, table_layout=n["layout"])
