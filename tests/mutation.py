"""Mutation testing over a curated list of plausible slips: ``python -m tests.mutation``.

Each :class:`Mutant` is one slip a real implementation makes (an eps off by 10x, a tanh GELU, a mask
that is never applied...), written as an exact text replacement in the one source file it belongs
to. The command applies each mutant, one at a time, to a temporary copy of the repository (the
working tree is never edited) and asks two questions:

1. **Kill matrix** (operator mutants, those with a ``family``): the mutated package is treated as
   *another implementation*. In a subprocess it writes its outputs for every case of its bundle
   family with ``fusion_spec.conformance.verify.produce``: NumPy float64 and float32, and PyTorch
   bfloat16 and float16 (NumPy has no bfloat16; no fast paths, not even the package's own NumPy GELU,
   so the mutated code runs). This process, running the unmutated package, checks them with ``goldens verify``. A
   mutant is killed in a dtype when at least one case of its family fails (or cannot be produced).
2. **Test kill**: ``pytest -x`` on the mutant's test files, one after the other, run in the mutated
   copy; the first failing test is what killed it. The bundle byte-identity test is deselected:
   regenerating the bundle after a wrong change would silence it, so it protects nothing.

The exit status is 1 when any operator mutant survives in float32, survives in bfloat16 or float16
although its exact change is larger than one rounding of the output, or any mutant survives its tests.
``--write-docs`` rewrites the generated tables in ``docs/mutation.md``; with ``--only``, the rows of
the mutants run (added or replaced), keeping the other mutants' documented rows.

Adding a family: add its mutants to :data:`MUTANTS` (one line each) and, if its tests live in new
files, one line to :data:`TESTS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mutation.md"
COPIED = ("fusion_spec", "tests", "pyproject.toml", "README.md", "docs", "mkdocs.yml")
LOW = ("bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One slip: ``old`` (exact text, occurring once in ``file``) becomes ``new``.

    ``family``: the bundle family whose cases must catch it ("" for code that is not an operator:
    token math, cost model, interop, the verifier; those are judged by the tests only).
    ``group``: the key of :data:`TESTS` naming its test selection (default: ``family``).
    """

    id: str
    family: str
    file: str
    old: str
    new: str
    why: str
    group: str = ""

    @property
    def tests(self) -> list[str]:
        return TESTS[self.group or self.family].split()


P, A, XA, RS, QF = ("fusion_spec/ops/primitives.py", "fusion_spec/ops/attention.py",
                    "fusion_spec/ops/cross_attention.py", "fusion_spec/ops/resampler.py", "fusion_spec/ops/qformer.py")
