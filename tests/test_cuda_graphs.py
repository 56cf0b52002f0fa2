"""The torch backend's CUDA graphs on a GPU: replays follow new inputs, the cache of graphs stays
bounded, and captures succeed while another thread allocates CUDA memory (thread-local capture
mode; the default global mode fails under that load). Skips without torch CUDA."""

from __future__ import annotations

import copy
import threading

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a CUDA device")

from pyfill.engine.backends import TorchBackend  # noqa: E402
from pyfill.models import build_model  # noqa: E402


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_model("unet").eval()


def test_replays_follow_new_inputs_and_the_cache_stays_bounded(unet) -> None:
    reference = copy.deepcopy(unet).cuda()
    backend = TorchBackend(copy.deepcopy(unet), ["image"], "cuda", "fp16", cuda_graphs=True)
    sizes = [64, 96, 64, 128, 160, 192, 64, 96, 224]  # more shapes than the cache holds, some repeated
    tolerance = 2e-2
    last: dict[int, tuple] = {}  # size -> (input, expected, returned) of its previous call
    replays = 0
    for i, s in enumerate(sizes):
        x = torch.rand(2, 3, s, s, device="cuda", generator=torch.Generator("cuda").manual_seed(i)) * 2 - 1
        kept = [tuple(k) for k in backend.graph_shapes]
        (y,) = backend.run({"image": x})
        with torch.inference_mode():
            want = reference(x)
        assert y.shape == want.shape and (y - want).abs().max().item() < tolerance
        if s in last:
            x0, want0, y0 = last[s]
            # By construction a stale replay (the previous input's result) cannot pass: the
            # inputs differ and so do their results, by far more than the tolerance ...
            assert (x - x0).abs().max().item() > 0.5
            assert (want - want0).abs().max().item() > 10 * tolerance
            # ... and a result handed out earlier is not overwritten by a later replay
            assert (y0 - want0).abs().max().item() < tolerance
            replays += any(k[0][0][2] == s for k in kept)
        last[s] = (x, want, y)
        assert len(backend.graph_shapes) <= TorchBackend.MAX_GRAPHS
    assert replays >= 2, "the sizes must make the backend replay kept graphs, not only capture new ones"
    assert [k[0][0][2] for k in backend.graph_shapes] == [160, 192, 64, 96, 224][-TorchBackend.MAX_GRAPHS:]


def test_capture_succeeds_while_another_thread_allocates(unet) -> None:
    backend = TorchBackend(copy.deepcopy(unet), ["image"], "cuda", "fp16", cuda_graphs=True)
    stop, errors, allocations = threading.Event(), [], [0]

    def churn() -> None:  # cudaMalloc / cudaFree from another thread, all the time
        while not stop.is_set():
            try:
                block = torch.empty((1 + allocations[0] % 7) << 20, device="cuda")
                del block
                torch.cuda.empty_cache()
                allocations[0] += 1
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for s in (40, 48, 56, 72, 88):
            backend.run({"image": torch.ones(1, 3, s, s, device="cuda")})
    finally:
        stop.set()
        thread.join()
    assert not errors and allocations[0] > 0
