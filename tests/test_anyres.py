"""LLaVA-NeXT anyres packing: ops.pack_anyres_features / AnyresPack against an independent NumPy loop, HF's
own pack_image_features and unpad_image (tiny LlavaNextModel, no downloads), token counts, errors."""

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops, tokens
from fusion_spec.specs import AnyresPack

rng = np.random.default_rng(3)
PINS = ((12, 24), (24, 12), (24, 24), (36, 12))  # tile 12 px, patch 4 -> p = 3 patches per side


def reference(features, newline, grid, image_size):
    """Plain loops: stitch tiles, cut the aspect padding, add a newline after each row, base first."""
    crops, tokens_, d = features.shape
    p = int(round(tokens_ ** 0.5))
    out = [features[0][t] for t in range(tokens_)]
    if crops == 1:
        return np.stack(out + ([newline] if newline is not None else []))
    gh, gw = grid
    big = np.zeros((gh * p, gw * p, d))
    for r in range(gh):
        for c in range(gw):
            big[r * p:(r + 1) * p, c * p:(c + 1) * p] = features[1 + r * gw + c].reshape(p, p, d)
    h, w = image_size
    H, W = gh * p, gw * p
    if w / h > W / H:
        keep = int(round(h * W / w, 7))
        pad = (H - keep) // 2
        big = big[pad:H - pad]
    else:
        keep = int(round(w * H / h, 7))
        pad = (W - keep) // 2
        big = big[:, pad:W - pad]
    for row in big:
        out.extend(row)
        if newline is not None:
            out.append(newline)
    return np.stack(out)


SIZES = [(5, 9), (9, 5), (30, 7), (12, 12), (13, 40), (40, 13), (7, 1), (100, 101)]


@pytest.mark.parametrize("image_size", SIZES)
@pytest.mark.parametrize("newline", [True, False])
def test_pack_matches_independent_loop(image_size, newline):
    spec = AnyresPack(embed_dim=5, tile_size=12, patch_size=4, grid_pinpoints=PINS, newline=newline)
    gh, gw = spec.grid(image_size)
    features = rng.standard_normal((1 + gh * gw, 9, 5))
    params = spec.init(seed=1)
    got = spec.apply(params, features, image_size=image_size)
    want = reference(features, params.get("image_newline"), (gh, gw), image_size)
    np.testing.assert_array_equal(got, want)
    assert got.shape == spec.output_shape(features.shape, image_size)


def test_base_only_gets_one_newline():
    nl = rng.standard_normal(4)
    f = rng.standard_normal((1, 4, 4))
    got = ops.pack_anyres_features(f, {"image_newline": nl}, grid=(2, 1), image_size=(3, 3))
    np.testing.assert_array_equal(got, np.concatenate([f[0], nl[None]]))


