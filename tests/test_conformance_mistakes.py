"""The suite catches real mistakes: deliberately wrong implementations fed to `goldens verify` fail.

Each wrong variant is a faulty output producer (a monkeypatched operator, or a spec rebuilt with a
wrong config) writing ``OUT/<case id>.safetensors`` like another implementation would. The cases the
mistake affects must be reported as failures, and the others must still pass (so the failure is the
mistake's, not noise).
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable

import numpy as np
import pytest

import fusion_spec.ops as ops
from fusion_spec.cli import main
from fusion_spec.conformance.bundle import Bundle, call, spec_from_manifest
from fusion_spec.conformance.verify import produce, verify
from fusion_spec.ops import erf as erf_module
from fusion_spec.ops import primitives

attention_module = importlib.import_module("fusion_spec.ops.attention")
merge_module = importlib.import_module("fusion_spec.ops.merge")
cross_attention_module = importlib.import_module("fusion_spec.ops.cross_attention")


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle()


def failing(bundle: Bundle, out) -> set[str]:
    return {r.case for r in verify(bundle, out) if not r.ok}


def patch_everywhere(monkeypatch, original: Callable, replacement: Callable) -> None:
    """Replace ``original`` in every fusion_spec module that imported it (``from .x import f``)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("fusion_spec") and module is not None:
            for attr, value in list(vars(module).items()):
                if value is original:
                    monkeypatch.setattr(module, attr, replacement)


def ids_with(bundle: Bundle, flag: str) -> set[str]:
    return {e["id"] for e in bundle.cases if flag in e["flags"]}


def test_tanh_gelu_instead_of_erf(bundle, tmp_path, monkeypatch):
    c = math.sqrt(2.0 / math.pi)
    # erf(z) replaced so that 0.5 t (1 + erf(t / sqrt 2)) becomes the tanh approximation exactly.
    # NumPy's erf, which both the GELU formula and its NumPy fast path call.
    monkeypatch.setattr(erf_module, "erf_numpy", lambda z: np.tanh(c * (math.sqrt(2) * z + 0.044715 * (math.sqrt(2) * z) ** 3)))
    out = produce(bundle, tmp_path)
    monkeypatch.undo()
    bad = failing(bundle, out)
    assert ids_with(bundle, "erf-gelu") <= bad
    assert "primitives.gelu_tanh" not in bad and "mlp_projection.gelu_tanh" not in bad
    assert bad == ids_with(bundle, "erf-gelu")


def test_layer_norm_eps_1e5_instead_of_1e12(bundle, tmp_path):
    def producer(entry, tensors):
        entry = dict(entry)
        if entry["kind"] == "spec":
            config = {k: (1e-5 if "eps" in k and v == 1e-12 else v) for k, v in entry["config"].items()}
            entry["config"] = config
        else:
            entry["runtime"] = {k: (1e-5 if k == "eps" and v == 1e-12 else v) for k, v in entry["runtime"].items()}
        return call(entry, tensors)
    bad = failing(bundle, produce(bundle, tmp_path, producer=producer))
    assert bad == ids_with(bundle, "bert-eps") and bad