CN, CS = "fusion_spec/ops/connectors.py", "fusion_spec/specs/connectors.py"
CV, QP = "fusion_spec/ops/conv_abstractor.py", "fusion_spec/ops/query_pooler.py"
EM, EMS, MG = "fusion_spec/ops/embedders.py", "fusion_spec/specs/embedders.py", "fusion_spec/ops/mergers.py"
OV = "fusion_spec/ops/ocr_views.py"
M = Mutant
MUTANTS: list[Mutant] = [
    # --- primitives
    M("layer_norm.eps_x10", "primitives", P, "xp.sqrt(var + eps)", "xp.sqrt(var + eps * 10)", "LayerNorm eps x10"),
    M("layer_norm.eps_div10", "primitives", P, "xp.sqrt(var + eps)", "xp.sqrt(var + eps / 10)", "LayerNorm eps /10"),
    M("rms_norm.eps_x10", "primitives", P, "keepdims=True) + eps)", "keepdims=True) + eps * 10)", "RMSNorm eps x10"),
    M("rms_norm.eps_div10", "primitives", P, "keepdims=True) + eps)", "keepdims=True) + eps / 10)",
      "RMSNorm eps /10"),
    M("gelu.tanh_for_erf", "primitives", P, "(1.0 + erf(t * (1.0 / math.sqrt(2.0))))",
      "(1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (t + 0.044715 * t * t * t)))",
      "GELU: the tanh approximation instead of the erf form", "primitives.gelu"),
    M("softmax.wrong_axis", "primitives", P, "e / xp.sum(e, axis=axis, keepdims=True)",
      "e / xp.sum(e, axis=-1, keepdims=True)", "softmax normalised over the last axis, not the one asked for"),
    M("linear.bias_dropped", "primitives", P, "        y = y + bias\n", "        y = y\n", "linear drops its bias"),
    M("relu2.not_squared", "primitives", P, "xp.where(t > 0, t * t, xp.zeros_like(t))",
      "xp.where(t > 0, t, xp.zeros_like(t))", "squared ReLU computed as a plain ReLU"),
    # --- attention
    M("attention.scale_1_over_d", "attention", A, "scale = float(d) ** -0.5", "scale = 1.0 / float(d)",
      "scores scaled by 1/d instead of 1/sqrt(d)"),
    M("attention.softmax_over_queries", "attention", A,
      "s = s - xp.max(s, axis=-1, keepdims=True)\n        e = xp.exp(s)\n        p = e / xp.sum(e, axis=-1, ",
      "s = s - xp.max(s, axis=-2, keepdims=True)\n        e = xp.exp(s)\n        p = e / xp.sum(e, axis=-2, ",
      "softmax over the query axis instead of the keys"),
    M("attention.mask_inverted", "attention", A, "s = xp.where(mask, s, scalar(xp, -math.inf, s))",
      "s = xp.where(xp.logical_not(mask), s, scalar(xp, -math.inf, s))", "True read as 'masked out'"),
    M("attention.gqa_h_mod_kv", "attention", A,
      "        q = xp.reshape(q, (b, hk, rep, lq, d))\n"
      "        k, v = xp.reshape(k, (b, hk, 1, lk, d)), xp.reshape(v, (b, hk, 1, lk, d))\n",
      "        k, v = xp.concat([k] * rep, axis=1), xp.concat([v] * rep, axis=1)\n        rep = 1\n",
      "GQA: query head h reads kv head h % kv_heads (torch .repeat) instead of h // rep (repeat_interleave)"),
    M("attention.split_heads_d_h", "cross_attention", A,
      "xp.reshape(x, (b, length, heads, width // heads)), (0, 2, 1, 3))",
      "xp.reshape(x, (b, length, width // heads, heads)), (0, 3, 1, 2))",
      "head split [d, h] instead of [h, d] (features of one head interleaved)", "attention"),
    # --- token merging and projectors
    M("merge.channel_order", "merge_tokens", "fusion_spec/ops/merge.py", "order = (0, 1, 3, 2, 4, 5) if",
      "order = (0, 1, 3, 4, 2, 5) if", "k x k window concatenated column-major (TL, BL, TR, BR)"),
    M("merge.pixel_shuffle_transpose", "merge_tokens", "fusion_spec/ops/merge.py", "order = (0, 1, 3, 2, 4, 5) if",
      "order = (0, 3, 1, 4, 2, 5) if", "pixel shuffle of the transposed grid (h and w swapped)"),
    M("projection.gelu_tanh", "projection", "fusion_spec/ops/projection.py",
      "act = activation_fn(activation, op)\n    width = x.shape[-1]\n    if norm:",
      'act = activation_fn("gelu_tanh" if activation == "gelu" else activation, op)\n'
      '    width = x.shape[-1]\n    if norm:',
      "projector GELU in its tanh form (found in a real MLX port)"),
    M("projection.bias_dropped", "projection", "fusion_spec/ops/projection.py", "return linear(x, w, b, op=op)",
      "return linear(x, w, None, op=op)", "LLaVA-1.0 linear projector without its bias"),
    # --- LLaVA-NeXT anyres
    M("anyres.unpad_int", "anyres", "fusion_spec/tokens/anyres.py", "new_h = int(round(height * (grid_w / width), 7))",
      "new_h = int(height * (grid_w / width))", "unpadding with int() instead of rounding (transformers < 4.47)"),
    M("anyres.newline_first", "anyres", "fusion_spec/ops/anyres.py", "xp.concat([kept, column], axis=1)",
      "xp.concat([column, kept], axis=1)", "image_newline at the start of each row instead of the end"),
    M("anyres.no_unpad", "anyres", "fusion_spec/ops/anyres.py", "kept = full[top:top + rows, left:left + cols, :]",
      "kept, rows, cols = full, grid_h * p, grid_w * p", "packing without unpadding (found in a real MLX port)"),
    # --- sequence assembly
    M("sequence.position_ids_from_1", "sequence", "fusion_spec/ops/sequence.py",
      "pos = xp.cumulative_sum(as_int, axis=1) - 1", "pos = xp.cumulative_sum(as_int, axis=1)",
      "position ids start at 1"),
    M("sequence.insert_after_position", "sequence", "fusion_spec/ops/sequence.py",
      "from_text = xp.where(j < p, j, j - nv)\n    is_visual = (j >= p) & (j < p + nv)",
      "from_text = xp.where(j <= p, j, j - nv)\n    is_visual = (j > p) & (j <= p + nv)",
      "visual tokens inserted one position late"),
    # --- cross-attention
    M("cross_attention.mask_ignored", "cross_attention", XA, "o = attention(q, k, v, mask=m4, scale=scale)",
      "o = attention(q, k, v, mask=None, scale=scale)", "mask accepted but never applied"),
    M("cross_attention.qk_norm_missing", "cross_attention", XA, "    if qk_norm:\n", "    if False:\n",
      "Mllama q/k RMSNorm skipped"),
    M("cross_attention.v_bias_dropped", "cross_attention", XA, "linear(visual, wv, bv, op=op)",
      "linear(visual, wv, None, op=op)", "value projection without its bias"),
    M("media_mask.off_by_one_image", "cross_attention", XA, "xp.int32) // tokens_per_media + 1", "xp.int32) // tokens_per_media",
      "text attends to the image after its own (media time off by one)"),
    M("gated_xattn.gate_tanh_missing", "gated_cross_attention", XA,
      "return xp.tanh(check.param(op, params, key, shape, like=like))",
      "return check.param(op, params, key, shape, like=like)", "gate used raw, without tanh"),
    M("gated_xattn.text_before_image_not_zeroed", "gated_cross_attention", XA, "row = text_time != 0",
      "row = None", "flamingo: text before the first image attends (uniformly) instead of being zeroed"),
    # --- Perceiver resampler
    M("resampler.rms_eps_x10", "resampler", RS, "return rms_norm(h, w, eps=eps, op=OP)",
      "return rms_norm(h, w, eps=eps * 10, op=OP)", "Idefics2 RMSNorm eps 1e-5 for 1e-6 (passed in float32 in a "
                                                    "real MLX port)"),
    M("resampler.rms_eps_div10", "resampler", RS, "return rms_norm(h, w, eps=eps, op=OP)",
      "return rms_norm(h, w, eps=eps / 10, op=OP)", "Idefics2 RMSNorm eps 1e-7 for 1e-6"),
    M("resampler.layer_norm_eps_x10", "resampler", RS, "eps=eps, op=OP)\n        return rms_norm",
      "eps=eps * 10, op=OP)\n        return rms_norm", "flamingo perceiver LayerNorm eps 1e-4 for 1e-5"),
    M("resampler.mask_ignored", "resampler", RS, "attention(q, k, v, mask=mask)", "attention(q, k, v, mask=None)",
      "context mask accepted but never applied (found in a real MLX port)"),
    M("resampler.keys_without_latents", "resampler", RS, "kv_in = xp.concat([c, lt], axis=1)",
      "kv_in = xp.concat([c, c[:, :0]], axis=1)", "keys/values from the context only, latents left out"),
    # --- Q-Former
    M("q_former.pre_for_post_norm", "q_former", QF,
      'f = gelu(lin(h, p + f".intermediate{kind}.dense", w.shape[0]))\n'
      '        return norm(lin(f, p + f".output{kind}.dense", hdim) + h, p + f".output{kind}.LayerNorm")',
      'f = gelu(lin(norm(h, p + f".output{kind}.LayerNorm"), p + f".intermediate{kind}.dense", w.shape[0]))\n'
      '        return lin(f, p + f".output{kind}.dense", hdim) + h', "FFN pre-norm instead of BERT's post-norm"),
    M("q_former.cross_frequency_shift", "q_former", QF,
      "if i % cross_attention_frequency == 0:\n            hq = block(",
      "if (i + 1) % cross_attention_frequency == 0:\n            hq = block(",
      "cross-attention in layers 1, 3, ... instead of 0, 2, ..."),
    # --- late and early fusion
    M("clip_logits.scale_not_exponentiated", "late_early", "fusion_spec/ops/late.py", "scale = math.exp(logit_scale)",
      "scale = logit_scale", "CLIP logit_scale used as is, not exp(logit_scale)"),
    M("contrastive_loss.one_direction", "late_early", "fusion_spec/ops/late.py",
      "loss = (xp.mean(lse(1) - diag) + xp.mean(lse(0) - diag)) / 2.0", "loss = xp.mean(lse(1) - diag)",
      "only the image->text cross-entropy"),
    # --- today's connectors: Gemma 3, Idefics3 / SmolVLM, Llama 4, PaliGemma, Aya Vision
    M("gemma3.rms_norm_weight_not_offset", "connectors", CN,
      "* (1.0 + upcast(xp, weight))", "* upcast(xp, weight)",
      "Gemma RMSNorm scaled by weight instead of 1 + weight (the Llama RMSNorm)"),
    M("llama4.last_gelu_dropped", "connectors", CS,
      'return ops.gelu(ops.linear(x, params["mlp.fc2.weight"], op="Llama4PixelShuffleMLP"))',
      'return ops.linear(x, params["mlp.fc2.weight"], op="Llama4PixelShuffleMLP")',
      "Llama 4 adapter without the GELU after its last linear"),
    M("idefics3.pixel_shuffle_column_major", "connectors", CS,
      'return ops.merge_tokens(x, mode="spatial", grid=_square_grid(op, x.shape[1], k), factor=k)',
      'return ops.merge_tokens(x, mode="spatial", grid=_square_grid(op, x.shape[1], k), factor=k,\n'
      '                            token_order="column_major")',
      "Idefics3 pixel shuffle without its second permute: merged tokens listed column-major"),
    M("paligemma.legacy_scale_always", "connectors", CS,
      "return y / self.text_embed_scale if self.legacy_scale else y", "return y / self.text_embed_scale",
      "PaliGemma image features divided by sqrt(projection_dim) (transformers 4) without legacy_scale"),
    M("aya_vision.swiglu_halves_swapped", "connectors", CN,
      "return silu(x[..., h:]) * x[..., :h]", "return silu(x[..., :h]) * x[..., h:]",
      "Aya Vision SwiGLU: the first half taken as the gate, the second as the value"),
    # --- Mistral 3 / Pixtral per-image merge
    M("unfold_merge.channels_di_dj_c", "mistral3", "fusion_spec/ops/unfold_merge.py",
      "xp.permute_dims(windows, (0, 2, 4, 1, 3))", "xp.permute_dims(windows, (0, 2, 1, 3, 4))",
      "Mistral 3 merged channels in pixel-shuffle order (di, dj, c) instead of unfold's (c, di, dj)"),
    # --- Qwen3-VL: DeepStack and the post-shuffle norm
    M("deepstack.replace_not_add", "qwen3_vl", "fusion_spec/ops/deepstack.py",
      "flat + rows, flat)", "rows, flat)",
      "DeepStack features replace the hidden states at the visual positions instead of being added"),
    M("qwen3_vl.postshuffle_norm_ignored", "qwen3_vl", "fusion_spec/specs/projection.py",
      'norm="post" if postshuffle else "pre",', 'norm="pre",',
      "DeepStack merger normalises each patch before the merge (use_postshuffle_norm ignored)"),
    # --- LLaVA-OneVision anyres_max
    M("resize.align_corners", "llava_onevision", "fusion_spec/ops/resize.py",
      "src = max(scale * (i + 0.5) - 0.5, 0.0)", "src = i * (in_size - 1) / max(out_size - 1, 1)",
      "anyres_max shrink with align_corners=True instead of half-pixel centres"),
    # --- GLM-4V merger, DeepSeek-VL / Janus aligners
    M("glm4v.post_norm_gelu_dropped", "glm4v", "fusion_spec/specs/glm4v.py",
      "h = ops.gelu(ops.layer_norm(", "h = (ops.layer_norm(",
      "GLM-4V merger without the GELU after its post-projection LayerNorm"),
    M("glm5_next.up_not_clamped", "glm4v", "fusion_spec/ops/projection.py",
      "gate, up = xp.clip(gate, None, bound), xp.clip(up, -bound, bound)", "gate, up = xp.clip(gate, None, bound), up",
      "GLM-5-Next clamps the gate but not the up projection"),
    M("glm5_next.gate_clamped_both_sides", "glm4v", "fusion_spec/ops/projection.py",
      "gate, up = xp.clip(gate, None, bound), xp.clip(up, -bound, bound)",
      "gate, up = xp.clip(gate, -bound, bound), xp.clip(up, -bound, bound)",
      "GLM-5-Next gate clamped from below as well"),
    M("deepseek_vl_hybrid.low_res_first", "aligners", "fusion_spec/specs/aligners.py",
      "concat([high, low], axis=-1)", "concat([low, high], axis=-1)",
      "DeepSeek-VL-Hybrid aligner concatenates the SigLIP stream first instead of the high-res one"),
    # --- M-RoPE position ids and image-aware attention masks
    M("mrope.advance_by_height", "mrope", "fusion_spec/ops/mrope.py",
      "run_end = xp.maximum(h, w)", "run_end = h",
      "text after an image continues at s + h instead of s + max(h, w)"),
    M("mrope.transformers4_continues_at_last_frame", "mrope", "fusion_spec/ops/mrope.py",
      "run_end = xp.maximum(run_end, temporal + 1)", "run_end = xp.maximum(run_end, temporal)",
      "transformers4 dialect: text after a video continues at its last frame's position, not after it"),
    M("mrope.transformers4_seconds_rounded", "mrope", "fusion_spec/ops/mrope.py",
      "xp.astype(xp.trunc(s) if", "xp.astype(xp.round(s) if",
      "transformers4 dialect: Qwen2.5-VL's seconds per grid rounded to an integer instead of truncated"),
    M("mrope.transformers4_padding_zero", "mrope", "fusion_spec/ops/mrope.py",
      "padding = xp.ones_like(back) if legacy", "padding = xp.zeros_like(back) if legacy",
      "transformers4 dialect: padding gets position 0 instead of 1"),
    M("mrope.transformers4_deltas_real_count", "mrope", "fusion_spec/ops/mrope.py",
      "(length if legacy else count_real)", "count_real",
      "transformers4 dialect: rope_deltas against the real tokens, not the padded length"),
    M("mrope.transformers4_text_only_ignores_padding", "mrope", "fusion_spec/ops/mrope.py",
      "top = xp.where(count_real < length, xp.maximum(top, xp.ones_like(top)), top)", "top = top",
      "transformers4 dialect with no grid: the maximum leaves out the padding's 1"),
    M("image_mask.window_off_by_one", "image_mask", "fusion_spec/ops/image_mask.py",
      "(k > q - sliding_window)", "(k >= q - sliding_window)",
      "sliding window one key too wide (distance sliding_window still attended)"),
    M("image_mask.prefix_window_cuts_block", "image_mask", "fusion_spec/ops/image_mask.py",
      "allowed = (causal & window)[None, ...] | block", "allowed = (causal[None, ...] | block) & window[None, ...]",
      "PaliGemma 2 prefix block cut by the sliding window (Gemma 3's rule)"),
    # --- the rest of the zoo (issue 26): convolutional abstractors
    M("conv2d.kernel_transposed", "conv_abstractor", CV,
      "for di in range(kh) for dj in range(kw)]", "for dj in range(kw) for di in range(kh)]",
      "convolution as a matmul with the kernel flattened (c, dj, di): each 3x3 kernel transposed"),
    M("conv2d.padding_one_side", "conv_abstractor", CV, "x = xp.concat([cols, x, cols], axis=2)",
      "x = xp.concat([x, cols, cols], axis=2)", "both padding columns on the right: the grid shifted left"),
    M("conv_abstractor.act_after_last_conv", "conv_abstractor", CV,
      "if act is not None and n < len(convs) - 1:", "if act is not None:",
      "HunYuan: the activation after the 1x1 conv too, not only between the convolutions"),
    M("conv_abstractor.newline_first", "conv_abstractor", CV,
      "xp.concat([x, xp.broadcast_to(column, (b, h, 1, d))], axis=2)",
      "xp.concat([xp.broadcast_to(column, (b, h, 1, d)), x], axis=2)",
      "image_newline at the start of each row instead of the end"),
    M("conv_abstractor.begin_end_swapped", "conv_abstractor", "fusion_spec/specs/conv_abstractor.py",
      'begin=n.get("begin"), end=n.get("end")', 'begin=n.get("end"), end=n.get("begin")',
      "HunYuan: image_end before the image and image_begin after it"),
    M("conv_abstractor.map_transposed", "conv_abstractor", "fusion_spec/specs/conv_abstractor.py",
      "x = xp.permute_dims(x, (0, 2, 3, 1))", "x = xp.permute_dims(x, (0, 3, 2, 1))",
      "GOT-OCR2: the [B, C, H, W] map read as [B, C, W, H] (tokens listed column-major)"),
    # --- conditioned and windowed Q-Formers, query poolers
    M("instruct_q_former.instruction_mask_ignored", "query_pooler", QF,
      'h = block(h, h, p + ".attention", self_mask)', 'h = block(h, h, p + ".attention", None)',
      "InstructBLIP: padded instruction tokens attended to (qformer_attention_mask dropped)"),
    M("instruct_q_former.text_with_query_ffn", "query_pooler", QF, 'feed_forward(ht, p, "")',
      'feed_forward(ht, p, "_query")', "InstructBLIP: the instruction tokens through the queries' feed-forward"),
    M("instruct_q_former.positions_from_1", "query_pooler", QF, "positions[:t, :][None, ...]",
      "positions[1:t + 1, :][None, ...]", "instruction position ids start at 1"),
    M("latent_query.keys_without_latents", "query_pooler", QP, "kv = xp.concat([h, lat], axis=1)", "kv = h",
      "Kosmos-2: keys and values from the features only, the latents left out"),
    M("aria.kv_norm_skipped", "query_pooler", QP, 'kv = norm(x, "cross_attn.layer_norm_kv")', "kv = x",
      "Aria: the patches not normalised (layer_norm_kv) before k_proj / v_proj"),
    M("aria.in_proj_chunks_swapped", "query_pooler", QP, "for i, t in enumerate((q, k, v)))",
      "for i, t in enumerate((k, q, v)))", "Aria: nn.MultiheadAttention's in_proj split as [k, q, v]"),
    M("aria.erf_gelu", "query_pooler", QP, "from .primitives import gelu_tanh, layer_norm, linear",
      "from .primitives import gelu as gelu_tanh, layer_norm, linear", "Aria: gelu_new read as the erf GELU"),
    M("window_qformer.windows_not_put_back", "query_pooler", QP, "(b, n, n, q, q, c)), (0, 1, 3, 2, 4, 5))",
      "(b, n, n, q, q, c)), (0, 1, 2, 3, 4, 5))", "Granite: each window's queries listed as rows of the grid"),
    M("window_qformer.corners_transposed", "query_pooler", QP, "((0, 0), (0, 1), (1, 0), (1, 1))",
      "((0, 0), (1, 0), (0, 1), (1, 1))", "Granite: spatial offsets 1 and 2 swapped (row and column confused)"),
    # --- visual embedding tables (Ovis)
    M("visual_table.indicator_slots_first", "visual_table", "fusion_spec/ops/visual_table.py",
      "p = xp.concat([p, full_like_device(xp, (*p.shape[:-1], indicators), 0, p.dtype, p)], axis=-1)",
      "p = xp.concat([full_like_device(xp, (*p.shape[:-1], indicators), 0, p.dtype, p), p], axis=-1)",
      "Ovis: the indicator tokens' zero probabilities put before the visual words"),
    M("visual_table.softmax_over_tokens", "visual_table", "fusion_spec/ops/visual_table.py",
      "p = softmax(logits, axis=-1)", "p = softmax(logits, axis=-2)", "Ovis: softmax over the tokens, not the words"),
    M("visual_table.norm_without_bias", "visual_table", "fusion_spec/ops/visual_table.py",
      'check.param(OP, params, norm + ".bias", (words,), like=x), eps=eps, op=OP)', "None, eps=eps, op=OP)",
      "Ovis: head_norm's bias dropped"),
    # --- VQ code-to-token tables
    M("vq_tokens.eol_before_row", "vq_tokens", "fusion_spec/ops/early.py", "xp.concat([ids, column], axis=1)",
      "xp.concat([column, ids], axis=1)", "Emu3: the end-of-row token before each row instead of after"),
    M("vq_tokens.eol_after_last_row", "vq_tokens", "fusion_spec/ops/early.py",
      'return rows if eol == "after_each_row" else rows[:h * (w + 1) - 1]', "return rows",
      "Apertus: an end-of-row token after the last row too"),
    M("vq_tokens.table_ignored", "vq_tokens", "fusion_spec/ops/early.py", "    if code_ids is None:\n        ids = codes +",
      "    if True:\n        ids = codes +", "Chameleon / Emu3: code c written as offset + c, the table ignored"),
    # --- issue 26: deep fusion outside Flamingo/Mllama (IDEFICS 1, BERT/BLIP and Pix2Struct cross-attention)
    M("idefics.row_mask_on_the_mlp_too", "deep_fusion", XA, "if row is not None and not idefics:",
      "if row is not None:", "IDEFICS rows without an image lose their MLP update too (Mllama's rule)"),
    M("idefics.row_mask_ignored", "deep_fusion", XA, "row_mask=row if idefics or mask_dialect", "row_mask=row if "
      "mask_dialect", "IDEFICS cross_attention_gate accepted but never applied to the attention branch"),
    M("idefics.qk_norm_ignored", "deep_fusion", XA, "qk_norm=qk_norm or not idefics", "qk_norm=not idefics",
      "IDEFICS q/k layer norms (qk_layer_norms) skipped"),
    M("decoder.t5_scores_scaled", "deep_fusion", "fusion_spec/specs/deep_fusion.py", '"layer_norm"), "pre", 1.0)',
      '"layer_norm"), "pre", None)', "Pix2Struct (T5) scores scaled by 1/sqrt(d)"),
    M("decoder.post_norm_without_residual", "deep_fusion", XA, "return layer_norm(x + a, weight,",
      "return layer_norm(a, weight,", "BERT / BLIP cross-attention output normed without the residual"),
    # --- issue 26: small embedders and encoder-free patch embedders
    M("position_pool.grid_width_from_rows", "embedders", EM,
      "width = xp.max(p[..., 0], axis=-1, keepdims=True) + 1", "width = xp.max(p[..., 1], axis=-1, keepdims=True) + 1",
      "Gemma 4 pooling: cells laid out with the grid's height for its width (right only for square grids)"),
    M("position_pool.padding_counted", "embedders", EM,
      "hits = xp.logical_and(cell[..., None] == arange_like(xp, length, x, idx), xp.logical_not(padding)[..., None])",
      "hits = cell[..., None] == arange_like(xp, length, x, idx)",
      "Gemma 4 pooling: padding patches (clamped to position 0) averaged into the first cell"),
    M("factorized_positions.axes_swapped", "embedders", EM, "rows = xp.clip(pos, 0, None) * 2 + arange_like(",
      "rows = xp.clip(pos, 0, None) * 2 + 1 - arange_like(",
      "Gemma 4 Unified: x read from the table's row-axis slot and y from the column-axis slot"),
    M("fold_to_depth.channels_first", "embedders", EM, "xp.permute_dims(y, (0, 1, 3, 5, 2, 4, 6, 7))",
      "xp.permute_dims(y, (0, 1, 3, 5, 7, 2, 4, 6))", "Inkling fold with channels (c, dt, di, dj) instead of "
      "(dt, di, dj, c)"),
    M("gemma3n.soft_tokens_not_scaled", "embedders", EMS, "x * math.sqrt(self.vision_dim)", "x",
      "Gemma 3n soft tokens normed without get_image_features' sqrt(d) scaling"),
    M("muse.last_activation_dropped", "embedders", EMS,
      'h = act(_linear(act(_linear(x, params, "vision_adapter.fc1", op)), params, "vision_adapter.fc2", op))',
      'h = _linear(act(_linear(x, params, "vision_adapter.fc1", op)), params, "vision_adapter.fc2", op)',
      "Muse adapter without the activation after its output layer (a LLaVA MLP)"),
    M("florence2.rows_then_columns", "embedders", EMS,
      "pos = xp.concat([xp.broadcast_to(cols[None, ...], (h, w, c - c // 2)),\n"
      "                         xp.broadcast_to(rows[:, None, :], (h, w, c // 2))], axis=-1)",
      "pos = xp.concat([xp.broadcast_to(rows[:, None, :], (h, w, c // 2)),\n"
      "                         xp.broadcast_to(cols[None, ...], (h, w, c - c // 2))], axis=-1)",
      "Florence-2 2D embedding with the row half first"),
    M("florence2.temporal_cos_sin_swapped", "embedders", EMS, "float(i % 2) for i in range(c)",
      "float(1 - i % 2) for i in range(c)", "Florence-2 temporal table with cos at even features, sin at odd"),
    M("granite_docling.positions_rows_first", "embedders", EMS, "columns_first=True, op=op)",
      "columns_first=False, op=op)", "Granite-Docling position table in vit_mae's rows-then-columns layout"),
    # --- issue 26: spatio-temporal, two-stage and attention-pooling mergers
    M("adaptive_pool.window_end_floor", "mergers", MG, "-((-(i + 1) * in_size) // out_size)",
      "((i + 1) * in_size) // out_size", "adaptive pooling windows ending at floor instead of ceil (no overlap)"),
    M("temporal_pairs.frame_with_itself", "mergers", MG, "range(1 if t > 1 else 0, t, 2)", "range(0, t, 2)",
      "ERNIE-4.5-VL pairs every video frame with itself, as it does an image's"),
    M("minicpmv.window_mean_dropped", "mergers", "fusion_spec/specs/mergers.py",
      "return (y + xp.mean(z, axis=1))[None, ...]", "return y[None, ...]",
      "MiniCPM-V window merger without the mean-of-window residual"),
    M("molmo2.query_first_patch", "mergers", MG, "mean = xp.sum(patches, axis=1, keepdims=True) / count[:, None, None]",
      "mean = patches[:, :1, :]", "Molmo2 pooling query from the group's first patch instead of its mean"),
    M("molmo2.empty_slots_attended", "mergers", "fusion_spec/specs/mergers.py", "mask=valid[:, None, :], op=op)",
      "mask=None, op=op)", "Molmo2 attention pooling over the empty (-1) slots too"),
    # --- global and local views (DeepSeek-OCR 2, Unlimited-OCR)
    M("ocr_views.separator_first", "ocr_views", OV, "parts = [glob, xp.reshape(separator, (1, d))]",
      "parts = [xp.reshape(separator, (1, d)), glob]", "view_separator before the global view instead of after it"),
    M("ocr_views.local_after_global", "ocr_views", OV, "parts.insert(0, xp.reshape(local_tokens, (t * q, d)))",
      "parts.insert(1, xp.reshape(local_tokens, (t * q, d)))", "DeepSeek-OCR 2: the tiles after the global view"),
    M("ocr_views.tiles_not_stitched", "ocr_views", OV, "xp.permute_dims(tiles, (0, 2, 1, 3, 4))",
      "xp.permute_dims(tiles, (0, 1, 2, 3, 4))", "Unlimited-OCR: the tiles read tile by tile, not stitched row by row"),
    M("ocr_views.global_without_newlines", "ocr_views", OV,
      "glob = rows_with_newline(xp.reshape(global_tokens, (g, g, d)))", "glob = global_tokens",
      "Unlimited-OCR: no image_newline in the global view (the tiles keep theirs)"),
    # --- video token reduction (LLaVA-NeXT-Video, LLaVA-OneVision)
    M("video_pool.bilinear_floor", "video_pool", "fusion_spec/ops/video_pool.py",
      "return math.ceil(side / stride) if mode == \"bilinear\" else side // stride", "return side // stride",
      "OneVision's bilinear pooling to floor(S/2) per side instead of ceil(S/2)"),
    M("video_pool.newline_first", "video_pool", "fusion_spec/ops/video_pool.py",
      "[y, xp.broadcast_to(xp.reshape(newline, (1, 1, out_dim)), (b, 1, out_dim))]",
      "[xp.broadcast_to(xp.reshape(newline, (1, 1, out_dim)), (b, 1, out_dim)), y]",
      "OneVision's image_newline before the video's frames instead of after them"),
    M("video_pool.conv_kernel_transposed", "video_pool", "fusion_spec/ops/video_pool.py",
      "xp.permute_dims(weight, (2, 3, 1, 0))", "xp.permute_dims(weight, (3, 2, 1, 0))",
      "LLaVA-NeXT-Video's conv pooler with the kernel's rows and columns swapped"),
    M("video_pool.average_as_sum", "video_pool", "fusion_spec/ops/video_pool.py",
      "xp.mean(win, axis=(2, 4))", "xp.sum(win, axis=(2, 4))",
      "average pooling that sums the window instead of averaging it"),
    M("video_pool.map_column_major", "video_pool", "fusion_spec/ops/video_pool.py",
      "y = xp.reshape(pooled, (b, f * n * n, out_dim))",
      "y = xp.reshape(xp.permute_dims(pooled, (0, 2, 1, 3)), (b, f * n * n, out_dim))",
      "each frame's pooled map written column-major instead of row-major"),
    # --- not operators: token math, cost model, interop, the verifier (judged by tests only)
    M("tokens.llava_next_newline_per_column", "", "fusion_spec/tokens/anyres.py", "return rows * cols + rows + base",
      "return rows * cols + cols + base", "one newline per column instead of per row", "tokens"),
    M("cost.qformer_cross_blocks", "", "fusion_spec/cost.py",
      "h, intermediate_size, h])\n    n_cross = len(range(0, num_layers, cross_attention_frequency))",
      "h, intermediate_size, h])\n    n_cross = num_layers // cross_attention_frequency",
      "qformer_flops counts num_layers // frequency cross-attention blocks (3 layers, frequency 2: 1, not 2)",
      "cost"),
    M("interop.internvl_prefix_lost", "", "fusion_spec/interop/internvl.py",
      '"InternVLForConditionalGeneration": "model.multi_modal_projector."',
      '"InternVLForConditionalGeneration": "multi_modal_projector."',
      "to_state_dict for InternVLForConditionalGeneration loses the 'model.' prefix", "interop"),
    M("interop.token_merge_bias_ignored", "", "fusion_spec/specs/projection.py",
      "return shapes | _mlp_shapes(dims, self.bias)", "return shapes | _mlp_shapes(dims, True)",
      "TokenMerge's bias=False ignored: every linear gets a bias (LFM2/3-VL with projector_bias=False)",
      "interop_copies"),
    M("interop.structure_not_checked", "", "fusion_spec/interop/registry.py",
      "if conv is not None and (conv.children is None or structure_mismatch(module, conv.children) is None):",
      "if conv is not None:",
      "recognition by class name alone: a copy with another structure is converted as if it were the class",
      "interop_copies"),
    M("interop.video_pooler_max_as_average", "", "fusion_spec/interop/video_pool.py",
      '"MaxPool2d": "max"', '"MaxPool2d": "average"',
      "LLaVA-NeXT-Video's max-pooling frame pooler converted as average pooling", "video_pool"),
    M("interop.lfm2_column_major", "", "fusion_spec/interop/token_merge.py",
      'depth=2, variant="internvl", **_mlp(', 'depth=2, variant="internvl", token_order="column_major", **_mlp(',
      "LFM2-VL's pixel unshuffle read as column-major windows", "interop_copies"),
    M("interop.postshuffle_norm_ignored", "", "fusion_spec/interop/qwen2_vl.py",
      'post = bool(getattr(module, "use_postshuffle_norm", False))', "post = False",
      "Qwen3-Omni's DeepStack mergers read with the norm before the merge", "interop_copies"),
    M("interop.omni_deepstack_qwen3_names", "", "fusion_spec/specs/deepstack.py",
      '"qwen3-omni": ("merger_list", "qwen2-vl")', '"qwen3-omni": ("merger_list", "qwen3-vl")',
      "Qwen3-Omni's DeepStack mergers read under Qwen3-VL's names (norm, linear_fc1) instead of ln_q, mlp",
      "interop_copies"),
    M("presets.params_prefix_mid_name", "", "fusion_spec/cli/export.py",
      'if prefix and (before is None or (before and not before.endswith("."))):',
      "if prefix and before is None:",
      "export-onnx --params takes a key whose module path starts mid-name (xvisual.merger.norm.weight)", "presets"),
    M("presets.qwen3_vl_two_deepstack_levels", "", "fusion_spec/presets.py",
      "deepstack_visual_indexes=(8, 16, 24)), name=\"deepstack\")",
      "deepstack_visual_indexes=(8, 16)), name=\"deepstack\")",
      "the qwen3-vl preset with two DeepStack mergers (the checkpoint has three)", "presets"),
    M("verify.rtol_x10", "", "fusion_spec/conformance/tolerance.py",
      'error_ratio(g, w, tol["rtol"], tol["atol"])',
      'error_ratio(g, w, 10 * tol["rtol"], tol["atol"])',
      "the verifier compares with rtol x10", "verify"),
    M("verify_grad.rtol_x10", "", "fusion_spec/conformance/grad.py",
      'entry["grad"]["tolerance"][judged],',
      '{**entry["grad"]["tolerance"][judged], "rtol": 10 * entry["grad"]["tolerance"][judged]["rtol"]},',
      "the gradient verifier (goldens verify --grad) compares with rtol x10", "verify_grad"),
]
del M

