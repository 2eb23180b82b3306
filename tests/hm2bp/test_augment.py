"""Augmentation of algorithm.md §2.1 (hm2bp.train.augment): geometry of the displacement field, identity when all
magnitudes are 0, image statistics on real MNIST digits, Poisson rate, seeding."""

import math

import numpy as np
import pytest
import torch

from hm2bp.train.augment import (
    Augmenter,
    AugmentSpec,
    augment_images,
    displacement,
    gaussian_field_kernel,
    parse_augment,
    poisson_spikes,
    random_transform,
    warp,
)

ON = AugmentSpec(enabled=True)


@pytest.fixture(scope="module")
def digits(shared_data):
    from spikedata.io.idx import read_idx

    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    return torch.from_numpy(np.ascontiguousarray(images[:256]))


def test_parse_augment():
    assert parse_augment({}) == AugmentSpec()
    spec = parse_augment({"enabled": True, "scale": 10, "draw": "sample"})
    assert spec.enabled and spec.scale == 10.0 and spec.draw == "sample" and spec.rotation == 12.0
    with pytest.raises(ValueError, match=r"augment\.rotaton: unknown key"):
        parse_augment({"rotaton": 3})
    with pytest.raises(ValueError, match=r"augment\.scale: expected a finite number >= 0"):
        parse_augment({"scale": -1})
    with pytest.raises(ValueError, match=r"augment\.field_size: expected a positive odd integer"):
        parse_augment({"field_size": 20})
    with pytest.raises(ValueError, match=r"augment\.draw"):
        parse_augment({"draw": "batch"})


def test_gaussian_kernel_is_the_references():
    k = gaussian_field_kernel(21, 4.0).double()
    assert k.shape == (21, 21)
    assert k[10, 10].item() == pytest.approx(1.0 / (2 * math.pi * 4.0), rel=1e-6)
    assert k[10, 14].item() == pytest.approx(math.exp(-16 / 32) / (8 * math.pi), rel=1e-6)
    assert torch.equal(k, k.T) and torch.equal(k, k.flip(0))


