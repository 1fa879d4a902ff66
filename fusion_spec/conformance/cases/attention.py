"""Scaled dot-product attention: grouped and multi-query heads, masks, fully masked rows."""

from __future__ import annotations

import numpy as np

from .base import Case, _c, bernoulli, const, normal


def attention_cases() -> list[Case]:
    def qkv(b, h, hk, lq, lk, d):
        return (("q", normal(b, h, lq, d)), ("k", normal(b, hk, lk, d)), ("v", normal(b, hk, lk, d)))

    rows_masked = np.ones((2, 1, 5, 6), dtype=bool)
    rows_masked[0, 0, 1] = False  # a fully masked query row -> zeros
    rows_masked[1, 0, [0, 4]] = False
    rows_masked[1, 0, 2, :3] = False
    pad = np.array([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]
    causal = np.tril(np.ones((4, 4), dtype=bool))
    return [
        _c("attention.basic.b1", "attention", *qkv(1, 2, 2, 3, 5, 4), stages=3),
        _c("attention.basic.b3_odd", "attention", *qkv(3, 3, 3, 5, 7, 5), stages=3),
        _c("attention.gqa", "attention", *qkv(2, 4, 2, 3, 6, 4), stages=3, flags=("grouped-query",)),
        _c("attention.mqa", "attention", *qkv(1, 4, 1, 2, 5, 8), stages=3, flags=("grouped-query",)),
        _c("attention.scale", "attention", *qkv(1, 2, 2, 3, 4, 4), runtime={"scale": 0.3}, stages=3),
        _c("attention.key_padding", "attention", *qkv(2, 2, 2, 3, 6, 4), kwargs=[("mask", const(pad))],
           stages=3, flags=("mask",)),
        _c("attention.causal", "attention", *qkv(1, 2, 1, 4, 4, 4), kwargs=[("mask", const(causal))],
           stages=3, flags=("mask", "grouped-query")),
        _c("attention.fully_masked_rows", "attention", *qkv(2, 2, 2, 5, 6, 4),
           kwargs=[("mask", const(rows_masked))], stages=3, flags=("mask", "fully-masked-row"),
           notes="query rows whose every key is masked must give zeros (cuDNN/JAX/MLX kernels do not)"),
        _c("attention.random_mask_per_head", "attention", *qkv(2, 4, 2, 3, 5, 4),
           kwargs=[("mask", bernoulli(2, 4, 3, 5, p=0.6))], stages=3, flags=("mask", "grouped-query")),
        _c("attention.single_query", "attention", *qkv(2, 2, 2, 1, 9, 4), stages=3),
    ]