def test_token_counts_equal_the_processor_math():
    # With HF's defaults (336 px tiles, patch 14, strategy "default" removing CLS): packed length equals the
    # processor's image-token count.
    spec = AnyresPack(embed_dim=8)
    for (h, w), want in {(500, 333): 1476, (333, 500): 1464, (336, 336): 1176, (480, 640): 2340,
                         (720, 1280): 1948, (1000, 200): 1656, (100, 1000): 1160}.items():
        gh, gw = spec.grid((h, w))
        assert spec.output_shape((1 + gh * gw, 576, 8), (h, w))[0] == want == tokens.count("llava-next", h, w)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_other_backends_return_their_own_arrays(backend):
    mod = pytest.importorskip(backend)
    spec = AnyresPack(embed_dim=5, tile_size=12, patch_size=4, grid_pinpoints=PINS)
    params = spec.init(seed=2)
    features = rng.standard_normal((3, 9, 5))
    want = spec.apply(params, features, image_size=(5, 9))
    if backend == "torch":
        conv = mod.from_numpy
    else:
        import jax.numpy as jnp
        conv = lambda a: jnp.asarray(a.astype(np.float32))  # noqa: E731
    got = spec.apply({k: conv(v) for k, v in params.items()}, conv(features), image_size=(5, 9))
    assert type(got).__module__.split(".")[0] in (backend, "jaxlib")
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_errors():
    f = rng.standard_normal((3, 9, 5))
    nl = {"image_newline": rng.standard_normal(5)}
    with pytest.raises(FusionSpecError, match="pack_anyres_features.*features.*1 \\+ 2\\*2 crops"):
        ops.pack_anyres_features(f, nl, grid=(2, 2), image_size=(5, 9))
    with pytest.raises(FusionSpecError, match="square p\\*p patch grid"):
        ops.pack_anyres_features(rng.standard_normal((3, 8, 5)), nl, grid=(1, 2), image_size=(5, 9))
    with pytest.raises(FusionSpecError, match="image_size.*positive"):
        ops.pack_anyres_features(f, nl, grid=(1, 2), image_size=(0, 9))
    with pytest.raises(FusionSpecError, match="image_size"):
        ops.pack_anyres_features(f, nl, grid=(1, 2), image_size=5)
    with pytest.raises(FusionSpecError, match="grid"):
        ops.pack_anyres_features(f, nl, grid=(2,), image_size=(5, 9))
    with pytest.raises(FusionSpecError, match="image_newline"):
        ops.pack_anyres_features(f, {}, grid=(1, 2), image_size=(5, 9))
    with pytest.raises(FusionSpecError, match="image_newline.*dtype float64"):
        ops.pack_anyres_features(f, {"image_newline": np.zeros(5, np.float32)}, grid=(1, 2), image_size=(5, 9))
    with pytest.raises(FusionSpecError, match="newline"):
        ops.pack_anyres_features(f, nl, grid=(1, 2), image_size=(5, 9), newline=1)
    with pytest.raises(FusionSpecError, match="rank 3"):
        ops.pack_anyres_features(f[0], nl, grid=(1, 2), image_size=(5, 9))
    with pytest.raises(FusionSpecError, match="patch_size"):
        AnyresPack(tile_size=336, patch_size=337)
    assert AnyresPack.llava_onevision().patches_per_side == 27  # SigLIP 384 px, patch 14: floored, as HF
    with pytest.raises(FusionSpecError, match="grid_pinpoints"):
        AnyresPack(tile_size=336, grid_pinpoints=((100, 672),))
    spec = AnyresPack(embed_dim=5, tile_size=12, patch_size=4, grid_pinpoints=PINS)
    with pytest.raises(FusionSpecError, match="AnyresPack.*features.*crops"):
        spec.output_shape((2, 9, 5), (5, 9))
    with pytest.raises(FusionSpecError, match="image_size"):
        spec.output_shape((3, 9, 5))
    with pytest.raises(FusionSpecError, match="grid_pinpoints"):
        ops.anyres_grid((5, 9), (), 12)


# ------------------------------------------------------------------------------------------------ vs HF

def _tiny_llava_next(pins=PINS):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import LlavaNextConfig
    from transformers.models.llava_next.modeling_llava_next import LlavaNextModel
    cfg = LlavaNextConfig(
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=12, patch_size=4),
        text_config=dict(hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=32),
        image_grid_pinpoints=[list(p) for p in pins])
    torch.manual_seed(0)
    return LlavaNextModel(cfg).double().eval()


@pytest.mark.parametrize("image_size", SIZES + [(1, 50), (50, 1)])
def test_equals_hf_pack_image_features(image_size):
    import torch

    from fusion_spec import interop
    model = _tiny_llava_next()
    spec, params = interop.from_module(model)
    assert (spec.embed_dim, spec.tile_size, spec.patch_size, spec.grid_pinpoints) == (12, 12, 4, PINS)
    gh, gw = spec.grid(image_size)
    features = rng.standard_normal((1 + gh * gw, 9, 12))
    with torch.no_grad():
        packed, lens = model.pack_image_features([torch.from_numpy(features)], torch.tensor([image_size]),
                                                 "default", image_newline=model.image_newline)
    got = spec.apply(params, features, image_size=image_size)
    np.testing.assert_array_equal(got, packed[0].numpy())
    assert int(lens[0]) == got.shape[0]
    assert interop.check(model, features, image_sizes=[image_size]).max_abs == 0.0