def test_zero_magnitudes_are_identity():
    spec = AugmentSpec(enabled=True, scale=0.0, rotation=0.0, distortion=0.0)
    img = torch.randint(0, 256, (3, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert torch.equal(augment_images(img, spec), img.float())
    # the warp itself with a zero field reproduces the image (grid alignment: pixel centres at integers)
    x = img.float() * (2 / 255) - 1
    np.testing.assert_allclose(warp(x, torch.zeros(3, 2, 28, 28)).numpy(), x.numpy(), atol=1e-5)


def test_rotation_and_scale_geometry():
    spec = AugmentSpec(enabled=True, scale=0.0, rotation=12.0, distortion=0.0)
    tr = {"noise": torch.zeros(1, 2, 28, 28), "scale": torch.zeros(1, 2), "angle": torch.tensor([0.2])}
    d = displacement(tr, spec)[0].double()
    rows = torch.arange(28.0).view(28, 1) - 14
    cols = torch.arange(28.0).view(1, 28) - 14
    src_r, src_c = rows - d[1], cols - d[0]  # relative to the centre
    np.testing.assert_allclose((src_r**2 + src_c**2).numpy(), (rows**2 + cols**2).expand(28, 28).numpy(),
                               rtol=1e-5, atol=1e-4)  # a rotation keeps distances to the centre
    assert torch.allclose(src_r[14 + 5, 14], torch.tensor(5 * math.cos(0.2), dtype=torch.float64), atol=1e-5)
    tr = {"noise": torch.zeros(1, 2, 28, 28), "scale": torch.tensor([[0.1, -0.05]]), "angle": torch.zeros(1)}
    d = displacement(tr, AugmentSpec(enabled=True, rotation=0.0, distortion=0.0))[0]
    assert torch.allclose(d[0], 0.1 * cols.expand(28, 28)) and torch.allclose(d[1], -0.05 * rows.expand(28, 28))


def test_elastic_field_magnitude():
    gen = torch.Generator().manual_seed(3)
    spec = AugmentSpec(enabled=True, scale=0.0, rotation=0.0)
    tr = random_transform(64, (28, 28), spec, gen)
    d = displacement(tr, spec)
    # reference kernel: sqrt(sum k^2) ~ 0.28, noise std 1/sqrt(3), distortion 3.4 -> ~0.55 px in the interior
    std = d[:, :, 10:18, 10:18].std().item()
    assert 0.4 < std < 0.7
    assert tr["noise"].abs().max() <= 1.0


def test_augmentation_keeps_mnist_statistics(digits):
    aug = Augmenter(ON, steps=400, seed=0, slots=256)
    gen = torch.Generator().manual_seed(1)
    tr = random_transform(256, (28, 28), ON, gen)
    out = augment_images(digits, ON, tr)
    assert out.min() >= 0 and out.max() <= 255
    mean_in, mean_out = digits.float().mean().item(), out.mean().item()
    assert abs(mean_out - mean_in) < 0.08 * mean_in  # scale/rotation/elastic move ink, they do not create it
    changed = (out - digits.float()).abs().mean().item()
    assert changed > 5.0  # and it does move it
    # per-image ink stays close (no digit lost or duplicated)
    ratio = out.sum((1, 2)) / digits.float().sum((1, 2))
    assert 0.6 < ratio.min().item() and ratio.max().item() < 1.5  # scale +-12 % changes the area by up to ~25 %
    spikes = aug.spikes(digits[:32], epoch=0, indices=np.arange(32))
    assert spikes.shape == (32, 400, 784) and spikes.dtype == torch.bool and not spikes[:, 0].any()
    expected = digits[:32].float().mean().item() / 255 / 5.5 * 399 / 400
    assert spikes.float().mean().item() == pytest.approx(expected, rel=0.1)


def test_poisson_rate_and_zero_pixels():
    pix = torch.zeros(2, 4, 4)
    pix[0, 0, 0] = 255.0
    pix[1, 2, 3] = 127.5
    s = poisson_spikes(pix, 2001, 1 / 5.5, torch.Generator().manual_seed(0))
    assert s.sum().item() == s[0, :, 0].sum().item() + s[1, :, 11].sum().item()  # dark pixels never spike
    assert s[0, :, 0].float().mean().item() == pytest.approx(2000 / 2001 / 5.5, rel=0.1)
    assert s[1, :, 11].float().mean().item() == pytest.approx(2000 / 2001 / 11, rel=0.15)


def test_seeding():
    img = torch.randint(0, 256, (4, 28, 28), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    idx = np.array([10, 11, 12, 13])
    a = Augmenter(ON, 50, seed=7, slots=4).spikes(img, 0, idx)
    b = Augmenter(ON, 50, seed=7, slots=4).spikes(img, 0, idx)
    c = Augmenter(ON, 50, seed=8, slots=4).spikes(img, 0, idx)
    d = Augmenter(ON, 50, seed=7, slots=4).spikes(img, 1, idx)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    # draw = "epoch": one transform per batch slot for the whole epoch (reference); "sample": per sample
    ep = Augmenter(ON, 50, seed=7, slots=4)
    t1 = ep.transform(4, (28, 28), 0, idx, torch.device("cpu"))
    t2 = ep.transform(2, (28, 28), 0, idx[:2] + 100, torch.device("cpu"))
    assert torch.equal(t1["noise"][:2], t2["noise"])
    assert not torch.equal(t1["noise"], ep.transform(4, (28, 28), 1, idx, torch.device("cpu"))["noise"])
    per = Augmenter(parse_augment({"enabled": True, "draw": "sample"}), 50, seed=7)
    u1 = per.transform(2, (28, 28), 0, idx[:2], torch.device("cpu"))
    u2 = per.transform(2, (28, 28), 0, idx[2:], torch.device("cpu"))
    assert not torch.equal(u1["noise"], u2["noise"])
    with pytest.raises(ValueError, match="slots"):
        ep.spikes(torch.zeros(5, 28, 28, dtype=torch.uint8), 0, np.arange(5))
