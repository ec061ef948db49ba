"""Grain pipelines: clip sampling, crops, flips, shards, determinism, resume, global batches."""

import jax
import numpy as np
import pytest

from i3d_jax import preprocess, sharding
from i3d_jax.data import pipeline, schema
from i3d_jax.data.pipeline import EvalSpec, InMemorySource, TrainSpec


def _video(i: int, t: int, h: int = 12, w: int = 14, c: int = 3) -> np.ndarray:
    """Pixel value encodes (frame, column): v[t, y, x, 0] = 20 * t + x; channel 1 = example id."""
    v = np.zeros((t, h, w, c), np.uint8)
    v[..., 0] = (20 * np.arange(t)[:, None, None] + np.arange(w)[None, None, :]) % 256
    v[..., 1] = i
    return v


def _source(n=12, frames=(10, 4, 7), **kw):
    return InMemorySource(
        [
            {"video": _video(i, frames[i % len(frames)], **kw), "label": i % 3, "video_id": f"v{i}"}
            for i in range(n)
        ]
    )


def _take(ds, k):
    it = iter(ds)
    return [next(it) for _ in range(k)]


def test_train_shapes_dtypes_and_frame_content():
    spec = TrainSpec(clip_length=6, crop_size=8, flip=False)
    (b,) = _take(
        pipeline.train_dataset(_source(), spec, 4, seed=0, process_index=0, process_count=1), 1
    )
    assert b["video"].shape == (4, 6, 8, 8, 3) and b["video"].dtype == np.uint8
    assert b["label"].dtype == np.int32 and b["index"].dtype == np.int32
    np.testing.assert_array_equal(b["label"], b["index"] % 3)
    for clip, idx in zip(b["video"], b["index"], strict=True):
        assert (clip[..., 1] == idx).all()
        # Consecutive frames (mod the video length when it loops), and an unflipped row.
        n = (10, 4, 7)[idx % 3]
        frames = clip[:, 0, 0, 0].astype(int) // 20
        np.testing.assert_array_equal(frames, (frames[0] + np.arange(6)) % n)
        assert (np.diff(clip[0, 0, :, 0].astype(int)) == 1).all()


def test_short_videos_loop():
    # Videos of 4 frames, clips of 10: the frame sequence wraps around.
    src = InMemorySource([{"video": _video(0, 4), "label": 0}] * 4)
    spec = TrainSpec(clip_length=10, crop_size=8, flip=False)
    (b,) = _take(pipeline.train_dataset(src, spec, 4, seed=3, process_index=0, process_count=1), 1)
    frames = b["video"][:, :, 0, 0, 0].astype(int) // 20
    for f in frames:
        np.testing.assert_array_equal(f, (f[0] + np.arange(10)) % 4)


def test_clip_longer_than_video_without_looping_is_a_clear_error():
    src = InMemorySource([{"video": _video(0, 4), "label": 0, "video_id": "short"}] * 2)
    spec = TrainSpec(clip_length=10, crop_size=8, loop_short=False)
    ds = pipeline.train_dataset(src, spec, 2, seed=0, process_index=0, process_count=1)
    with pytest.raises(ValueError, match=r"'short' has 4 frames, shorter than clip_length=10"):
        next(iter(ds))


def test_flip_is_consistent_across_frames():
    spec = TrainSpec(clip_length=5, crop_size=8, flip=True)
    ds = pipeline.train_dataset(_source(), spec, 8, seed=1, process_index=0, process_count=1)
    (b,) = _take(ds, 1)
    flipped = []
    for clip in b["video"][..., 0].astype(int):  # value = 20 * frame + column
        rising = (np.diff(clip, axis=2) == 1).all()
        falling = (np.diff(clip, axis=2) == -1).all()
        assert rising or falling  # every frame and row of a clip flipped the same way
        flipped.append(bool(falling))
    assert 0 < sum(flipped) < len(flipped)  # both outcomes occur in this batch


