"""``fusion-spec bench``: time each fusion operator through a backend adapter against the real model's module.

For each case (the real models' shapes, or scaled-down ones with ``--small``) it prints the median
time of our native module (``fusion_spec.backends.<backend>``, fast paths on unless
``--no-fast-paths``), the peer's median time where the peer is installed (HF transformers or
open_flamingo, same device and dtype, in the same run), the speed ratio (peer time / our time, > 1
means we are faster), achieved TFLOP/s (FLOPs counted by ``torch.utils.flop_counter`` on the peer,
else on our module) and its share of the measured matrix-product peak (one large matmul in the same
dtype, measured first).

Cases: ``projector`` (HF ``LlavaMultiModalProjector``, 16x576x1024 -> 4096), ``attention`` (the
primitive at the gated block's cross-attention shape; the peer is our reference path with fast paths
off), ``gated_xattn`` (open_flamingo ``GatedCrossAttentionBlock``, 8x2048x4096 text, 5 images x 64
latents x 1024), ``perceiver`` (open_flamingo ``PerceiverResampler``, 8x5x257x1024, depth 6),
``qformer`` (HF ``Blip2QFormerModel``, 64x257x1408 -> 32x768), ``idefics2`` (HF
``Idefics2PerceiverResampler``, 16x576x4096 -> 64), ``qwen2_vl_merger`` (HF Qwen2-VL ``PatchMerger``,
1280 -> 3584, 2x2 merge, 16x1024 patches). The last five take the spec and parameters from
``fusion_spec.interop.from_module(peer)`` and call our module with the peer's own arguments; a case whose spec, converter or peer is missing is reported as skipped, with why.

Every time is the median of ``--repeat`` calls, shown with the spread of those calls (max / min); a
spread above :data:`UNSTABLE_SPREAD` flags the figure ``UNSTABLE`` (in the table, the JSON and a note
on stderr): other work on the machine changed the timings while they were taken, and the median may
be off by as much. The BLAS libraries loaded in the process (threadpoolctl: which library, version,
kernel architecture, threads) are printed first and stored with every case in the JSON.

``--backend numpy`` times the NumPy reference itself (``spec.apply`` on float32 arrays) against the
same peers; ``--batch N`` sets every case's batch. ``python benchmarks/bench_backends.py`` runs the
same code; ``benchmarks/numpy_vs_torch.py`` runs the NumPy comparison interleaved.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import time
import traceback
from typing import Any, Callable

from .. import validate
from . import common
from .common import Parser, float_in, int_at_least, json_argument, write_json

CASES = ("projector", "attention", "gated_xattn", "perceiver", "qformer", "idefics2", "qwen2_vl_merger")

#: A timing whose slowest call took more than this many times its fastest is flagged ``UNSTABLE``: on a
#: quiet machine repeated calls of these cases stay within a few tens of percent of each other.
UNSTABLE_SPREAD = 2.0


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call over the repeats: the median (the figure reported), the fastest and slowest."""

    median: float
    min: float
    max: float
    repeats: int

    @property
    def spread(self) -> float:
        """max / min over the repeats (1 = every call took the same time)."""
        return self.max / self.min if self.min > 0 else float("inf")

    @property
    def unstable(self) -> bool:
        return self.spread > UNSTABLE_SPREAD

    def as_json(self, prefix: str) -> dict[str, Any]:
        """``{prefix}_ms`` (the median), ``{prefix}_min_ms``, ``{prefix}_max_ms``, ``{prefix}_repeats``,
        ``{prefix}_spread``, ``{prefix}_unstable``."""
        return {f"{prefix}_ms": 1e3 * self.median, f"{prefix}_min_ms": 1e3 * self.min,
                f"{prefix}_max_ms": 1e3 * self.max, f"{prefix}_repeats": self.repeats,
                f"{prefix}_spread": self.spread, f"{prefix}_unstable": self.unstable}