#: Test files per family, run with ``-x`` one after the other until one fails: cheap, independent checks first.
TESTS = {
    "primitives": "tests/test_primitives.py tests/test_robustness.py",
    "primitives.gelu": "tests/test_primitives.py tests/test_erf.py tests/test_interop_projectors.py",
    "attention": "tests/test_attention.py tests/test_cross_attention.py",
    "merge_tokens": "tests/test_projection_merge.py tests/test_interop_projectors.py",
    "projection": "tests/test_projection_merge.py tests/test_interop_projectors.py",
    "token_merge": "tests/test_projection_merge.py tests/test_interop_projectors.py",
    "anyres": "tests/test_mutation_survivors.py tests/test_anyres.py tests/test_tokens_vs_hf.py",
    "sequence": "tests/test_sequence.py",
    "cross_attention": "tests/test_cross_attention.py tests/test_cross_attention_vs_peers.py",
    "gated_cross_attention": "tests/test_cross_attention.py tests/test_cross_attention_vs_peers.py",
    "resampler": "tests/test_resampler.py tests/test_resampler_qformer_vs_peers.py",
    "q_former": "tests/test_qformer.py tests/test_resampler_qformer_vs_peers.py",
    "late_early": "tests/test_late_early.py",
    "connectors": "tests/test_interop_connectors.py tests/test_cases_real_modules.py",
    "mistral3": "tests/test_interop_mistral3.py tests/test_cases_real_modules.py",
    "qwen3_vl": "tests/test_interop_qwen3_vl.py tests/test_cases_real_modules.py",
    "llava_onevision": "tests/test_interop_llava_onevision.py tests/test_anyres.py",
    "glm4v": "tests/test_interop_glm4v.py tests/test_cases_real_modules.py",
    "aligners": "tests/test_interop_aligners.py tests/test_cases_real_modules.py",
    "deep_fusion": "tests/test_interop_deep_fusion.py",
    "embedders": "tests/test_interop_embedders.py",
    "mergers": "tests/test_interop_mergers.py",
    "mrope": "tests/test_mrope.py",
    "image_mask": "tests/test_image_mask.py",
    "conv_abstractor": "tests/test_conv_abstractor.py tests/test_interop_conv_abstractor.py",
    "query_pooler": "tests/test_query_pooler.py tests/test_interop_query_pooler.py",
    "visual_table": "tests/test_interop_visual_table.py",
    "vq_tokens": "tests/test_vq_tokens.py",
    "video_pool": "tests/test_video_pool.py",
    "ocr_views": "tests/test_ocr_views.py",
    "tokens": "tests/test_tokens.py tests/test_tokens_vs_hf.py",
    "cost": "tests/test_mutation_survivors.py tests/test_cost.py",
    "interop": "tests/test_mutation_survivors.py tests/test_interop_projectors.py",
    "interop_copies": "tests/test_interop_copies.py",
    "presets": "tests/test_presets_real_sizes.py tests/test_presets.py",
    "verify": "tests/test_mutation_survivors.py tests/test_conformance.py",
    "verify_grad": "tests/test_mutation_survivors.py tests/test_conformance_grad.py",
}
#: Deselected everywhere: a regenerated bundle makes it pass whatever the code does.
DESELECT = "tests/test_conformance.py::test_regenerated_bundle_matches_the_checked_in_one"

