"""Coverage of the installed transformers' image-text-to-text models, derived from the registry.

:func:`survey` walks ``MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES``; for each model type it builds the
model from its default config on PyTorch's meta device (no memory, full size), locates its fusion
modules and converts each with the registry (:func:`fusion_spec.interop.registry.recognize`, then the
converter's ``from_module``, which reads a meta module's structure). Nothing here says which model is
covered: a model is covered when every fusion module it holds converts, so a converter registered
later (a new family) counts as soon as it exists.

Located as fusion modules (:func:`locate`): every module a converter recognises by class name or alias
(torch's ``nn.Linear`` only where a fusion attribute holds it), every module held under a fusion
attribute name (:data:`FUSION_ATTRIBUTES`: ``multi_modal_projector``, ``merger``, ``connector``,
``aligner``, ...), every cross-attention decoder layer, and the inner model itself when it holds
parameters of its own (``image_newline``, ``query_tokens``) or a converter recognises it (LLaVA-NeXT's
packing, Qwen3-VL's DeepStack). The sequence side is derived too: the token counts and layouts are
covered where a preset describes the model type or one with the same processor class, the positions
where the model has none of its own (1-D) or its ``get_rope_index`` is token for token one that
:func:`fusion_spec.ops.mrope_position_ids` equals (``tests/test_mrope.py``).

The hand-written parts are four tables: the mechanism an uncovered class lacks (:data:`MECHANISMS`), the
model types out of scope (:data:`OUT_OF_SCOPE`), the converted classes that are fusion modules only under a
fusion attribute (:data:`BY_ATTRIBUTE_ONLY`) and the settings a default config lacks to build at all
(:data:`DEFAULT_CONFIG_GAPS`). A converter of a whole model
covers the modules whose weights it reads (Ovis's table, Muse's adapter, BLIP-2's Q-Former).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import io
import logging
import tokenize
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from .. import presets
from ..errors import FusionSpecError
from . import families  # noqa: F401 -- every converter registered
from .registry import CONVERTERS, converter_for, recognize
from .vq_tokens import example_vocabulary

#: Attribute names under which models hold their fusion modules (the last part of the module's path).
FUSION_ATTRIBUTES = frozenset({
    "multi_modal_projector", "mm_projector", "projector", "connector", "aligner", "generation_aligner", "merger",
    "merger_list", "deepstack_merger_list", "vision_projection", "vision_embed_tokens", "vision_adapter", "qformer",
    "language_projection", "vision_resampler", "perceiver_resampler", "resampler", "embed_vision", "patch_merger",
    "layerwise_projectors", "spatial_projectors", "visual_tokenizer", "vte", "embed_vision",
    "adapter", "vision_aligner", "vision_proj", "visual_projection", "image_projection", "mlp1", "abstractor",
    "perceiver", "query_tokens", "image_newline", "view_separator",
    "crossattention", "encoder_decoder_attention",  # a decoder's cross-attention to the image (BLIP, Pix2Struct)
})

#: Converted classes that a model also uses for something else, so they are fusion modules only under a
#: fusion attribute: BERT's and BLIP's attention is the decoder's self-attention too (``crossattention`` is
#: the fusion one).
BY_ATTRIBUTE_ONLY = frozenset({"BertAttention", "BlipTextAttention"})

#: The mechanism each uncovered fusion class lacks (a class whose converter exists is covered whatever this
#: table says; issue 26 gave most of its former entries their specs).
MECHANISMS: dict[str, str] = {
    "GraniteDoclingDensityRouter": "density router (Granite-Docling)",
    "IdeficsPerceiverResampler": "ReLU perceiver resampler (IDEFICS 1)",
    "UdopPatchEmbeddings": "layout-aligned patch / text fusion (UDOP)",
    "EvollaSequenceAlignerCrossAttention": "protein-sequence cross-attention (Evolla)",
    "VisionEncoderDecoderModel": "encoder-decoder cross-attention (decoder-defined)",
}

#: Model types with no image fusion piece to specify, and why.
OUT_OF_SCOPE: dict[str, str] = {
    "mistral4": "text-only (Mistral4ForCausalLM has no vision module)",
    "evolla": "protein sequences, not images",
}

#: Settings that a model type's default config leaves unset although its model does not build without them,
#: and the smallest value that builds: the tokenizer's vocabulary map (a 16-entry codebook's tokens), the
#: kind of each decoder layer's MLP (dense, as DeepSeek's first layers are).
DEFAULT_CONFIG_GAPS: dict[str, Callable[[Any], None]] = {
    "chameleon": lambda c: setattr(c, "vocabulary_map", example_vocabulary("chameleon", tuple(range(100, 116)))),
    "emu3": lambda c: setattr(c, "vocabulary_map", example_vocabulary("emu3", tuple(range(100, 116)))),
    "deepseek_ocr2": lambda c: setattr(c.text_config, "mlp_layer_types",
                                       c.text_config.mlp_layer_types or ["dense"] * c.text_config.num_hidden_layers),
}

#: The ``get_rope_index`` implementations :func:`fusion_spec.ops.mrope_position_ids` equals
#: (``tests/test_mrope.py``): a model whose own is token for token one of these has its positions covered.
MROPE_REFERENCES = {"qwen2_vl": "Qwen2VLModel", "qwen2_5_vl": "Qwen2_5_VLModel", "qwen3_vl": "Qwen3VLModel"}


@dataclasses.dataclass(frozen=True)
class Piece:
    """One located fusion module: its path in the model, its class, and whether it converts."""

    path: str
    cls: str
    covered: bool
    spec: str = ""  # the spec class it converts to
    reason: str = ""  # why not (the missing mechanism, or the converter's refusal)


@dataclasses.dataclass(frozen=True)
class ModelCoverage:
    """One model type of the mapping: its fusion pieces and sequence side, derived."""

    model_type: str
    model_class: str
    #: "covered", "not covered", "refused" (every class converts, but the default config builds a module the
    #: converter refuses: an inconsistent default), "no fusion" or "not built"
    status: str
    pieces: tuple[Piece, ...]
    missing: tuple[str, ...]  # the mechanisms the uncovered pieces lack
    tokens: str  # "preset <name>", "as preset <name> (same processor)" or "not covered"
    positions: str  # "1-D", "M-RoPE = <reference>" or "not covered: ..."
    built: str  # how the modules were built: "model (meta device)", "modules alone (...)", or the error
    note: str = ""

    @property
    def sequence_covered(self) -> bool:
        return not self.tokens.startswith("not") and not self.positions.startswith("not")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"sequence_covered": self.sequence_covered}


# --- building and locating ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings or transformers log lines while models are built."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def modeling_module(model_type: str) -> Any:
    """transformers' ``modeling_<name>`` module of ``model_type``."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name
    name = model_type_to_module_name(model_type)
    return importlib.import_module(f"transformers.models.{name}.modeling_{name}")


