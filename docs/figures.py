"""Draw the token-math figures of docs/tokens.md: ``python docs/figures.py [OUT_DIR]`` (default docs/img).

1. ``tokens_resolution.png``: visual tokens per image (``fusion_spec.tokens.count``) against the image
   width, 224..2048 px, for every preset: square images (left) and 2:1 landscape images (right).
   (``fusion-spec tokens --plot`` draws one such panel for the CLI; this figure puts both aspects side by
   side with the legend outside the data and the cross-attention presets marked, for the docs.)
2. ``context_share.png``: the share of a 4K/8K/32K/128K context that N images (1..16) of one size take,
   for the presets that put image tokens in the sequence (``fusion_spec.cost.context_budget``).
3. ``mrope_positions.png``: the three M-RoPE position axes (``fusion_spec.ops.mrope_position_ids``) of a
   small image (a 2x3 merged grid) between text, and the image's grid with each token's (t, h, w).

Needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # draw from the checkout this script lives in, not an installed copy

from fusion_spec import cost, ops, presets, tokens  # noqa: E402
#: Presets whose image tokens sit in the LLM's sequence and vary with the image (the others cost 32/64
#: sequence tokens, or 1 marker token for the cross-attention models, whatever the image).
SHARE_PRESETS = ("llava-1.5", "llava-next", "qwen2-vl", "internvl2")
SHARE_SIZE = (1024, 1024)          # height, width
CONTEXTS = ("4K", "8K", "32K", "128K")
MAX_IMAGES = 16


WIDTHS = range(224, 2049, 8)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tokens_resolution(path: pathlib.Path, names=None) -> None:
    """Tokens per image against the width (224..2048 px): square (left) and height = width / 2 (right)."""
    plt = _pyplot()
    names = presets.names() if names is None else names
    fig, axes = plt.subplots(1, 2, figsize=(11, 6), sharey=True)
    for ax, aspect, title in ((axes[0], 1, "square images (height = width)"),
                              (axes[1], 2, "2:1 landscape images (height = width / 2)")):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # one colour a preset (20 presets)
        for name in names:
            keys = tokens.breakdown(name, 448, 448).cross_attention_tokens > 0
            ys = [tokens.count(name, w // aspect, w) for w in WIDTHS]
            ax.plot(list(WIDTHS), ys, linestyle="--" if keys else "-",
                    label=name + (" (cross-attention keys)" if keys else ""))
        ax.set_title(title)
        ax.set_xlabel("image width in px")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("visual tokens per image (log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def context_share(path: pathlib.Path, names=SHARE_PRESETS, size=SHARE_SIZE) -> None:
    """One panel per context: percent of the context used by N = 1..MAX_IMAGES images of ``size``."""
    plt = _pyplot()
    images = list(range(1, MAX_IMAGES + 1))
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), sharex=True, sharey=True)
    for ax, label in zip(axes.flat, CONTEXTS):
        context = cost.parse_context(label)
        for name in names:
            per_image = tokens.breakdown(name, *size).context_tokens
            share = [100 * cost.context_budget(per_image, n, context).fraction for n in images]
            ax.plot(images, share, marker=".", label=f"{name} ({per_image}/image)")
        ax.axhline(100, color="black", linewidth=1, linestyle="--")
        ax.set_title(f"{label} context ({context} tokens)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("images in the prompt")
    for ax in axes[:, 0]:
        ax.set_ylabel("% of the context (log scale)")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Context share of {size[0]}x{size[1]} images (height x width); dashed line: context full")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


#: The M-RoPE example: 3 text tokens, one image on a 4x6 patch grid (2x3 after the 2x2 merge), 2 text tokens.
MROPE_TYPES = [0, 0, 0] + [1] * 6 + [0, 0]
MROPE_GRID = (1, 4, 6)


def mrope_positions(path: pathlib.Path) -> None:
    """Left: temporal / height / width position of every token; right: the image's merged grid."""
    plt = _pyplot()
    pos = ops.mrope_position_ids(np.array([MROPE_TYPES]), np.array([MROPE_GRID]), spatial_merge_size=2)
    ids = np.asarray(pos.position_ids)[:, 0]
    delta = int(np.asarray(pos.rope_deltas)[0, 0])
    fig, (ax, grid_ax) = plt.subplots(1, 2, figsize=(10, 2.8), gridspec_kw={"width_ratios": [3.2, 1]})
    colors = {0: "#dddddd", 1: "#9ecae1"}
    for row, axis in enumerate(("temporal", "height", "width")):
        for col, kind in enumerate(MROPE_TYPES):
            ax.add_patch(plt.Rectangle((col, 2 - row), 1, 1, facecolor=colors[kind], edgecolor="white"))
            ax.text(col + 0.5, 2.5 - row, str(ids[row, col]), ha="center", va="center", fontsize=11)
        ax.text(-0.2, 2.5 - row, axis, ha="right", va="center", fontsize=10)
    for col, kind in enumerate(MROPE_TYPES):
        ax.text(col + 0.5, 3.25, "image" if kind else "text", ha="center", va="center", fontsize=7, rotation=90)
    ax.set_xlim(-1.6, len(MROPE_TYPES))
    ax.set_ylim(0, 3.6)
    ax.axis("off")
    ax.set_title(f"position ids of 3 text tokens, a 2x3 merged image, 2 text tokens (rope delta {delta})",
                 fontsize=10)
    rows, cols = MROPE_GRID[1] // 2, MROPE_GRID[2] // 2
    for k in range(rows * cols):
        t, h, w = ids[:, 3 + k]
        r, c = divmod(k, cols)
        grid_ax.add_patch(plt.Rectangle((c, rows - 1 - r), 1, 1, facecolor=colors[1], edgecolor="white"))
        grid_ax.text(c + 0.5, rows - 0.5 - r, f"({t},{h},{w})", ha="center", va="center", fontsize=9)
    grid_ax.set_xlim(0, cols)
    grid_ax.set_ylim(0, rows)
    grid_ax.set_aspect("equal")
    grid_ax.axis("off")
    grid_ax.set_title("the image: (t, h, w) per token", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(out_dir: str | pathlib.Path = HERE / "img") -> list[pathlib.Path]:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "tokens_resolution.png", out / "context_share.png", out / "mrope_positions.png"]
    tokens_resolution(written[0])
    context_share(written[1])
    mrope_positions(written[2])
    return written


if __name__ == "__main__":
    for p in main(*sys.argv[1:2]):
        print(f"wrote {p} ({p.stat().st_size // 1024} KB)")