# Run in the mutated copy: write its outputs for one family's cases, per dtype (``goldens produce``).
PRODUCE = r"""
import sys
from pathlib import Path
from fusion_spec.conformance.bundle import Bundle
from fusion_spec.conformance.verify import produce
from fusion_spec.xp import _FAST_PATHS
_FAST_PATHS.clear()  # the package's own NumPy fast paths (GELU) would run instead of the mutated formula
bundle_dir, family, out = sys.argv[1:4]
bundle = Bundle(bundle_dir)
entries = [e for e in bundle.cases if e["family"] == family]
for dtype, backend in (("float64", "numpy"), ("float32", "numpy"), ("bfloat16", "torch"), ("float16", "torch")):
    for entry in entries:
        bundle.cases = [entry]
        try:
            produce(bundle, Path(out) / dtype, dtype, backend)
        except Exception:  # no output file: verify reports the case 'missing', the mutant is killed
            pass
"""


def apply(source: str, mutant: Mutant) -> str:
    """``source`` with the mutant applied; ValueError unless ``old`` occurs exactly once (a stale mutant)."""
    count = source.count(mutant.old)
    if count != 1:
        raise ValueError(f"mutant {mutant.id}: its text occurs {count} times in {mutant.file} (expected once); "
                         "update the mutant to the current code")
    return source.replace(mutant.old, mutant.new)