def test_equals_hf_without_newline_and_base_only():
    import torch
    model = _tiny_llava_next()
    f = rng.standard_normal((3, 9, 12))
    with torch.no_grad():
        packed, _ = model.pack_image_features([torch.from_numpy(f)], torch.tensor([[5, 9]]), "default",
                                              image_newline=None)
        base, _ = model.pack_image_features([torch.from_numpy(f[:1])], torch.tensor([[5, 9]]), "default",
                                            image_newline=model.image_newline)
    np.testing.assert_array_equal(ops.pack_anyres_features(f, {}, grid=(1, 2), image_size=(5, 9), newline=False),
                                  packed[0].numpy())
    nl = {"image_newline": model.image_newline.detach().numpy()}
    np.testing.assert_array_equal(ops.pack_anyres_features(f[:1], nl, grid=(1, 2), image_size=(5, 9)),
                                  base[0].numpy())


@pytest.mark.parametrize("shape, size", [((4, 6), (5, 20)), ((6, 4), (20, 5)), ((6, 6), (7, 7)), ((3, 9), (3, 100))])
def test_unpadding_equals_hf_unpad_image(shape, size):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.llava_next.modeling_llava_next import unpad_image
    H, W = shape
    grid = rng.standard_normal((2, H, W))  # HF layout [D, H, W]
    want = unpad_image(torch.from_numpy(grid), size).numpy()
    rows, cols = tokens.llava_next_unpadded(*size, H, W)
    assert want.shape[1:] == (rows, cols)
    # our op on a 1x1 "tile grid" whose single tile is the whole H x W map (needs H == W); otherwise compare shapes
    if H == W:
        f = np.concatenate([np.zeros((1, H * W, 2)), grid.transpose(1, 2, 0).reshape(1, H * W, 2)])
        got = ops.pack_anyres_features(f, {}, grid=(1, 1), image_size=size, newline=False)[H * W:]
        np.testing.assert_array_equal(got, want.transpose(1, 2, 0).reshape(-1, 2))


def test_to_state_dict_for_llava_next_models():
    torch = pytest.importorskip("torch")
    from fusion_spec import interop
    model = _tiny_llava_next()
    spec, params = interop.from_module(model)
    state = interop.to_state_dict(spec, params, target="LlavaNextModel")
    assert list(state) == ["image_newline"]
    # The packing owns only image_newline: the load is partial (vision tower, projector, LM come from elsewhere).
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys and "image_newline" not in result.missing_keys
    full = interop.to_state_dict(spec, params, target="LlavaNextForConditionalGeneration")
    assert list(full) == ["model.image_newline"]
    with pytest.raises(FusionSpecError, match="newline=True"):
        interop.to_state_dict(AnyresPack(embed_dim=12, newline=False), {}, target="LlavaNextModel")
    with pytest.raises(FusionSpecError, match="image_sizes"):
        interop.check(model, rng.standard_normal((3, 9, 12)), image_sizes=[[5, 9], [5, 9]])


def test_for_conditional_generation_is_accepted():
    torch = pytest.importorskip("torch")
    from transformers.models.llava_next.modeling_llava_next import LlavaNextForConditionalGeneration

    from fusion_spec import interop
    model = LlavaNextForConditionalGeneration(_tiny_llava_next().config).double().eval()
    spec, params = interop.from_module(model)
    np.testing.assert_array_equal(params["image_newline"], model.model.image_newline.detach().numpy())
    assert interop.check(model, rng.standard_normal((3, 9, 12)), image_sizes=torch.tensor([[5, 9]])).max_abs == 0.0
    state = interop.to_state_dict(spec, params, target="LlavaNextForConditionalGeneration")
    assert set(state) <= set(model.state_dict())