def _model_class(model_type: str, name: str) -> Any:
    import transformers
    cls = getattr(transformers, name, None)
    return cls if cls is not None else getattr(modeling_module(model_type), name)


def build(model_type: str, class_name: str) -> tuple[Any, str]:
    """``(model on the meta device, how)`` from the model type's default config (with the default vision
    config where it leaves that part out, and :data:`DEFAULT_CONFIG_GAPS` filled); where the whole model does
    not build, the registered classes of its modeling file built alone from that config (``how`` says
    so, with the error); ``(None, error)`` when neither builds."""
    import torch
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    with _quiet():
        try:
            config = CONFIG_MAPPING[model_type]()
            if getattr(config, "vision_config", 0) is None and "vision_config" in getattr(config, "sub_configs", {}):
                config.vision_config = config.sub_configs["vision_config"]()  # an optional vision part: its default
            if model_type in DEFAULT_CONFIG_GAPS:
                DEFAULT_CONFIG_GAPS[model_type](config)
        except Exception as exc:  # noqa: BLE001 -- any failure of a third party's constructor is reported
            return None, f"default config fails: {type(exc).__name__}: {_line(exc)}"
        try:
            with torch.device("meta"):
                return _model_class(model_type, class_name)(config), "model (meta device)"
        except Exception as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}: {_line(exc)}"
        alone = _registered_classes_alone(model_type, config)
        if alone is not None:
            return alone, f"its registered classes alone (the model does not build: {error})"
        return None, f"does not build from its default config: {error}"


def _registered_classes_alone(model_type: str, config: Any) -> Any:
    """A container of the modeling file's classes that a converter names (class or alias), each built on
    the meta device from the config or a sub-config, or from the vision and the text config (the first that
    works); ``None`` if none builds."""
    import torch
    try:
        module = modeling_module(model_type)
    except Exception:  # noqa: BLE001
        return None
    built = torch.nn.ModuleDict()
    configs = [config] + [getattr(config, n) for n in ("vision_config", "text_config", "thinker_config", "encoder")
                          if getattr(config, n, None) is not None]
    arguments = [(cfg,) for cfg in configs]
    if getattr(config, "vision_config", None) is not None and getattr(config, "text_config", None) is not None:
        arguments.append((config.vision_config, config.text_config))  # Gemma's multimodal embedders
    for name, cls in sorted(vars(module).items()):
        conv = CONVERTERS.get(name)
        if conv is None or not isinstance(cls, type) or cls.__module__ != module.__name__:
            continue
        for args in arguments:
            try:
                with torch.device("meta"):
                    built[name] = cls(*args)
                break
            except Exception:  # noqa: BLE001 -- the next config
                continue
    return built if len(built) else None