def copy_repo(dest: Path) -> Path:
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(copy))
    env.pop("PYTEST_ADDOPTS", None)
    return env


def kill_matrix(mutant: Mutant, copy: Path, work: Path) -> dict:
    """Per dtype: killed?, worst ratio, failing cases and (bfloat16, float16) the sign test's z farthest
    from 0; plus the exact size of the change (float64), per output RMS and per rounding of each dtype."""
    from fusion_spec.conformance.bundle import PACKAGE_BUNDLE, Bundle
    from fusion_spec.conformance.reference import Reference
    from fusion_spec.conformance.tolerance import UNIT_ROUNDOFF
    from fusion_spec.conformance.verify import verify

    out = work / mutant.id
    proc = subprocess.run([sys.executable, "-c", PRODUCE, str(PACKAGE_BUNDLE), mutant.family, str(out)], cwd=copy,
                          env=_env(copy), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"mutant {mutant.id}: producing outputs crashed:\n{proc.stderr[-2000:]}")
    bundle = Bundle()
    reference = Reference(bundle)
    rms = {e["id"]: e["error_model"]["output_rms"] for e in bundle.cases}
    row = {}
    for dtype in ("float64", "float32", *LOW):
        (out / dtype).mkdir(parents=True, exist_ok=True)
        results = verify(bundle, out / dtype, select=lambda e: e["family"] == mutant.family)
        bad = [r for r in results if not r.ok]
        row[dtype] = {"killed": bool(bad), "cases": len(results), "failing": [r.case for r in bad],
                      "ratio": max((r.ratio for r in results), default=0.0),
                      "bias": max((r.bias for r in results), key=abs, default=0.0)}
        if dtype == "float64":  # the exact change: per output RMS, per rounding, and under each low tolerance
            row["change"] = max((r.max_abs / max(rms[r.case], 1e-300) for r in results), default=0.0)
            for low in LOW:
                row[f"{low}_roundings"] = row["change"] / UNIT_ROUNDOFF[low]
                row[f"{low}_visible"] = max((_ratio(bundle, reference, r.case, out / dtype, low) for r in results),
                                            default=0.0)
    shutil.rmtree(out, ignore_errors=True)
    return row