def blas_info() -> str:
    """The BLAS and OpenMP libraries loaded in this process, as threadpoolctl reports them: library,
    version, kernel architecture, threads (and where it was loaded from)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 'BLAS unknown: threadpoolctl is not installed (pip install "fusion-spec[bench]")'
    libs = threadpool_info()
    if not libs:
        return "no BLAS or OpenMP library loaded that threadpoolctl knows"
    return "; ".join(" ".join(str(v) for v in (i["internal_api"], i.get("version"), i.get("architecture")) if v)
                     + f", {i['num_threads']} threads ({i['prefix']})" for i in libs)


@dataclasses.dataclass
class Built:
    """One case ready to run: zero-argument closures for our module and the peer's."""

    shape: str
    ours: Callable[[], Any]
    peer: Callable[[], Any] | None = None
    peer_name: str = ""
    flop_fn: Callable[[], Any] | None = None  # a torch forward to count FLOPs on
    flops: int | None = None  # or the count itself
    note: str = ""


class Skip(Exception):
    """A case that cannot run here; the message says why."""


# --- backends ------------------------------------------------------------------------------------

class Runner:
    """Converts arrays, builds our modules and synchronises for one backend, device and dtype."""

    def __init__(self, args: argparse.Namespace) -> None:
        import numpy as np

        self.np = np
        self.args = args
        self.backend = args.backend
        self.device = args.device
        self.dtype = args.dtype
        from .. import backends
        self.mod = None if self.backend == "numpy" else backends.load(self.backend)
        if args.no_fast_paths and self.mod is not None:
            self.mod.fast_paths(False)
        self.torch = None
        if importlib.util.find_spec("torch") is not None:
            import torch
            self.torch = torch
            torch.manual_seed(0)
        if self.device == "cuda" and (self.torch is None or not self.torch.cuda.is_available()):
            raise Skip("--device cuda needs PyTorch with CUDA")

    # arrays
    def torch_dtype(self):
        return getattr(self.torch, self.dtype)

    def to_torch(self, a):
        t = self.torch.from_numpy(self.np.require(a, requirements="C"))
        return t.to(self.device, self.torch_dtype() if t.is_floating_point() else t.dtype)

    def to_ours(self, a):
        if self.backend == "numpy":
            return a.astype(self.dtype) if a.dtype.kind == "f" else a
        if self.backend == "torch":
            return self.to_torch(a)
        if self.backend == "jax":
            import jax
            import jax.numpy as jnp
            dev = jax.devices("gpu" if self.device == "cuda" else "cpu")[0]
            dt = getattr(jnp, self.dtype) if a.dtype.kind == "f" else a.dtype
            return jax.device_put(jnp.asarray(a, dtype=dt), dev)
        import mlx.core as mx
        return mx.array(a) if a.dtype.kind != "f" else mx.array(a.astype("float32")).astype(getattr(mx, self.dtype))

    def module(self, spec, params) -> Callable[..., Any]:
        """Our native module for (spec, params) as a function of the inputs."""
        if self.backend == "numpy":
            p = {k: self.to_ours(v) for k, v in params.items()}
            return lambda *a, **k: spec.apply(p, *a, **k)
        if self.backend == "torch":
            m = self.mod.SpecModule(spec, params, dtype=self.torch_dtype(), device=self.device).eval()
            if self.args.compile != "none":
                mode = None if self.args.compile == "default" else self.args.compile
                m = self.torch.compile(m, fullgraph=True, mode=mode)
            return m
        if self.backend == "jax":
            import jax
            p = {k: self.to_ours(v) for k, v in params.items()}
            fn = jax.jit(self.mod.make_apply(spec))
            return lambda *a, **k: fn(p, *a, **k)
        m = self.mod.SpecModule(spec, params, dtype=self.dtype)
        return m

    def sync(self, out: Any) -> None:
        if self.backend == "jax" and out is not None:
            import jax
            jax.block_until_ready(out)
        elif self.backend == "mlx" and out is not None:
            import mlx.core as mx
            mx.eval(out)
        if self.torch is not None and self.device == "cuda":
            self.torch.cuda.synchronize()

    def cuda_graph(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` captured once in a CUDA graph (its inputs are static tensors inside the closure)."""
        torch = self.torch
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
        return lambda: (graph.replay(), out)[1]

    def time(self, fn: Callable[[], Any]) -> Timing:
        """Seconds per call: median, min and max over ``--repeat`` calls (fewer past ``--max-seconds``,
        at least 3) after ``--warmup`` untimed ones."""
        for _ in range(self.args.warmup):
            self.sync(fn())
        times = []
        deadline = time.perf_counter() + self.args.max_seconds
        for _ in range(self.args.repeat):
            start = time.perf_counter()
            self.sync(fn())
            times.append(time.perf_counter() - start)
            if time.perf_counter() > deadline and len(times) >= 3:
                break
        return Timing(statistics.median(times), min(times), max(times), len(times))

    def peak_tflops(self) -> tuple[float, str, Timing]:
        """A large matmul's TFLOP/s in the benchmark dtype on this backend/device (from its median time),
        what was multiplied, and the timing."""
        n = 1024 if self.args.small or self.device == "cpu" else 8192
        rng = self.np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n)).astype("float32") for _ in range(2))
        if self.backend == "torch":
            ta, tb = self.to_torch(a), self.to_torch(b)
            fn = lambda: ta @ tb  # noqa: E731
        elif self.backend == "jax":
            import jax
            ja, jb = self.to_ours(a), self.to_ours(b)
            mm = jax.jit(lambda x, y: x @ y)
            fn = lambda: mm(ja, jb)  # noqa: E731
        else:
            ma, mb = self.to_ours(a), self.to_ours(b)
            fn = lambda: ma @ mb  # noqa: E731
        timing = self.time(fn)
        return 2 * n ** 3 / timing.median / 1e12, f"{n}x{n}x{n} {self.dtype} matmul", timing


def count_flops(runner: Runner, fn: Callable[[], Any] | None) -> int | None:
    if fn is None or runner.torch is None:
        return None
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, runner.torch.no_grad():
        fn()
    return counter.get_total_flops() or None


# --- cases ---------------------------------------------------------------------------------------

def _rand(runner: Runner, *shape: int, seed: int = 0):
    validate.elements("fusion-spec bench", "shape", shape)  # --batch, --text-len: bounded before allocating
    return runner.np.random.default_rng(seed).standard_normal(shape).astype("float32")


def case_projector(r: Runner) -> Built:
    from ..specs import MLPProjection
    b, n, dv, dl = (2, 16, 64, 128) if r.args.small else (16, 576, 1024, 4096)
    b = r.args.batch or b
    spec = MLPProjection(vision_dim=dv, llm_dim=dl, num_visual_tokens=n)
    params = spec.init(0)
    x = _rand(r, b, n, dv)
    ours, xo = r.module(spec, params), r.to_ours(x)
    built = Built(f"{b}x{n}x{dv} -> {dl}", lambda: ours(xo))
    peer = _hf_llava_projector(r, dv, dl, params)
    if peer is not None:
        xt = r.to_torch(x)
        built.peer, built.peer_name = (lambda: peer(xt)), "HF LlavaMultiModalProjector"
        built.flop_fn = built.peer
    elif r.backend == "torch":
        built.flop_fn = built.ours
    return built


def _hf_llava_projector(r: Runner, dv: int, dl: int, params: dict) -> Any:
    if r.torch is None or importlib.util.find_spec("transformers") is None or r.args.no_peers:
        return None
    from transformers import LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
    cfg = LlavaConfig(vision_config={"model_type": "clip_vision_model", "hidden_size": dv, "num_attention_heads": 1},
                      text_config={"model_type": "llama", "hidden_size": dl, "num_attention_heads": 1})
    peer = LlavaMultiModalProjector(cfg)
    peer.load_state_dict({k: r.torch.from_numpy(v) for k, v in params.items()}, strict=True)
    return _peer_ready(r, peer)


def _peer_ready(r: Runner, peer: Any) -> Any:
    peer = peer.to(r.device, r.torch_dtype()).eval()
    if r.args.peer_compile != "none":
        mode = None if r.args.peer_compile == "default" else r.args.peer_compile
        peer = r.torch.compile(peer, mode=mode)
    return peer


def case_attention(r: Runner) -> Built:
    """The attention primitive at the Flamingo gated block's shape: 8 heads x 64, text 2048 vs 5x64 media,
    with an immediate-media mask (text before the first image fully masked)."""
    from .. import ops
    if r.mod is None:
        raise Skip("the NumPy reference has no fast paths to compare with")
    b, h, lq, lk, d = (2, 4, 64, 40, 32) if r.args.small else (8, 8, 2048, 320, 64)
    b = r.args.batch or b
    np = r.np
    q, k, v = _rand(r, b, h, lq, d, seed=1), _rand(r, b, h, lk, d, seed=2), _rand(r, b, h, lk, d, seed=3)
    media_of_text = np.minimum(np.arange(lq) // max(1, lq // 6) - 1, 4)  # -1: text before any image
    media_of_key = np.arange(lk) // (lk // 5)
    mask = (media_of_text[:, None] == media_of_key[None, :])[None, None]
    args = [r.to_ours(a) for a in (q, k, v)]
    m = r.to_ours(mask)
    call = lambda q, k, v, m: ops.attention(q, k, v, mask=m)  # noqa: E731
    if r.backend == "jax":
        import jax
        call = jax.jit(call)
    elif r.backend == "torch" and r.args.compile != "none":
        call = r.torch.compile(call, fullgraph=True, mode=None if r.args.compile == "default" else r.args.compile)
    built = Built(f"q {b}x{h}x{lq}x{d}, kv {lk}, masked", lambda: call(*args, m))

    def reference():
        with r.mod.fast_paths(False):
            return ops.attention(*args, mask=m)

    if r.backend == "jax":  # jit the reference too, traced while the fast path is off
        import jax
        ref_jit = jax.jit(lambda q, k, v, m: ops.attention(q, k, v, mask=m))
        with r.mod.fast_paths(False):
            r.sync(ref_jit(*args, m))
        reference = lambda: ref_jit(*args, m)  # noqa: E731

    built.peer, built.peer_name = reference, "our reference (fast paths off)"
    built.flops = 4 * b * h * lq * lk * d  # q @ k.T and p @ v
    return built


def _open_flamingo_helpers() -> Any:
    try:
        return common.open_flamingo_helpers()
    except common.UsageError as exc:
        raise Skip(str(exc)) from None


def _from_peer(r: Runner, peer: Any, args: tuple, kwargs: dict, shape: str, name: str,
               unwrap: Callable[[Any], Any] = lambda o: o, ours: tuple[tuple, dict] | None = None) -> Built:
    """Our module built from ``interop.from_module(peer)``, called with the peer's own arguments
    (or with ``ours = (args, kwargs)`` where the spec orders them differently)."""
    from .. import interop
    try:
        spec, params = interop.from_module(peer)
    except Exception as exc:  # noqa: BLE001 -- the family's converter may not exist yet
        raise Skip(f"interop.from_module({type(peer).__name__}): {exc}") from exc
    module = r.module(spec, params)
    oargs, okw = ours or (args, kwargs)
    oargs = tuple(r.to_ours(a) for a in oargs)
    okw = {k: r.to_ours(v) if hasattr(v, "dtype") else v for k, v in okw.items()}
    built = Built(shape, lambda: module(*oargs, **okw))
    if r.torch is not None and not r.args.no_peers:
        tp = _peer_ready(r, peer)
        targs = tuple(r.to_torch(a) for a in args)
        tkw = {k: r.to_torch(v) if hasattr(v, "dtype") else v for k, v in kwargs.items()}
        built.peer, built.peer_name = (lambda: unwrap(tp(*targs, **tkw))), name
        built.flop_fn = built.peer
    return built


def case_gated_xattn(r: Runner) -> Built:
    helpers = _open_flamingo_helpers()
    b, t, dim, n_img, lat, dv = (2, 64, 128, 2, 8, 64) if r.args.small else (8, 2048, 4096, 5, 64, 1024)
    b, t = r.args.batch or b, r.args.text_len or t
    peer = helpers.GatedCrossAttentionBlock(dim=dim, dim_visual=dv, dim_head=64 if not r.args.small else 16,
                                            heads=8 if not r.args.small else 4, ff_mult=4)
    np = r.np
    media_locations = np.zeros((b, t), bool)
    media_locations[:, np.linspace(t // 10, t - t // 10, n_img).astype(int)] = True
    x, media = _rand(r, b, t, dim, seed=1), _rand(r, b, n_img, lat, dv, seed=2)
    return _from_peer(r, peer, (x, media), {"media_locations": media_locations},
                      f"text {b}x{t}x{dim}, media {n_img}x{lat}x{dv}", "open_flamingo GatedCrossAttentionBlock")


def case_perceiver(r: Runner) -> Built:
    helpers = _open_flamingo_helpers()
    b, t, v, dim, depth = (2, 2, 17, 64, 2) if r.args.small else (8, 5, 257, 1024, 6)
    b = r.args.batch or b
    peer = helpers.PerceiverResampler(dim=dim, depth=depth, dim_head=64 if not r.args.small else 16,
                                      heads=8 if not r.args.small else 4, num_latents=64 if not r.args.small else 8)
    x = _rand(r, b, t, 1, v, dim, seed=1)  # [b, T, F, v, D]
    return _from_peer(r, peer, (x,), {}, f"{b}x{t}x{v}x{dim}, depth {depth}", "open_flamingo PerceiverResampler")


def case_qformer(r: Runner) -> Built:
    if r.torch is None or importlib.util.find_spec("transformers") is None:
        raise Skip("needs transformers (the peer defines the spec through interop.from_module)")
    from transformers import Blip2QFormerConfig
    from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel
    b, s, enc, q, hid, layers, heads, inter = (2, 17, 48, 8, 64, 2, 4, 128) if r.args.small else \
        (64, 257, 1408, 32, 768, 12, 12, 3072)
    b = r.args.batch or b
    cfg = Blip2QFormerConfig(hidden_size=hid, num_hidden_layers=layers, num_attention_heads=heads,
                             intermediate_size=inter, encoder_hidden_size=enc)
    cfg._attn_implementation = "sdpa"
    peer = Blip2QFormerModel(cfg)
    kw = {"query_embeds": _rand(r, b, q, hid, seed=1), "encoder_hidden_states": _rand(r, b, s, enc, seed=2)}
    return _from_peer(r, peer, (), kw, f"{b}x{s}x{enc} -> {q}x{hid}", "HF Blip2QFormerModel",
                      unwrap=lambda o: o[0], ours=((kw["encoder_hidden_states"],), {"query_embeds": kw["query_embeds"]}))


def case_idefics2(r: Runner) -> Built:
    if r.torch is None or importlib.util.find_spec("transformers") is None:
        raise Skip("needs transformers (the peer defines the spec through interop.from_module)")
    from transformers.models.idefics2.configuration_idefics2 import Idefics2PerceiverConfig
    from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverResampler
    b, n, hid, lat, depth, heads, hd, kv = (2, 24, 64, 8, 2, 4, 16, 2) if r.args.small else \
        (16, 576, 4096, 64, 3, 16, 96, 4)
    b = r.args.batch or b
    cfg = Idefics2PerceiverConfig(hidden_size=hid, resampler_n_latents=lat, resampler_depth=depth,
                                  resampler_n_heads=heads, resampler_head_dim=hd, num_key_value_heads=kv)
    cfg._attn_implementation = "sdpa"
    peer = Idefics2PerceiverResampler(cfg)
    mask = r.np.ones((b, n), bool)
    mask[0, n // 2:] = False
    return _from_peer(r, peer, (_rand(r, b, n, hid, seed=1),), {"attention_mask": mask},
                      f"{b}x{n}x{hid} -> {lat}", "HF Idefics2PerceiverResampler")


def case_qwen2_vl_merger(r: Runner) -> Built:
    """Qwen2-VL-7B's patch merger: LayerNorm(1280), 2x2 neighbours concatenated, MLP 5120 -> 5120 -> 3584.
    The batch is the number of images; HF takes their patches flattened to [images * patches, 1280]."""
    if r.torch is None or importlib.util.find_spec("transformers") is None:
        raise Skip("needs transformers (the peer defines the spec through interop.from_module)")
    from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger
    b, n, dv, dl = (2, 16, 64, 128) if r.args.small else (16, 1024, 1280, 3584)
    b = r.args.batch or b
    x = _rand(r, b * n, dv, seed=1)
    return _from_peer(r, PatchMerger(dim=dl, context_dim=dv), (x,), {}, f"{b}x{n}x{dv} -> {n // 4}x{dl}",
                      "HF Qwen2-VL PatchMerger", ours=((x.reshape(b, n, dv),), {}))


BUILDERS = {"projector": case_projector, "attention": case_attention, "gated_xattn": case_gated_xattn,
            "perceiver": case_perceiver, "qformer": case_qformer, "idefics2": case_idefics2,
            "qwen2_vl_merger": case_qwen2_vl_merger}


# --- the command ---------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table; returns 0 (skipped cases are reported, not failures)."""
    try:
        r = Runner(args)
    except Skip as exc:
        print(f"fusion-spec bench: {exc}", file=sys.stderr)
        return 2
    if r.torch is None:
        return _run(args, r)
    with r.torch.inference_mode():  # restores the caller's grad mode afterwards
        return _run(args, r)


def _run(args: argparse.Namespace, r: Runner) -> int:
    out = common.printer(args)
    peak, peak_what, peak_timing = r.peak_tflops()
    out(f"backend {r.backend}, device {r.device}, dtype {r.dtype}, fast paths "
          f"{'off' if args.no_fast_paths else 'on'}, compile {args.compile}, cuda graphs {args.cuda_graphs}, "
          f"peer compile {args.peer_compile}{', small shapes' if args.small else ''}")
    out(f"BLAS: {blas_info()}")
    out(f"peak: {peak:.2f} TFLOP/s ({peak_what}; max/min {peak_timing.spread:.2f}"
        f"{' UNSTABLE' if peak_timing.unstable else ''})")
    rows, records = [], []
    for name in args.case or CASES:
        rec: dict[str, Any] = {"case": name}
        try:
            built = BUILDERS[name](r)
            ours = built.ours
            if args.cuda_graphs and r.device == "cuda" and r.backend == "torch":
                ours = r.cuda_graph(ours)
            flops = built.flops or count_flops(r, built.flop_fn)
            t_ours = r.time(ours)
            t_peer = r.time(built.peer) if built.peer is not None else None
            rec.update(shape=built.shape, **t_ours.as_json("ours"), peer=built.peer_name,
                       **(t_peer.as_json("peer") if t_peer is not None else {"peer_ms": None}),
                       speedup=None if t_peer is None else t_peer.median / t_ours.median, flops=flops,
                       tflops=None if not flops else flops / t_ours.median / 1e12,
                       unstable=t_ours.unstable or (t_peer is not None and t_peer.unstable))
            rec["peak_share"] = None if rec["tflops"] is None else rec["tflops"] / peak
        except Skip as exc:
            rec.update(skipped=str(exc))
        except Exception as exc:  # noqa: BLE001 -- report and go on with the other cases
            rec.update(error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            if args.verbose:
                traceback.print_exc()
        rec["blas"] = blas_info()  # after the case ran: every library it loaded is in the process
        records.append(rec)
        rows.append(_row(rec))
    out(_table(rows, ["case", "shape", "ours ms", "max/min", "peer ms", "max/min", "peer/ours", "TFLOP/s", "% peak",
                      "peer / note"]))
    unstable = [rec["case"] for rec in records if rec.get("unstable")] + (["peak"] if peak_timing.unstable else [])
    if unstable:
        common.note(f"UNSTABLE timings ({', '.join(unstable)}): the slowest of the repeated calls took more than "
                    f"{UNSTABLE_SPREAD:g}x the fastest, so other work on the machine was changing the timings; "
                    "rerun on a quiet machine (or with more --repeat) before comparing these figures")
    if args.json:
        write_json(args.json, {"backend": r.backend, "device": r.device, "dtype": r.dtype, "peak_tflops": peak,
                               "peak": peak_what, **peak_timing.as_json("peak"), "blas": blas_info(),
                               "unstable_spread": UNSTABLE_SPREAD, "options": vars(args) | {"func": None},
                               "cases": records})
    return 0


def _row(rec: dict[str, Any]) -> list[str]:
    if "skipped" in rec or "error" in rec:
        return [rec["case"], "", "", "", "", "", "", "", "", "skipped: " + rec["skipped"] if "skipped" in rec
                else "ERROR " + rec["error"]]
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    return [rec["case"], rec["shape"], f(rec["ours_ms"], ".3f"), f(rec["ours_spread"], ".2f"), f(rec["peer_ms"], ".3f"),
            f(rec.get("peer_spread"), ".2f"), f(rec["speedup"], ".2f"), f(rec["tflops"], ".2f"),
            f(None if rec["peak_share"] is None else 100 * rec["peak_share"], ".0f"),
            ("UNSTABLE  " if rec["unstable"] else "") + (rec["peer"] or "-")]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    line = lambda r: "  ".join([str(c).ljust(w) if i < 2 else str(c).rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(r, widths))] + [str(r[-1])])
    return "\n".join([line(header), line(["-" * w for w in widths] + ["-" * 10]), *(line(r) for r in rows)])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="torch", choices=["torch", "jax", "mlx", "numpy"],
                   help="e.g. --backend jax (default torch; numpy: the reference itself)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="e.g. --device cuda (default cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="e.g. --dtype bfloat16 (default float32)")
    p.add_argument("--case", action="append", choices=CASES,
                   help="only this case (repeatable; default all), e.g. --case projector")
    p.add_argument("--small", action="store_true", help="scaled-down shapes that run on a CPU in seconds, e.g. --small")
    p.add_argument("--batch", type=int_at_least(1, 1024),
                   help="every case's batch (default: each case's own), e.g. --batch 4")
    p.add_argument("--text-len", type=int_at_least(1, 2 ** 20),
                   help="gated_xattn's text length (default 2048), e.g. --text-len 256")
    p.add_argument("--compile", default="none", choices=["none", "default", "reduce-overhead", "max-autotune",
                                                         "max-autotune-no-cudagraphs"],
                   help="torch.compile(fullgraph=True) our torch module with this mode, e.g. --compile default")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="capture our torch module in a CUDA graph, e.g. --device cuda --cuda-graphs")
    p.add_argument("--peer-compile", default="none", choices=["none", "default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the peer too (for a compiled-vs-compiled comparison), e.g. --peer-compile default")
    p.add_argument("--no-peers", action="store_true", help="do not build the peers' modules, e.g. --no-peers")
    p.add_argument("--no-fast-paths", action="store_true",
                   help="run our modules on the reference primitives, e.g. --no-fast-paths")
    p.add_argument("--repeat", type=int_at_least(1, 100_000), default=20, metavar="N",
                   help="timed calls per case: the table gives their median and max/min, and flags a max/min above "
                   f"{UNSTABLE_SPREAD:g} UNSTABLE, e.g. --repeat 50 (default 20)")
    p.add_argument("--warmup", type=int_at_least(0, 10_000), default=3, metavar="N",
                   help="untimed calls first, e.g. --warmup 5 (default 3)")
    p.add_argument("--max-seconds", type=float_in(0.001, 86_400), default=20.0, metavar="S",
                   help="stop repeating a case after this long, e.g. --max-seconds 5 (default 20)")
    json_argument(p, "every figure")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failing cases, e.g. --verbose")


EXAMPLES = """examples:
  fusion-spec bench --backend torch --small
  fusion-spec bench --backend jax --case projector --case attention --repeat 50
  fusion-spec bench --backend torch --device cuda --dtype bfloat16 --compile default --json bench.json"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="time the fusion operators on a backend against the real models' modules",
                              description=__doc__.split("\n\n")[0], epilog=EXAMPLES)
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="bench_backends", description=__doc__.split("\n\n")[0], epilog=EXAMPLES)
    add_arguments(p)
    p.set_defaults(func=run)
    return common.run(p, argv)


if __name__ == "__main__":
    sys.exit(main())