def _inner(model: Any) -> Any:
    """The model that holds the towers (``model.model`` of a ``...ForConditionalGeneration``)."""
    inner = getattr(model, "model", None)
    return inner if hasattr(inner, "named_parameters") else model


def locate(model: Any) -> list[tuple[str, Any]]:
    """``(path, module)`` of every fusion module of ``model`` (see the module docstring), outermost first;
    nothing inside a located module is located again. The inner model itself is ``("model", ...)`` when
    it has parameters of its own or a converter recognises it."""
    found: list[tuple[str, Any]] = []
    inner = _inner(model)
    read: set[str] = set()  # the weights a converter of the whole model reads (full names)
    for path, whole in (("", model), ("model", inner)) if inner is not model else (("", model),):
        own = any(n in FUSION_ATTRIBUTES for n, _ in whole.named_parameters(recurse=False))
        conv = recognize(whole)
        if conv is not None and conv.children is None and not any(recognize(m) is not None for _, m in found):
            found.append((path, whole))  # a converter of the whole model (Blip2ForConditionalGeneration, ...)
            read |= {f"{path}.{k}" if path else k for k in _weights_read(conv, whole)}
        elif own and whole is inner and not found:
            found.append((path, whole))  # fusion parameters of its own (image_newline, ...) that nothing converts
    taken: list[str] = []
    for path, module in model.named_modules():
        if not path or any(path == t or path.startswith(t + ".") for t in taken) \
                or any(part.startswith("audio") for part in path.split(".")):  # audio is not image fusion
            continue
        weights = [f"{path}.{k}" for k in module.state_dict()]
        if weights and set(weights) <= read:  # the whole model's converter covers it (Ovis's table, Muse's adapter)
            taken.append(path)
            continue
        attribute = path.rsplit(".", 1)[-1]
        parent = path.rsplit(".", 2)[-2] if path.count(".") >= 1 else ""
        conv = recognize(module)
        fusion_name = attribute in FUSION_ATTRIBUTES or (attribute.isdigit() and parent in FUSION_ATTRIBUTES)
        by_class = conv is not None and conv.source != "torch" and (conv.children is not None or path != "model") \
            and type(module).__name__ not in BY_ATTRIBUTE_ONLY
        cross = "CrossAttention" in type(module).__name__ and type(module).__name__.endswith(("Layer", "Block")) \
            and attribute.isdigit()
        if type(module).__name__ in ("ModuleList", "ModuleDict", "Sequential") and attribute in FUSION_ATTRIBUTES:
            continue  # its items are located one by one
        if fusion_name or by_class or cross or type(module).__name__ in MECHANISMS:
            found.append((path, module))
            taken.append(path)
    return found


def _weights_read(conv: Any, module: Any) -> set[str]:
    """The state_dict keys of ``module`` that ``conv`` reads (none when it does not convert)."""
    try:
        spec, params = conv.from_module(module)
        return set(conv.to_state_dict(spec, params))
    except Exception:  # noqa: BLE001 -- the whole model is then judged as a piece by convert()
        return set()


def convert(path: str, module: Any) -> Piece:
    """Whether ``module`` converts (its spec's class), or why not."""
    name = type(module).__name__
    try:
        conv = converter_for(module)
        spec, _ = conv.from_module(module)
    except FusionSpecError as exc:
        return Piece(path, name, False, reason=MECHANISMS.get(name, str(exc)))
    except Exception as exc:  # noqa: BLE001 -- a module that cannot be read on the meta device
        return Piece(path, name, False, reason=f"{type(exc).__name__}: {_line(exc)}")
    return Piece(path, name, True, spec=type(spec).__name__)


# --- the sequence side ---------------------------------------------------------------------------------------

def _tokens(model_type: str) -> str:
    """How the model's token counts and layout are covered: a preset of the model type, or of one with the
    same processor class."""
    by_type: dict[str, str] = {}
    for n in presets.names():  # the first preset of a model type names it
        if presets.get(n).hf_model_type:
            by_type.setdefault(presets.get(n).hf_model_type, n)
    if model_type in by_type:
        return f"preset {by_type[model_type]}"
    try:
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is there whenever a survey runs
        return "not covered"
    processor = PROCESSOR_MAPPING_NAMES.get(model_type)
    for other, name in sorted(by_type.items()):
        if processor and PROCESSOR_MAPPING_NAMES.get(other) == processor:
            return f"as preset {name} (same processor {processor})"
    return "not covered"