def test_flow_flip_negates_x_only():
    clip = np.stack(
        [np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4)), np.full((3, 4), 0.5, np.float32)],
        axis=-1,
    )[None].repeat(2, 0)  # [T=2, H=3, W=4, 2]
    out = pipeline.flip_clip(clip, pipeline.FLOW)
    np.testing.assert_array_equal(out[..., 0], -clip[:, :, ::-1, 0])
    np.testing.assert_array_equal(out[..., 1], clip[:, :, ::-1, 1])
    rgb = pipeline.flip_clip(clip, pipeline.RGB)
    np.testing.assert_array_equal(rgb, clip[:, :, ::-1])
    with pytest.raises(ValueError, match="must be float"):
        pipeline.flip_clip(clip.astype(np.uint8), pipeline.FLOW)


def test_flow_pipeline_outputs_two_float_channels_with_sign_rule():
    # Quantised flow with a constant +x displacement: flipped clips must carry -x.
    v = np.zeros((6, 10, 10, 3), np.uint8)
    v[..., 0], v[..., 1] = 200, 128
    src = InMemorySource([{"video": v, "label": 0}] * 8)
    spec = TrainSpec(clip_length=4, crop_size=8, modality="flow")
    (b,) = _take(pipeline.train_dataset(src, spec, 8, seed=5, process_index=0, process_count=1), 1)
    assert b["video"].shape == (8, 4, 8, 8, 2) and b["video"].dtype == np.float32
    x = b["video"][..., 0].reshape(8, -1)
    pos = pipeline.dequantize_flow_unit(np.array([200, 128], np.uint8))
    np.testing.assert_allclose(pos, [72 * 20 / 127 / 20, 0.0], rtol=1e-6)  # 72 steps of 20/127 px
    assert np.all(np.abs(b["video"]) <= 1.0)
    signs = np.sign(x[:, 0])
    assert set(signs) == {1.0, -1.0}
    np.testing.assert_allclose(np.abs(x), abs(pos[0]))
    np.testing.assert_allclose(b["video"][..., 1], pos[1])


def test_one_to_float_and_unit_named_flow_helpers():
    assert pipeline.to_float is preprocess.to_float
    assert pipeline.dequantize_flow_unit is preprocess.dequantize_flow_unit
    assert not hasattr(pipeline, "dequantize_flow") and not hasattr(preprocess, "dequantize_flow")


def test_to_float_range():
    u = np.array([0, 1, 127, 128, 254, 255], np.uint8)
    f = pipeline.to_float(u)
    assert f.dtype == np.float32
    np.testing.assert_allclose(f[[0, -1]], [-1.0, 1.0])
    assert f.min() >= -1 and f.max() <= 1 and (np.diff(f) > 0).all()
    import jax.numpy as jnp

    g = pipeline.to_float(jnp.asarray(u), jnp.bfloat16)
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(g, np.float32), f, atol=4e-3)


def test_identical_seeds_identical_batches_and_workers_do_not_matter():
    spec = TrainSpec(clip_length=5, crop_size=8, scale_jitter=(0.7, 1.0))
    mk = lambda seed, **kw: pipeline.train_dataset(  # noqa: E731
        _source(), spec, 4, seed=seed, process_index=0, process_count=1, **kw
    )
    a, b, c = _take(mk(7), 4), _take(mk(7, num_threads=1), 4), _take(mk(8), 4)
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["video"], z["video"]) for x, z in zip(a, c, strict=True))


def test_train_shards_disjoint_and_complete_per_epoch():
    src = _source(n=12)
    spec = TrainSpec(clip_length=3, crop_size=8)
    seen = []
    for p in range(2):
        ds = pipeline.train_dataset(
            src, spec, 3, seed=0, num_epochs=1, process_index=p, process_count=2
        )
        seen.append(sorted(int(i) for b in ds for i in b["index"]))
    assert set(seen[0]).isdisjoint(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(12))


