"""Poisson encoder: probabilities, step 0, seeding, dense == events, worker-count independence."""

import numpy as np
import pytest

from spikedata.encoders.poisson import DEFAULT_MAX_PROB, poisson_encode, poisson_encode_events


def _ramp(n_samples: int) -> np.ndarray:
    """n_samples copies of a 16 x 16 image holding every pixel value 0..255 once."""
    return np.tile(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), (n_samples, 1, 1))


def test_per_unit_frequency_matches_probability():
    steps, n = 400, 60
    spikes = poisson_encode(_ramp(n), steps, seed=3)
    assert spikes.shape == (n, steps, 256) and spikes.dtype == np.bool_
    trials = n * (steps - 1)  # step 0 is never used
    counts = spikes.sum(axis=(0, 1))
    p = np.arange(256) / 255 * DEFAULT_MAX_PROB
    assert counts[0] == 0
    sd = np.sqrt(trials * p[1:] * (1 - p[1:]))
    z = (counts[1:] - trials * p[1:]) / sd
    # 255 binomial counts: |z| < 4.5 holds for each with probability 1 - 7e-6
    assert np.abs(z).max() < 4.5
    # and the deviations are not systematically biased
    assert abs(z.mean()) < 4.5 / np.sqrt(255) * 1.5


def test_every_step_has_the_same_probability():
    steps, n = 200, 40
    spikes = poisson_encode(np.full((n, 28, 28), 128, np.uint8), steps, seed=11)
    per_step = spikes.sum(axis=(0, 2))  # Binomial(n * 784, p) for t >= 1
    p = 128 / 255 * DEFAULT_MAX_PROB
    trials = n * 784
    z = (per_step[1:] - trials * p) / np.sqrt(trials * p * (1 - p))
    assert per_step[0] == 0
    assert np.abs(z).max() < 4.5


def test_full_probability_and_zero():
    spikes = poisson_encode(np.array([[0, 255, 128]], np.uint8), 50, max_prob=1.0)
    assert not spikes[0, :, 0].any()
    assert spikes[0, 1:, 1].all() and not spikes[0, 0, 1]
    silent = poisson_encode(np.full((2, 5), 255, np.uint8), 50, max_prob=0.0)
    assert not silent.any()


def test_step_zero_never_spikes_on_real_images(shared_data):
    from spikedata.io.idx import read_idx

    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")[:200]
    spikes = poisson_encode(images, 400)
    assert not spikes[:, 0].any()
    assert not spikes[images.reshape(200, 1, 784).repeat(400, axis=1) == 0].any()  # background pixels are silent
    density = spikes.mean()
    expected = (images.astype(np.float64) / 255 * DEFAULT_MAX_PROB).mean() * 399 / 400
    assert abs(density - expected) < 0.02 * expected


def test_seeds_reproduce_and_differ():
    images = _ramp(8)
    a = poisson_encode(images, 100, seed=5)
    assert np.array_equal(a, poisson_encode(images, 100, seed=5))
    b = poisson_encode(images, 100, seed=6)
    assert not np.array_equal(a, b)
    # samples with the same image still get independent trains (the sample index is part of the key)
    assert not np.array_equal(a[0], a[1])


def test_sample_depends_only_on_seed_and_index():
    images = _ramp(10)
    whole = poisson_encode(images, 80, seed=2)
    part = poisson_encode(images[4:7], 80, seed=2, first_index=4)
    assert np.array_equal(part, whole[4:7])


def test_events_equal_dense_form(shared_data):
    from spikedata.io.idx import read_idx

    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")[:64]
    dense = poisson_encode(images, 400, seed=9, first_index=100)
    indptr, times, units = poisson_encode_events(images, 400, seed=9, first_index=100)
    assert indptr[0] == 0 and indptr.dtype == np.int64
    assert times.dtype == np.uint16 and units.dtype == np.uint16
    sample, t, u = np.nonzero(dense)  # C order: sorted by (sample, time, unit)
    assert np.array_equal(np.diff(indptr), np.bincount(sample, minlength=64))
    assert np.array_equal(times, t) and np.array_equal(units, u)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="0..255"):
        poisson_encode(np.array([[300.0]]), 10)
    with pytest.raises(ValueError, match="steps"):
        poisson_encode(np.zeros((1, 4), np.uint8), 0)
    with pytest.raises(ValueError, match="max_prob"):
        poisson_encode(np.zeros((1, 4), np.uint8), 10, max_prob=1.5)
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        poisson_encode(np.zeros(4, np.uint8), 10)


def test_store_bytes_do_not_depend_on_workers(tmp_path):
    """Same store content with 1 and 2 worker processes, and with another chunking."""
    from spikedata.datasets.shared.images import image_encode_jobs
    from spikedata.pipeline import encode_to_store
    from spikedata.store import open_store

    splits = []
    for workers, chunk in ((1, 256), (2, 100)):
        attrs, jobs = image_encode_jobs("mnist-5k", splits=["test"], steps=60, seed=4, chunk=chunk)
        path = encode_to_store(tmp_path / f"w{workers}-{chunk}.zarr", attrs, jobs, workers=workers, progress=False)
        splits.append(open_store(path)["test"])
    block = [s.read_range(0, len(s)) for s in splits]
    for other in block[1:]:
        for name in ("indptr", "times", "units", "labels"):
            a, b = getattr(block[0], name), getattr(other, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    attrs, jobs = image_encode_jobs("mnist-5k", splits=["test"], steps=60, seed=5)
    other = open_store(encode_to_store(tmp_path / "s5.zarr", attrs, jobs, progress=False))["test"]
    t0, u0 = splits[0].events(0)
    t1, u1 = other.events(0)
    assert not (np.array_equal(t0, t1) and np.array_equal(u0, u1))