def _code_tokens(fn: Any) -> list[str] | None:
    """The source of ``fn`` as tokens without comments, docstrings or layout (``None`` if unreadable)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            continue
        if tok.type == tokenize.STRING and tok.string.lstrip("rbuRBU").startswith(('"""', "'''")):
            continue
        out.append(tok.string)
    return out


def _positions(model_type: str, class_name: str) -> str:
    """``"1-D"`` (neither the model class nor its inner model class has a ``get_rope_index``),
    ``"M-RoPE = <reference>"`` or ``"not covered: ..."``."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES
    classes = []
    for name in (class_name, MODEL_MAPPING_NAMES.get(model_type)):
        try:
            classes.append(_model_class(model_type, name)) if name else None
        except (ImportError, AttributeError):
            continue
    owner = next((c for c in classes if hasattr(c, "get_rope_index")), None)
    if owner is None:
        return "1-D"
    own = _code_tokens(owner.get_rope_index)
    for model_type, name in MROPE_REFERENCES.items():
        try:
            reference = getattr(modeling_module(model_type), name).get_rope_index
        except (ImportError, AttributeError):
            continue
        if own is not None and own == _code_tokens(reference):
            return f"M-RoPE = {name}.get_rope_index"
    return f"not covered: its own {owner.__name__}.get_rope_index"


# --- the survey ---------------------------------------------------------------------------------------------

def survey(model_types: list[str] | None = None,
           progress: Callable[[str], None] = lambda model_type: None) -> list[ModelCoverage]:
    """:class:`ModelCoverage` of every model type of the installed transformers' image-text-to-text mapping
    (or of ``model_types``), in the mapping's order."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as MAPPING
    unknown = sorted(set(model_types or ()) - set(MAPPING))
    if unknown:
        raise FusionSpecError("zoo.survey", "model_types", "model types of the image-text-to-text mapping",
                              unknown)
    out = []
    for model_type, class_name in MAPPING.items():
        if model_types and model_type not in model_types:
            continue
        progress(model_type)
        out.append(model_coverage(model_type, class_name))
    return out


def model_coverage(model_type: str, class_name: str) -> ModelCoverage:
    """One model type's coverage (see the module docstring)."""
    with _quiet():
        positions = _positions(model_type, class_name)
    tokens = _tokens(model_type)
    if model_type in OUT_OF_SCOPE:
        return ModelCoverage(model_type, class_name, "no fusion", (), (), tokens, positions, "",
                             OUT_OF_SCOPE[model_type])
    model, built = build(model_type, class_name)
    if model is None:  # the classes of its modeling file whose mechanism is known to be missing, if any
        pieces = _known_missing(model_type)
        return ModelCoverage(model_type, class_name, "not covered" if pieces else "not built", pieces,
                             tuple(dict.fromkeys(p.reason for p in pieces)) or (built,),
                             tokens, positions, built)
    with _quiet():
        pieces = tuple(convert(path, module) for path, module in locate(model))
    if not pieces:  # none in the default config (a model whose vision part is optional): those its file defines
        pieces = _known_missing(model_type)
        built += ": no fusion module in it" if pieces else ""
    refused = [p for p in pieces if not p.covered and p.reason.startswith("interop.from_module")
               and recognize_name(p.cls)]
    missing = tuple(dict.fromkeys(p.reason if p.cls in MECHANISMS else f"{p.cls}: {p.reason}"
                                  for p in pieces if not p.covered))
    if not pieces:
        status, missing = "not covered", ("no fusion module located",)
    elif all(p.covered for p in pieces):
        status = "covered"
    elif all(p.covered or p in refused for p in pieces):
        status = "refused"  # every class is converted, but the default config builds one the converter refuses
    else:
        status = "not covered"
    return ModelCoverage(model_type, class_name, status, pieces, missing, tokens, positions, built)


def _known_missing(model_type: str) -> tuple[Piece, ...]:
    """The classes of the model type's modeling file that :data:`MECHANISMS` names and no converter does, as
    uncovered pieces."""
    return tuple(Piece("", n, False, reason=MECHANISMS[n]) for n in sorted(vars(_modeling_or_empty(model_type)))
                 if n in MECHANISMS and n not in CONVERTERS)


def recognize_name(cls: str) -> bool:
    """Whether a converter names ``cls`` (its class or an alias)."""
    return cls in CONVERTERS


def _modeling_or_empty(model_type: str) -> Any:
    try:
        return modeling_module(model_type)
    except Exception:  # noqa: BLE001 -- a modeling file that does not import has no classes to name
        return object()


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else ""
