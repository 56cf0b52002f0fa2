"""OpenVINO's throughput mode (``Engine(throughput=True)``, the video task engines' mode): the
images of a batch run as concurrent one-image requests and come back in order, equal to the
same model run one image at a time and to ONNX Runtime."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("openvino")

import pyfill  # noqa: E402
from pyfill.tasks import frame_processor  # noqa: E402


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.uint8)
    # distinct frames (a different shift and brightness each), smooth enough for a restorer
    return [np.clip(np.kron(np.roll(base, i, axis=1), np.ones((8, 8, 1))) + 9 * i, 0, 255).astype(np.uint8)
            for i in range(n)]


@pytest.fixture(scope="module")
def engines() -> dict[str, pyfill.Engine]:
    common = {"backend": "openvino", "precision": "fp32", "tile": 0}
    return {"throughput": pyfill.Engine.from_pretrained("restore", throughput=True, **common),
            "latency": pyfill.Engine.from_pretrained("restore", **common),
            "onnxruntime": pyfill.Engine.from_pretrained("restore", backend="onnxruntime", tile=0)}


def test_throughput_mode_is_compiled_and_reported(engines) -> None:
    thr, lat = engines["throughput"].backend, engines["latency"].backend
    assert thr.throughput and not lat.throughput
    assert str(thr.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert str(lat.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert engines["throughput"].backend.describe()["throughput"] is True


def test_batch_comes_back_in_order_equal_to_single_runs(engines) -> None:
    frames = _frames(5)
    batch = engines["throughput"](frames)
    assert len(batch) == 5
    for frame, out in zip(frames, batch):
        one = engines["latency"](frame)
        reference = engines["onnxruntime"](frame)
        assert np.abs(out.astype(int) - one.astype(int)).max() <= 1
        assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1
    # the frames differ, so an output given to the wrong frame would not pass the loop above
    assert min(np.abs(batch[i].astype(int) - batch[i + 1].astype(int)).mean() for i in range(4)) > 2


def test_tiled_image_runs_its_tiles_concurrently_with_the_same_result(engines) -> None:
    image = _frames(1, 160, 224)[0]
    tiled_thr = pyfill.Engine.from_pretrained("restore", backend="openvino", precision="fp32", tile=96,
                                              throughput=True)
    tiled_lat = pyfill.Engine.from_pretrained("restore", backend="openvino", precision="fp32", tile=96)
    assert np.abs(tiled_thr(image).astype(int) - tiled_lat(image).astype(int)).max() <= 1


def test_calls_from_several_threads_each_get_their_own_results(engines) -> None:
    frames = _frames(8)
    expected = [engines["latency"](f) for f in frames]
    got: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        order = frames[k:] + frames[:k]
        got[k] = engines["throughput"](order)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, outs in got.items():
        for i, out in enumerate(outs):
            assert np.abs(out.astype(int) - expected[(i + k) % 8].astype(int)).max() <= 1


def test_video_frame_processors_use_throughput_mode_unless_told_not_to() -> None:
    on = frame_processor("restore", backend="openvino", tile=0)
    off = frame_processor("restore", backend="openvino", tile=0, throughput=False)
    frames = _frames(2)
    a, b = on(frames), off(frames)
    assert np.abs(np.stack(a).astype(int) - np.stack(b).astype(int)).max() <= 1
    from pyfill.tasks import restore_engine

    assert restore_engine("restore", backend="openvino", tile=0, static_shapes=True, throughput=True).backend.throughput
    assert not restore_engine("restore", backend="openvino", tile=0, static_shapes=True).backend.throughput
