"""Token merging: fewer, wider visual tokens (Edifice/Qwen consecutive grouping, Qwen2-VL/InternVL
2×2 spatial merge, average pooling)."""

from __future__ import annotations

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, namespace

MODES = ("consecutive", "spatial", "pool")
TOKEN_ORDERS = ("row_major", "column_major")


def merge_tokens(x: Array, *, mode: str, ratio: int | None = None, grid: tuple[int, int] | None = None,
                 factor: int = 2, token_order: str = "row_major") -> Array:
    """Merge visual tokens. Parameter-free; a projector usually follows.

    - ``mode="consecutive"``: ``[B, N, D] -> [B, N/r, r*D]``. Output token ``j`` is input tokens
      ``j*r .. j*r+r-1`` concatenated along features, in order (``ratio`` = r; Edifice's
      ``compress_ratio``; Qwen2-VL's ``PatchMerger`` with r = 4 on patches its processor already
      ordered in 2×2 blocks).
    - ``mode="spatial"``: ``[B, h*w, D]`` holding an ``h×w`` patch grid row-major (``grid=(h, w)``)
      -> ``[B, (h/k)*(w/k), k*k*D]`` with k = ``factor``. Merged token ``(i, j)`` concatenates the
      k×k window's patches ``(k*i + di, k*j + dj)`` in row-major window order: for k = 2 the
      channel blocks are [top-left, top-right, bottom-left, bottom-right]. This is InternVL's
      ``pixel_shuffle(x, 0.5)`` (``ps_version="v2"``) and equals Qwen2-VL's merger order.
      Merged tokens are listed row-major; ``token_order="column_major"`` lists them column-major
      (InternVL's ``ps_version="v1"``), channel order unchanged.
    - ``mode="pool"``: ``[B, h*w, D] -> [B, (h/k)*(w/k), D]``, the mean of each k×k window,
      row-major.
    """
    op = "merge_tokens"
    check.floating(op, "x", x, rank=3)
    check.choice(op, "mode", mode, MODES)
    check.choice(op, "token_order", token_order, TOKEN_ORDERS)
    xp = namespace(x)
    b, n, d = x.shape
    if mode == "consecutive":
        r = check.positive_int(op, "ratio", ratio)
        if n % r:
            raise FusionSpecError(op, "ratio", f"a divisor of the token count {n}", r)
        return xp.reshape(x, (b, n // r, r * d))
    k = check.positive_int(op, "factor", factor)
    h, w = _grid(op, grid, n, k)
    windows = xp.reshape(x, (b, h // k, k, w // k, k, d))  # [b, i, di, j, dj, d]
    if mode == "pool":
        pooled = xp.mean(xp.mean(windows, axis=4), axis=2)  # [b, i, j, d]
        return xp.reshape(pooled, (b, (h // k) * (w // k), d))
    order = (0, 1, 3, 2, 4, 5) if token_order == "row_major" else (0, 3, 1, 2, 4, 5)
    merged = xp.permute_dims(windows, order)  # [b, i, j, di, dj, d] (or j before i)
    return xp.reshape(merged, (b, (h // k) * (w // k), k * k * d))


def window_order(x: Array, *, grid: tuple[int, int], factor: int = 2) -> Array:
    """Reorder a row-major ``h×w`` patch grid into k×k windows, as Qwen2-VL's image processor does.

    ``[B, h*w, D] -> [B, h*w, D]``: windows row-major, patches row-major inside each window, so that
    ``merge_tokens(window_order(x), mode="consecutive", ratio=k*k)`` equals
    ``merge_tokens(x, mode="spatial", grid=grid, factor=k)``.
    """
    op = "window_order"
    check.floating(op, "x", x, rank=3)
    k = check.positive_int(op, "factor", factor)
    b, n, d = x.shape
    h, w = _grid(op, grid, n, k)
    xp = namespace(x)
    windows = xp.permute_dims(xp.reshape(x, (b, h // k, k, w // k, k, d)), (0, 1, 3, 2, 4, 5))
    return xp.reshape(windows, (b, n, d))


def _grid(op: str, grid: tuple[int, int] | None, n: int, k: int) -> tuple[int, int]:
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__len__") or len(grid) != 2:
        raise FusionSpecError(op, "grid", "(height, width) of the patch grid", repr(grid))
    h, w = (check.positive_int(op, "grid", g) for g in grid)
    if h * w != n:
        raise FusionSpecError(op, "grid", f"height*width equal to the token count {n}", f"{h}x{w}")
    if h % k or w % k:
        raise FusionSpecError(op, "grid", f"both sides divisible by factor {k}", f"{h}x{w}")
    return h, w
