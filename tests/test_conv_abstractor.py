"""The convolutional abstractor's own properties: conv2d against a loop over the formula, the token
layout (newline column, begin/end), shapes, and the errors a wrong input gets."""

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import ConvAbstractor


def _conv_loop(x, w, b, stride, padding):
    """y[b, i, j, o] = b[o] + sum w[o, c, di, dj] * xpad[b, s*i + di, s*j + dj, c], by loops."""
    n, h, wd, c = x.shape
    o, _, kh, kw = w.shape
    xpad = np.zeros((n, h + 2 * padding, wd + 2 * padding, c))
    xpad[:, padding:padding + h, padding:padding + wd] = x
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, ho, wo, o))
    for i in range(ho):
        for j in range(wo):
            window = xpad[:, stride * i:stride * i + kh, stride * j:stride * j + kw, :]  # [n, kh, kw, c]
            y[:, i, j, :] = np.einsum("nklc,ockl->no", window, w) + (0 if b is None else b)
    return y


@pytest.mark.parametrize("k, s, p, hw", [(3, 2, 1, (7, 5)), (2, 2, 0, (6, 4)), (1, 1, 0, (3, 3)), (3, 1, 2, (4, 6)),
                                          (3, 3, 0, (8, 7))])
def test_conv2d_is_the_formula(k, s, p, hw):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, *hw, 3)), rng.standard_normal((4, 3, k, k)), rng.standard_normal(4)
    np.testing.assert_allclose(ops.conv2d(x, w, b, stride=s, padding=p), _conv_loop(x, w, b, s, p), rtol=1e-13,
                               atol=1e-13)
    np.testing.assert_allclose(ops.conv2d(x, w, stride=s, padding=p), _conv_loop(x, w, None, s, p), rtol=1e-13,
                               atol=1e-13)


def test_token_layout_newline_and_begin_end():
    """HunYuan's tokens: [begin, row 0, newline, row 1, newline, ..., end], each normalised."""
    spec = ConvAbstractor.hunyuan_vl(4, 6, 2, "gelu", 1e-6)
    params = spec.init(0)
    x = np.random.default_rng(1).standard_normal((1, 24, 4))
    out = spec.apply(params, x, grid=(6, 4))
    assert out.shape == (1, 3 * 3 + 2, 6) == spec.output_shape((1, 24, 4), grid=(6, 4))
    norm = lambda v: v / np.sqrt(np.mean(v * v) + 1e-6) * params["after_rms.weight"]  # noqa: E731
    np.testing.assert_allclose(out[0, 0], norm(params["image_begin"]), rtol=1e-13)
    np.testing.assert_allclose(out[0, -1], norm(params["image_end"]), rtol=1e-13)
    newline = norm(params["image_newline"] @ params["mlp.weight"].T + params["mlp.bias"])
    for row in range(3):
        np.testing.assert_allclose(out[0, 1 + 3 * row + 2], newline, rtol=1e-13)
    # image_sep is a parameter the forward never reads
    changed = dict(params, image_sep=params["image_sep"] + 1.0)
    np.testing.assert_array_equal(spec.apply(changed, x, grid=(6, 4)), out)


def test_hy_v4_has_no_linear_and_no_begin_end():
    spec = ConvAbstractor.hy_v4_vl(4, 9, 2, "gelu", 1e-5)
    assert "mlp.weight" not in spec.param_shapes() and "image_begin" not in spec.param_shapes()
    out = spec.apply(spec.init(0), np.random.default_rng(0).standard_normal((2, 20, 4)), grid=(4, 5))
    assert out.shape == (2, 2 * 3, 9)
    np.testing.assert_array_equal(out[:, 2], out[:, 5])  # the newline column, unchanged by anything after it


def test_channels_first_is_the_tokens_grid():
    """GOT-OCR2's [B, C, H, W] map and Step3's [B, H*W, C] tokens run the same convolutions."""
    got = ConvAbstractor("got_ocr2", 4, (6, 8), conv_bias=True, linear_dims=(5,))
    step3 = ConvAbstractor("step3", 4, (6, 8), conv_bias=True, linear_dims=(5,))
    p = got.init(0)
    renamed = {k.replace("conv_upsampler", "vision_model.downsampler").replace("multimodal_projector",
                                                                                "multi_modal_projector"): v
               for k, v in p.items()}
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 5))
    tokens = np.transpose(x, (0, 2, 3, 1)).reshape(2, 30, 4)
    np.testing.assert_array_equal(got.apply(p, x), step3.apply(renamed, tokens, grid=(6, 5)))


@pytest.mark.slow
def test_backends_agree():
    pytest.importorskip("torch")
    import torch
    spec = ConvAbstractor.hunyuan_vl(4, 6, 2, "gelu", 1e-6)
    params = spec.init(0)
    x = np.random.default_rng(0).standard_normal((1, 16, 4))
    want = spec.apply(params, x, grid=(4, 4))
    got = spec.apply({k: torch.from_numpy(v) for k, v in params.items()}, torch.from_numpy(x), grid=(4, 4))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_errors():
    spec = ConvAbstractor.got_ocr2(4, 6)
    with pytest.raises(FusionSpecError, match=r"ConvAbstractor.*'x'.*\[B, 4, H, W\]"):
        spec.apply(spec.init(), np.zeros((1, 3, 8, 8)))
    step3 = ConvAbstractor.step3(4, 6)
    with pytest.raises(FusionSpecError, match=r"ConvAbstractor.*'grid'.*H \* W = 12"):
        step3.apply(step3.init(), np.zeros((1, 12, 4)), grid=(3, 5))
    with pytest.raises(FusionSpecError, match=r"ConvAbstractor.*'conv_channels'.*tuple of 2"):
        ConvAbstractor("got_ocr2", 4, (8,))
    with pytest.raises(FusionSpecError, match=r"ConvAbstractor.*'variant'"):
        ConvAbstractor("got_ocr3")
    with pytest.raises(FusionSpecError, match=r"ConvAbstractor.*'x'.*at least 1x1"):
        ConvAbstractor.hunyuan_vl(4, 6, 2).apply(ConvAbstractor.hunyuan_vl(4, 6, 2).init(), np.zeros((1, 1, 4)),
                                                 grid=(1, 1))
    with pytest.raises(FusionSpecError, match=r"conv2d.*'weight'.*\[out, 3, kh, kw\]"):
        ops.conv2d(np.zeros((1, 4, 4, 3)), np.zeros((2, 2, 3, 3)))
    with pytest.raises(FusionSpecError, match=r"conv2d.*'x'.*at least the kernel"):
        ops.conv2d(np.zeros((1, 2, 2, 3)), np.zeros((2, 3, 3, 3)))