def _ratio(bundle, reference, case: str, out: Path, dtype: str) -> float:
    """The float64 mutant's worst error ratio for ``case`` under ``dtype``'s tolerance (0 if not produced)."""
    from fusion_spec.conformance import safetensors_io
    from fusion_spec.conformance.runner import compare

    entry, path = bundle.case(case), out / f"{case}.safetensors"
    if not path.is_file():
        return math.inf
    got = {k[len("output."):]: v for k, v in safetensors_io.loads(path.read_bytes()).items()}
    return compare(entry, got, reference.outputs(entry, "float64"), dtype)[1]


def kill_by_tests(mutant: Mutant, copy: Path) -> dict:
    """``pytest -x`` on each file of the mutant's selection in turn, in the mutated copy, until one
    fails (later files are not even collected): the first failing test, or survived."""
    start = time.perf_counter()
    for path in mutant.tests:
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--deselect", DESELECT, path]
        proc = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=900)
        if proc.returncode == 0:
            continue
        killer = re.search(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
        if proc.returncode not in (1, 2) or killer is None:
            raise RuntimeError(f"mutant {mutant.id}: pytest {path} exited {proc.returncode}:\n{proc.stdout[-2000:]}")
        return {"killed": True, "by": killer.group(1), "seconds": time.perf_counter() - start}
    return {"killed": False, "by": "", "seconds": time.perf_counter() - start}


def run(mutants: list[Mutant], matrix: bool = True, tests: bool = True,
        log: Callable[[str], None] = lambda line: print(line, flush=True)) -> dict[str, dict]:
    """Every mutant applied in turn to one temporary copy of the repository (restored after each)."""
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fusion_spec_mutation_") as tmp:
        copy, work = copy_repo(Path(tmp) / "repo"), Path(tmp) / "out"
        for mutant in mutants:
            path = copy / mutant.file
            original = path.read_text()
            path.write_text(apply(original, mutant))
            start = time.perf_counter()
            try:
                row = {"family": mutant.family, "why": mutant.why}
                if matrix and mutant.family:
                    row["matrix"] = kill_matrix(mutant, copy, work)
                if tests:
                    row["tests"] = kill_by_tests(mutant, copy)
            finally:
                path.write_text(original)
            results[mutant.id] = row
            log(f"{mutant.id:42s} {_summary(row)}  ({time.perf_counter() - start:.0f} s)")
    return results


def _summary(row: dict) -> str:
    parts = []
    if "matrix" in row:
        parts.append(" ".join(f"{dt}:{'killed' if row['matrix'][dt]['killed'] else 'SURVIVED'}"
                              for dt in ("float32", *LOW)))
    if "tests" in row:
        parts.append(f"tests: {row['tests']['by'] or 'SURVIVED'}")
    return "  ".join(parts)


def failures(results: dict[str, dict]) -> list[str]:
    """What makes the run fail: float32 survivors of the kill matrix, bfloat16 and float16 survivors whose
    exact change is larger than one rounding of the output, and survivors of the tests."""
    bad = []
    for mid, row in results.items():
        if "matrix" in row and not row["matrix"]["float32"]["killed"]:
            bad.append(f"{mid} survives the bundle in float32")
        for low in LOW if "matrix" in row else ():
            if not row["matrix"][low]["killed"] and row["matrix"][f"{low}_roundings"] > 1:
                bad.append(f"{mid} survives the bundle in {low} with a change of "
                           f"{row['matrix'][f'{low}_roundings']:.2g} roundings")
        if "tests" in row and not row["tests"]["killed"]:
            bad.append(f"{mid} survives its tests ({' '.join(_by_id(mid).tests)})")
    return bad


def _by_id(mid: str) -> Mutant:
    return next(m for m in MUTANTS if m.id == mid)


# --- the tables in docs/mutation.md --------------------------------------------------------------

MATRIX_BEGIN, MATRIX_END = "<!-- kill-matrix:begin -->", "<!-- kill-matrix:end -->"
REPORT_BEGIN, REPORT_END = "<!-- mutation-report:begin -->", "<!-- mutation-report:end -->"


def _cell(m: dict) -> str:
    if not m["killed"]:
        return "survives"
    return f"killed ({len(m['failing'])}/{m['cases']}, ratio {m['ratio']:.1e})".replace("inf", "∞")


def _low_cell(m: dict, dtype: str) -> str:
    """A bfloat16 or float16 cell: a survivor says by how much (roundings of the output, the exact
    change under the tolerance) and what the sign test saw."""
    cell = _cell(m[dtype])
    if not m[dtype]["killed"]:
        z = m[dtype]["bias"]
        cell += (f": the exact change is {m[f'{dtype}_roundings']:.2g} roundings ({m[f'{dtype}_visible']:.2g}x the "
                 f"tolerance); sign test z {z:+.1f}" + (" BIAS reported" if abs(z) >= 5 else ""))
    return cell


def _matrix_rows(results: dict[str, dict]) -> dict[str, str]:
    rows = {}
    for mid, row in results.items():
        if "matrix" not in row:
            continue
        m = row["matrix"]
        rows[mid] = (f"| `{mid}` | {row['family']} | {_cell(m['float32'])} | {_low_cell(m, 'bfloat16')} | "
                     f"{_low_cell(m, 'float16')} | {m['change']:.1e} |")
    return rows


def _report_rows(results: dict[str, dict]) -> dict[str, str]:
    rows = {}
    for mid, row in results.items():
        if "tests" in row:
            by = f"`{row['tests']['by']}`" if row["tests"]["killed"] else "SURVIVES"
            rows[mid] = f"| `{mid}` | {row['why']} | {by} |"
    return rows


def _matrix_table(rows: list[str]) -> str:
    found = statuses("\n".join(rows))
    n = len(found)
    k32, kb, kh = (sum(r[i] == "killed" for r in found) for i in (2, 3, 4))
    head = ["| mutant | family | float32 | bfloat16 | float16 | change / output RMS |", "|---|---|---|---|---|---|"]
    return "\n".join(head + rows + [f"\nKilled: float32 {k32}/{n}, bfloat16 {kb}/{n}, float16 {kh}/{n}."])


def _report_table(rows: list[str]) -> str:
    found = statuses("\n".join(rows))
    n, k = len(found), sum(r[2].startswith("`") for r in found)
    head = ["| mutant | slip | killed by |", "|---|---|---|"]
    return "\n".join(head + rows + [f"\nKilled by the tests: {k}/{n}."])


def matrix_table(results: dict[str, dict]) -> str:
    return _matrix_table(list(_matrix_rows(results).values()))


def report_table(results: dict[str, dict]) -> str:
    return _report_table(list(_report_rows(results).values()))


def _between(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def documented(text: str | None = None) -> tuple[str, str]:
    """The (kill matrix, mutation report) tables as written in docs/mutation.md."""
    text = DOC.read_text() if text is None else text
    return _between(text, MATRIX_BEGIN, MATRIX_END), _between(text, REPORT_BEGIN, REPORT_END)


def statuses(table: str) -> list[tuple[str, ...]]:
    """A table's rows reduced to what must not change between machines: ids, kill status, killing test."""
    out = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `"):
            out.append(tuple(c.split(" ")[0].rstrip(":") if c.startswith(("killed", "survives")) else
                             c if c.startswith(("`", "SURVIVES")) else "" for c in cells))
    return out


def _documented_rows(table: str) -> dict[str, str]:
    """The rows of a documented table by mutant id."""
    return {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}


def write_docs(results: dict[str, dict], merge: bool = False) -> None:
    """Rewrite the two tables of docs/mutation.md from ``results``. ``merge``: ``results`` covers some
    mutants only (``--only``); their rows are replaced or added, the other mutants' documented rows
    are kept as they are, every row in :data:`MUTANTS` order (rows of mutants no longer listed dropped)."""
    text = DOC.read_text()
    old = documented(text)
    tables = []
    for new_rows, doc_table, make in ((_matrix_rows(results), old[0], _matrix_table),
                                      (_report_rows(results), old[1], _report_table)):
        kept = _documented_rows(doc_table) if merge else {}
        rows = [new_rows.get(m.id) or kept.get(m.id) for m in MUTANTS]
        tables.append(make([r for r in rows if r]))
    for (begin, end), table in zip(((MATRIX_BEGIN, MATRIX_END), (REPORT_BEGIN, REPORT_END)), tables):
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--no-matrix", action="store_true", help="skip the bundle kill matrix")
    parser.add_argument("--no-tests", action="store_true", help="skip the test kill")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the tables in docs/mutation.md (with "
                        "--only: those mutants' rows, the others' kept as documented)")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.id in args.only]
    start = time.perf_counter()
    results = run(mutants, matrix=not args.no_matrix, tests=not args.no_tests)
    print(f"\n{matrix_table(results)}\n\n{report_table(results)}\n\n{len(mutants)} mutants in "
          f"{time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=lambda x: None if math.isnan(x) else x))
    if args.write_docs:
        write_docs(results, merge=bool(args.only))
    bad = failures(results)
    for line in bad:
        print("FAIL:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