@pytest.mark.parametrize("protocol", ["whole", "multiview"])
def test_eval_shards_disjoint_complete_and_padded(protocol):
    src = _source(n=5)
    spec = EvalSpec(
        protocol=protocol, crop_size=8, max_frames=12, clip_length=4, num_clips=2, num_crops=3
    )
    views = pipeline.num_views(spec)
    got, batches = [], []
    for p in range(2):
        ds = pipeline.eval_dataset(src, spec, 2, process_index=p, process_count=2)
        bs = list(ds)
        batches.append(len(bs))
        for b in bs:
            real = b["mask"] == 1
            got += list(zip(b["index"][real].tolist(), b["view"][real].tolist(), strict=True))
            assert b["video"].shape[1:] == ((12, 8, 8, 3) if protocol == "whole" else (4, 8, 8, 3))
    assert batches[0] == batches[1] == pipeline.num_eval_batches(5, spec, 2, 2)
    assert sorted(got) == [(i, v) for i in range(5) for v in range(views)]


def test_eval_whole_loops_and_centre_crops():
    src = _source(n=2, frames=(4,))
    spec = EvalSpec(protocol="whole", crop_size=8, max_frames=10)
    (b,) = list(pipeline.eval_dataset(src, spec, 2, process_index=0, process_count=1))
    np.testing.assert_array_equal(b["video"][0, :, 0, 0, 0] // 20, np.arange(10) % 4)
    # centre crop of width 14 -> 8 starts at column 3
    np.testing.assert_array_equal(b["video"][0, 0, 0, :, 0], np.arange(3, 11))
    np.testing.assert_array_equal(b["num_frames"], [4, 4])
    assert list(b["video_id"]) == ["v0", "v1"]


def test_multiview_clip_starts_and_crops():
    assert pipeline.crop_offsets(12, 20, 8, 3) == [(2, 0), (2, 6), (2, 12)]
    assert pipeline.crop_offsets(20, 12, 8, 3) == [(0, 2), (6, 2), (12, 2)]


def test_resume_from_iterator_state_gives_the_next_batches():
    spec = TrainSpec(clip_length=4, crop_size=8)
    ds = pipeline.train_dataset(_source(), spec, 4, seed=2, process_index=0, process_count=1)
    it = iter(ds)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]  # crosses an epoch boundary (12 examples)
    it2 = iter(pipeline.train_dataset(_source(), spec, 4, seed=2, process_index=0, process_count=1))
    it2.set_state(state)
    for e in expected:
        got = next(it2)
        for k in e:
            np.testing.assert_array_equal(got[k], e[k])


def test_jpeg_source_decodes_only_needed_frames():
    v = _video(0, 6, 16, 16)
    v[..., 2] = 200
    ex = {"video": schema.encode_jpeg_frames(v), "label": 1, "video_id": "j"}
    src = InMemorySource([ex] * 2)
    spec = EvalSpec(protocol="multiview", crop_size=8, clip_length=3, num_clips=2, num_crops=1)
    (b,) = list(pipeline.eval_dataset(src, spec, 4, process_index=0, process_count=1))
    assert b["video"].shape == (4, 3, 8, 8, 3)
    assert abs(float(b["video"][..., 2].mean()) - 200) < 3  # JPEG-lossy but close


def test_global_batch_on_mesh():
    mesh = sharding.make_mesh(data=-1)
    host = {
        "video": np.arange(8 * 2, dtype=np.uint8).reshape(8, 2),
        "label": np.arange(8),
        "video_id": np.array(["a"] * 8),
    }
    g = sharding.global_batch(host, mesh)
    assert set(g) == {"video", "label"}
    assert g["video"].shape == (8, 2) and len(g["video"].sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(g["video"]), host["video"])
    with pytest.raises(ValueError, match="not divisible"):
        sharding.global_batch({"video": np.zeros((6, 2))}, mesh)
    assert jax.device_count() == 8


def test_worker_processes_give_the_same_batches_and_resume():
    spec = TrainSpec(clip_length=4, crop_size=8)
    mk = lambda **kw: pipeline.train_dataset(  # noqa: E731
        _source(), spec, 4, seed=1, process_index=0, process_count=1, **kw
    )
    plain, workers = iter(mk()), iter(mk(num_workers=2))
    for _ in range(4):
        a, b = next(plain), next(workers)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    state = workers.get_state()
    expected = next(workers)
    resumed = iter(mk(num_workers=2))
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["video"], expected["video"])
