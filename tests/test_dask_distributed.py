"""A spec's apply on Dask arrays chunked along the batch, computed by a dask.distributed LocalCluster,
gives NumPy's result (the large version: benchmarks/dask_distributed.py)."""

import numpy as np
import pytest

from fusion_spec.specs import MLPProjection, PerceiverResampler

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def run_both(client, spec, x, chunk):
    params = spec.init(0)
    want = np.asarray(spec.apply(params, x))
    lazy = spec.apply({k: da.from_array(v, chunks=v.shape) for k, v in params.items()},
                      da.from_array(x, chunks=(chunk, *x.shape[1:])))
    assert isinstance(lazy, da.Array) and lazy.numblocks[0] > 1  # the batch stays split across the graph
    return client.compute(lazy).result(), want


def test_projector_batch_chunks_on_two_workers(client):
    spec = MLPProjection(vision_dim=16, llm_dim=24, num_visual_tokens=9, norm=True)
    x = np.random.default_rng(0).standard_normal((6, 9, 16))
    got, want = run_both(client, spec, x, chunk=2)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_resampler_batch_chunks_on_two_workers(client):
    spec = PerceiverResampler.idefics2(16, resampler_n_latents=4, resampler_depth=2, resampler_n_heads=2,
                                      resampler_head_dim=8, num_key_value_heads=1)
    x = np.random.default_rng(1).standard_normal((4, 7, 16))
    got, want = run_both(client, spec, x, chunk=1)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