def _pre_norm_q_former(entry, tensors):
    """BLIP-2's Q-Former with the norms moved before each sub-block (``h + f(LN(h))``, GPT-style) instead
    of after the residual (``LN(h + f(h))``, BERT's post-norm), same weights."""
    spec = spec_from_manifest(entry["op"], entry["config"])
    p = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    x = tensors["input.image_embeds"]
    b, hdim, nh = x.shape[0], spec.hidden_size, spec.num_heads
    queries = tensors["input.query_embeds"] if "input.query_embeds" in tensors else \
        np.broadcast_to(p["query_tokens"], (b,) + p["query_tokens"].shape[1:])
    mask = tensors.get("input.encoder_attention_mask")
    mask = None if mask is None else mask[:, None, None, :]

    def lin(h, name):
        return primitives.linear(h, p[f"qformer.{name}.weight"], p[f"qformer.{name}.bias"])

    def ln(h, name):
        return primitives.layer_norm(h, p[f"qformer.{name}.weight"], p[f"qformer.{name}.bias"], eps=spec.layer_norm_eps)

    def mha(h, kv, prefix, m):
        split = lambda t: t.reshape(b, t.shape[1], nh, hdim // nh).transpose(0, 2, 1, 3)  # noqa: E731
        a = ops.attention(split(lin(h, prefix + ".attention.query")), split(lin(kv, prefix + ".attention.key")),
                          split(lin(kv, prefix + ".attention.value")), mask=m)
        return lin(a.transpose(0, 2, 1, 3).reshape(b, h.shape[1], hdim), prefix + ".output.dense")

    h = ln(queries, "layernorm")
    for i in range(spec.num_layers):
        pre = f"encoder.layer.{i}"
        n = ln(h, pre + ".attention.output.LayerNorm")
        h = h + mha(n, n, pre + ".attention", None)
        if i % spec.cross_attention_frequency == 0:
            h = h + mha(ln(h, pre + ".crossattention.output.LayerNorm"), x, pre + ".crossattention", mask)
        n = ln(h, pre + ".output_query.LayerNorm")
        h = h + lin(primitives.gelu(lin(n, pre + ".intermediate_query.dense")), pre + ".output_query.dense")
    if spec.language_projection:
        h = primitives.linear(h, p["language_projection.weight"], p["language_projection.bias"])
    return {"out": h}


def test_pre_norm_instead_of_post_norm(bundle, tmp_path):
    """InternVL normalises the merged 4C-wide token; normalising each C-wide patch before merging
    (Qwen2-VL's placement) with the same weights is a different operator. BLIP-2's Q-Former is post-norm
    (BERT); a pre-norm Q-Former with the same weights is another, and so is a pre-norm BERT / BLIP decoder
    cross-attention (``x + attn(LN(x))`` instead of ``LN(x + attn(x))``)."""
    def producer(entry, tensors):
        if "post-norm" not in entry["flags"]:
            return call(entry, tensors)
        if entry["op"] == "QFormer":
            return _pre_norm_q_former(entry, tensors)
        if entry["op"] == "DecoderCrossAttention":
            spec = spec_from_manifest(entry["op"], entry["config"])
            canonical = {c: tensors["param." + r] for c, r in spec.names().items() if "param." + r in tensors}
            x, e = tensors["input.x"], tensors["input.encoder"]
            h = primitives.layer_norm(x, canonical["norm.weight"], canonical["norm.bias"], eps=spec.eps)
            attn = {k: v for k, v in canonical.items() if not k.startswith("norm.")}
            mask = tensors.get("input.encoder_mask")
            return {"out": x + ops.cross_attention(h, e, attn, num_heads=spec.num_heads,
                                                   mask=None if mask is None else mask[:, None, :])}
        spec = spec_from_manifest(entry["op"], entry["config"])
        x = tensors["input.x"]
        b, n, d = x.shape
        k = spec.factor
        grid = tuple(entry["runtime"].get("grid", (int(round(math.sqrt(n))),) * 2))
        merged = ops.merge_tokens(x, mode="spatial", grid=grid, factor=k, token_order=spec.token_order)
        parts = merged.reshape(b, -1, k * k, d)
        mean = parts.mean(-1, keepdims=True)
        normed = ((parts - mean) / np.sqrt(parts.var(-1, keepdims=True) + spec.norm_eps)).reshape(merged.shape)
        p = {k_[len("param."):]: v for k_, v in tensors.items() if k_.startswith("param.")}
        h = normed * p["layer_norm.weight"] + p["layer_norm.bias"]
        wrong = dict(p)
        del wrong["layer_norm.weight"], wrong["layer_norm.bias"]
        return {"out": ops.mlp_projection(h, wrong, depth=spec.depth, activation=spec.activation)}
    bad = failing(bundle, produce(bundle, tmp_path, producer=producer))
    assert bad == ids_with(bundle, "post-norm") and bad
    assert {e["op"] for e in bundle.cases if e["id"] in bad} == {"TokenMerge", "QFormer", "DecoderCrossAttention"}


def test_q_former_layer_norm_eps_1e5_instead_of_1e12(bundle, tmp_path):
    """A Q-Former built with PyTorch's default LayerNorm eps (1e-5) instead of BERT's 1e-12."""
    def producer(entry, tensors):
        if entry["op"] == "QFormer":
            entry = dict(entry, config=dict(entry["config"], layer_norm_eps=1e-5))
        return call(entry, tensors)
    bad = failing(bundle, produce(bundle, tmp_path, producer=producer))
    q_former = {e["id"] for e in bundle.cases if e["op"] == "QFormer"}
    assert len(q_former) >= 5 and bad == q_former and q_former <= ids_with(bundle, "bert-eps")


def test_missing_media_mask(bundle, tmp_path, monkeypatch):
    """A gated block / masked cross-attention that ignores media_locations (every text token attends to
    every image, as if the mask were never built) fails exactly the cases that have media_locations."""
    original = cross_attention_module.masked_cross_attention

    def unmasked(x, media, params, *, media_locations=None, use_cached_media=False, **kw):
        return original(x, media, params, **kw)
    patch_everywhere(monkeypatch, original, unmasked)
    out = produce(bundle, tmp_path)
    monkeypatch.undo()
    bad = failing(bundle, out)
    with_locations = {e["id"] for e in bundle.cases if e["kind"] == "spec" and "gate-zero" not in e["flags"]
                      and any(i["name"] == "media_locations" for i in e["inputs"])}  # gated off: no mask to see
    assert len(with_locations) >= 8 and bad == with_locations
    assert with_locations <= ids_with(bundle, "media-locations")
    assert {e["op"] for e in bundle.cases if e["id"] in bad} == {"CrossAttention", "GatedCrossAttentionBlock",
                                                                 "GatedCrossAttentionStack"}


@pytest.mark.parametrize("field, swap, flag", [
    ("fully_masked_rows", {"uniform": "zeros", "zeros": "uniform"}, None),
    ("mask_dialect", {"hf": "meta", "meta": "hf"}, "text-row-masked"),
])
def test_wrong_masked_row_rule(bundle, tmp_path, field, swap, flag):
    """Rows with no attendable media: open_flamingo's uniform attention instead of zeros (or the reverse),
    and Mllama's HF mask dialect instead of Meta's (or the reverse), fail exactly the cases where such
    rows reach the output."""
    def producer(entry, tensors):
        if field in entry["config"]:
            entry = dict(entry, config=dict(entry["config"], **{field: swap[entry["config"][field]]}))
        return call(entry, tensors)
    bad = failing(bundle, produce(bundle, tmp_path, producer=producer))
    if flag is None:  # zeros <-> uniform matters where some row has nothing to attend to and is not zeroed anyway
        want = {e["id"] for e in bundle.cases if "uniform-rows" in e["flags"]
                or ("fully-masked-row" in e["flags"] and e["op"] != "attention")}
    else:
        want = {e["id"] for e in bundle.cases if flag in e["flags"] and e["config"].get("variant") == "mllama"}
    assert len(want) >= 4 and bad == want


def test_reversed_merge_order(bundle, tmp_path, monkeypatch):
    original = merge_module.merge_tokens

    def reversed_merge(x, **kw):
        y = original(x, **kw)
        if kw.get("mode") == "pool":
            return y
        b, n, wide = y.shape
        d = x.shape[-1]
        return y.reshape(b, n, wide // d, d)[:, :, ::-1, :].reshape(b, n, wide)  # tokens of a group reversed
    patch_everywhere(monkeypatch, original, reversed_merge)
    out = produce(bundle, tmp_path)
    monkeypatch.undo()
    bad = failing(bundle, out)
    merging = {e["id"] for e in bundle.cases
               if (e["op"] == "merge_tokens" and e["runtime"]["mode"] != "pool")
               or e["config"].get("compress_ratio", 1) > 1
               or (e["op"] == "TokenMerge" and e["config"]["mode"] != "pool" and e["config"]["factor"] > 1)
               or e["op"] in ("Idefics3Connector", "Llama4PixelShuffleMLP", "AyaVisionProjector", "MiniMaxM3VLProjector",
                              "Ernie45VLResampler", "MiniCPMVMerger", "GraniteDoclingConnector")
               or e["op"] == "Qwen3VLDeepStack"  # its mergers are TokenMerge's consecutive merge
               or (e["op"] == "VisualEmbeddingTable" and e["config"]["variant"] == "ovis2"
                   and e["config"]["merge"] > 1)}  # Ovis2's k x k spatial merge
    assert merging and bad == merging


def test_single_head_attention_as_in_edifice(bundle, tmp_path, monkeypatch):
    """Edifice's cross-attention is single-head whatever num_heads says (num_heads only sets the scale)."""
    original = attention_module.attention

    def single_head(q, k, v, *, mask=None, scale=None, **kw):
        b, h, lq, d = q.shape
        hk = k.shape[1]
        k = np.repeat(k, h // hk, axis=1)
        v = np.repeat(v, h // hk, axis=1)
        merge = lambda t: t.transpose(0, 2, 1, 3).reshape(b, 1, t.shape[2], h * d)  # noqa: E731
        if mask is not None:  # one head: the first head's mask
            mask = np.broadcast_to(mask.reshape((1,) * (4 - mask.ndim) + mask.shape),
                                   (b, h, lq, k.shape[2]))[:, :1]
        out = original(merge(q), merge(k), merge(v), mask=mask, scale=d ** -0.5 if scale is None else scale)
        return out.reshape(b, lq, h, d).transpose(0, 2, 1, 3)
    patch_everywhere(monkeypatch, original, single_head)
    out = produce(bundle, tmp_path)
    monkeypatch.undo()
    bad = failing(bundle, out)
    multi_head = ids_with(bundle, "multi-head") | {e["id"] for e in bundle.cases if e["op"] == "attention"}
    assert multi_head <= bad


def test_wrong_implementation_fails_the_cli_verify(bundle, tmp_path, capsys):
    out = produce(bundle, tmp_path, producer=lambda e, t: {k: v * (1 + 1e-6) if v.dtype.kind == "f" else v
                                                             for k, v in call(e, t).items()})
    assert main(["goldens", "verify", str(bundle.path), "--outputs", str(out)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_fast_path_that_averages_fully_masked_rows_is_caught(bundle):
    """A fused kernel that gives mean(V) for a query row with no visible key (JAX's and MLX's own
    kernels do) passes ordinary masks but fails the fully-masked-row cases. Fast paths registered in
    fusion_spec.xp are what the runner exercises."""
    from fusion_spec.conformance import runner
    from fusion_spec.xp import register_fast_path, unregister_fast_path

    def kernel(q, k, v, *, mask=None, scale=None):
        s = np.einsum("bhqd,bhkd->bhqk", q, np.repeat(k, q.shape[1] // k.shape[1], axis=1)) * scale
        if mask is not None:
            s = np.where(mask, s, np.finfo(s.dtype).min)  # finite fill: a fully masked row goes uniform
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return np.einsum("bhqk,bhkd->bhqd", p, np.repeat(v, q.shape[1] // v.shape[1], axis=1)).astype(q.dtype)

    register_fast_path("attention", "numpy", kernel)
    try:
        results, _ = runner.run(["numpy"], ["float64", "float32"], bundle=bundle)
    finally:
        unregister_fast_path("attention", "numpy")
    bad = {r.case for r in results if not r.ok}
    assert bad == ids_with(bundle, "fully-masked-row")
    assert {e["op"] for e in bundle.cases if e["id"] in bad} >= {"attention", "CrossAttention",
                                                                 "GatedCrossAttentionBlock"}
