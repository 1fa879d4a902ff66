"""DeepSeek-OCR 2's and Unlimited-OCR's image features equal the real models' ``get_image_features`` in
float64 (the projector, the tile layout, the newlines and the view separator; the vision tower's outputs
given), built offline from tiny configs; every bundle case runs through them in float32."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import OcrViews

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402

from fusion_spec import interop  # noqa: E402
from hf_cases import check_module, meta_count, through_modules  # noqa: E402

CLASSES = {"DeepseekOcr2Model": "deepseek_ocr2", "DeepseekOcr2ForConditionalGeneration": "deepseek_ocr2",
           "UnlimitedOcrModel": "unlimited_ocr", "UnlimitedOcrForConditionalGeneration": "unlimited_ocr"}


def tiny_config(model_type: str):
    """SAM and encoder of width 8 (Unlimited-OCR's projector reads both: 16), a text width of 6."""
    sam = dict(hidden_size=8, output_channels=8, num_hidden_layers=1, num_attention_heads=2, global_attn_indexes=[0],
               image_size=32, patch_size=16, window_size=2, downsample_channels=[8, 8])
    encoder = dict(vocab_size=10, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                   num_key_value_heads=1)
    text = dict(vocab_size=20, hidden_size=6, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, mlp_layer_types=["dense"])
    return CONFIG_MAPPING[model_type](vision_config=dict(sam_config=sam, encoder_config=encoder), text_config=text)


def ocr_model(name: str, seed: int = 0):
    """The model ``name`` from the tiny config, float64, its projector, separator and newline random."""
    model_type = CLASSES[name]
    module = __import__(f"transformers.models.{model_type}.modeling_{model_type}", fromlist=[name])
    model = getattr(module, name)(tiny_config(model_type)).double().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if {"multi_modal_projector", "view_separator", "image_newline"} & set(key.split(".")):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_image_features_equal_the_model_in_float64(name):
    model = ocr_model(name)
    spec, params = interop.from_module(model)
    unlimited = name.startswith("Unlimited")
    assert spec == OcrViews(16 if unlimited else 8, 6, newline=unlimited)
    rng = np.random.default_rng(1)
    c = spec.vision_dim
    for q_global, tile, grid in ((16, 4, None), (9, 4, (1, 1)), (16, 4, (3, 2)), (16, 9, (2, 3)), (4, 1, (2, 2))):
        x = rng.standard_normal((q_global, c))
        if grid is None:
            report = check_module(model, x, atol=1e-14)
        else:
            report = check_module(model, x, rng.standard_normal((grid[0] * grid[1], tile, c)), atol=1e-14,
                                  patches_grid=grid)
        assert report.shape == spec.output_shape(x.shape, None if grid is None else (grid[0] * grid[1], tile, c),
                                                 patches_grid=grid)
    state = interop.to_state_dict(spec, params, name)
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys


def test_the_layouts_token_by_token():
    """Each token's origin, written out: tiles (tile-major or stitched row by row), global, separator."""
    tiles = np.arange(6 * 4, dtype=np.float64).reshape(6, 4, 1) + 100  # tile t's token k: 100 + 4 t + k
    glob = np.arange(4, dtype=np.float64).reshape(4, 1)
    sep, nl = np.array([-1.0]), np.array([-2.0])
    flat = ops.ocr_views(glob, sep, local_tokens=tiles)[:, 0]
    assert flat.tolist() == list(range(100, 124)) + [0, 1, 2, 3, -1]
    stitched = ops.ocr_views(glob, sep, local_tokens=tiles, newline=nl, grid=(3, 2))[:, 0]
    first_row = [100, 101, 104, 105, 108, 109, -2]  # tiles 0, 1, 2 of the first tile row, their top rows
    assert stitched[:7].tolist() == first_row and stitched[7:14].tolist() == [102, 103, 106, 107, 110, 111, -2]
    assert stitched[14:21].tolist() == [112, 113, 116, 117, 120, 121, -2]
    assert stitched[28:].tolist() == [0, 1, -2, 2, 3, -2, -1]


def test_bundle_cases_pass_through_the_models(tmp_path):
    ids = through_modules("ocr_views", lambda spec: ocr_model("UnlimitedOcrModel" if spec.newline
                                                              else "DeepseekOcr2Model"), tmp_path)
    assert len(ids) == 4


@pytest.mark.parametrize("model_type, name", [("deepseek_ocr2", "DeepseekOcr2Model"),
                                              ("unlimited_ocr", "UnlimitedOcrModel")])
def test_num_params_at_the_published_config(model_type, name):
    module = __import__(f"transformers.models.{model_type}.modeling_{model_type}", fromlist=[name])
    config = CONFIG_MAPPING[model_type]()
    if getattr(config.text_config, "mlp_layer_types", 0) is None:
        config.text_config.mlp_layer_types = ["dense"] * config.text_config.num_hidden_layers

    def fusion_part():
        model = getattr(module, name)(config)
        return torch.nn.ParameterList([p for k, p in model.named_parameters() if k.split(".")[0] in (
            "multi_modal_projector", "view_separator", "image_newline")])

    with torch.device("meta"):
        spec, _ = interop.from_module(getattr(module, name)(config))
    assert spec.num_params() == meta_count(fusion_part) > 0


@pytest.mark.parametrize("call, arg", [
    (lambda: OcrViews(8, 6).apply(OcrViews(8, 6).init(), np.zeros((4, 7))), "x"),
    (lambda: OcrViews(8, 6, newline=True).apply(OcrViews(8, 6, newline=True).init(), np.zeros((5, 8))), "x"),
    (lambda: OcrViews(8, 6).apply(OcrViews(8, 6).init(), np.zeros((4, 8)), np.zeros((2, 4, 7))), "local"),
    (lambda: OcrViews(8, 6, newline=True).apply(OcrViews(8, 6, newline=True).init(), np.zeros((4, 8)),
                                                np.zeros((6, 4, 8)), patches_grid=(2, 2)), "patches_grid"),
    (lambda: OcrViews(8, 6, newline="yes"), "newline"),
    (lambda: ops.ocr_views(np.zeros((4, 3)), np.zeros(2)), "separator"),
    (lambda: ops.ocr_views(np.zeros((4, 3)), np.zeros(3), local_tokens=np.zeros((2, 4, 3)), newline=np.zeros(3)),
     "grid"),
    (lambda: ops.ocr_views(np.zeros((4, 3)), np.zeros(3), local_tokens=np.zeros((2, 3, 3)), newline=np.zeros(3),
                           grid=(2, 1)), "local_tokens"),
])
def test_bad_input_is_named(call, arg):
    with pytest.raises(FusionSpecError, match=arg):
        call()
