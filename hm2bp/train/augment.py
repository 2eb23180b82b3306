"""On-the-fly data augmentation of the spiking CNN (`docs/algorithm.md` §2.1), on the training device.

Per training image (uint8 `[H, W]`), as the reference's `cuTransformation.cu` / `DataLayerSpiking.cu`:
1. map to [-1, 1]: `x' = 2 x / 255 - 1`;
2. displacement field (pixels) `d = d_elastic + d_scale + d_rotation`, horizontal (column) and vertical (row):
   * elastic: uniform noise U[-1, 1] per pixel and direction, convolved ("same", zero outside) with the reference's
     21x21 Gaussian `exp(-r^2 / (2 sigma^2)) / (2 pi sigma)` (sigma 4; this is its normalisation, not unit sum),
     times `distortion` (3.4);
   * scale: `s_h (col - mid)`, `s_v (row - mid)` with `s = scale/100 * U[-1, 1]` per direction, `mid = size // 2`;
   * rotation by `theta = rotation * U[-1, 1]` degrees about `mid`:
     `d_h += yy - yy cos - xx sin`, `d_v += xx - xx cos + yy sin` (`xx = row - mid`, `yy = col - mid`);
3. bilinear sample of `x'` at `(row - d_v, col - d_h)`, background -1 outside the image (`grid_sample`);
4. back to a spike probability `p = (x'' + 1) / 2 / 5.5` (= pixel / 255 * max_prob), Poisson (Bernoulli per step)
   for `t = 1 .. T-1`, no spike at step 0 and none for `p <= 1e-5`.
Known differences from the reference code (bugs there, not behaviour we want): its horizontal and vertical noise
of batch slot 0 are the same numbers, the rotation reuses the horizontal scale's uniform, and with rotation on the
scale draws are clamped to [0, scale] (only enlargements). Here all five draws are independent and symmetric.

Randomness: one transform per epoch and batch slot (`draw = "epoch"`, what the reference does: `cuApplyRandom` is
called once per epoch) or one per sample (`draw = "sample"`); the Poisson trains are new for every sample and
epoch. Everything is a pure function of `(seed, epoch, sample indices)`, so a resumed run reproduces its batches.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hm2bp.config import DRAWS, AugmentSpec, parse_augment  # noqa: F401  (re-exported: defined with the config schema)

MIN_PROB = 1e-5  # pixels at or below this probability never spike (reference readMnistData.cpp)


def gaussian_field_kernel(size: int, sigma: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """The reference's smoothing kernel `[size, size]` float32: `exp(-r^2 / (2 sigma^2)) / (2 pi sigma)`."""
    r = torch.arange(size, dtype=torch.float64, device=device) - size // 2
    r2 = r.view(-1, 1) ** 2 + r.view(1, -1) ** 2
    return (torch.exp(-r2 / (2.0 * sigma * sigma)) / (2.0 * math.pi * sigma)).to(torch.float32)


def random_transform(n: int, image_shape: tuple[int, int], spec: AugmentSpec,
                     generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw `n` transforms on the generator's device: `noise` float32 `[n, 2, H, W]` (horizontal, vertical) in
    [-1, 1], `scale` `[n, 2]` fractions in [-scale/100, scale/100], `angle` `[n]` radians."""
    dev = generator.device
    h, w = image_shape
    u = torch.rand(n, 2 * h * w + 3, generator=generator, device=dev, dtype=torch.float32) * 2.0 - 1.0
    return {
        "noise": u[:, :2 * h * w].reshape(n, 2, h, w),
        "scale": u[:, 2 * h * w:2 * h * w + 2] * (spec.scale / 100.0),
        "angle": u[:, -1] * (spec.rotation * math.pi / 180.0),
    }


def displacement(transform: dict[str, torch.Tensor], spec: AugmentSpec) -> torch.Tensor:
    """Displacement field float32 `[n, 2, H, W]` (channel 0 horizontal/column, 1 vertical/row), in pixels."""
    noise = transform["noise"]
    n, _, h, w = noise.shape
    dev = noise.device
    if spec.distortion > 0:
        kern = gaussian_field_kernel(spec.field_size, spec.sigma, dev)
        # depthwise "same" convolution with zeros outside the image (the kernel is symmetric: correlation == conv)
        disp = F.conv2d(noise.reshape(n * 2, 1, h, w), kern.view(1, 1, *kern.shape), padding=spec.field_size // 2)
        disp = disp.reshape(n, 2, h, w) * spec.distortion
    else:
        disp = torch.zeros_like(noise)
    rows = (torch.arange(h, device=dev, dtype=torch.float32) - h // 2).view(1, h, 1)
    cols = (torch.arange(w, device=dev, dtype=torch.float32) - w // 2).view(1, 1, w)
    s = transform["scale"]
    d_h = disp[:, 0] + s[:, 0].view(n, 1, 1) * cols
    d_v = disp[:, 1] + s[:, 1].view(n, 1, 1) * rows
    cos = torch.cos(transform["angle"]).view(n, 1, 1)
    sin = torch.sin(transform["angle"]).view(n, 1, 1)
    d_h = d_h + cols - cols * cos - rows * sin
    d_v = d_v + rows - rows * cos + cols * sin
    return torch.stack([d_h, d_v], dim=1)


def warp(images: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of `images` float `[n, H, W]` in [-1, 1] at `(row - d_v, col - d_h)`; -1 outside."""
    n, h, w = images.shape
    dev = images.device
    rows = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    src_col = cols - disp[:, 0]
    src_row = rows - disp[:, 1]
    grid = torch.stack([2.0 * src_col / (w - 1) - 1.0, 2.0 * src_row / (h - 1) - 1.0], dim=-1)
    shifted = (images.to(torch.float32) + 1.0).unsqueeze(1)  # zero padding of x+1 == background -1
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[:, 0] - 1.0


def augment_images(images: torch.Tensor, spec: AugmentSpec, transform: dict[str, torch.Tensor] | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images `[n, H, W]` -> transformed images float32 `[n, H, W]` in [0, 255] (steps 1-3 of the module
    docstring). Draws a transform per image from `generator` unless `transform` is given. Exact identity when
    scale, rotation and distortion are all 0."""
    x = images.to(torch.float32) * (2.0 / 255.0) - 1.0
    if not spec.is_identity:
        if transform is None:
            if generator is None:
                raise ValueError("augment_images: give a transform or a generator")
            transform = random_transform(images.shape[0], tuple(images.shape[1:]), spec, generator)
        x = warp(x, displacement(transform, spec)).clamp(-1.0, 1.0)
    else:
        return images.to(torch.float32)
    return (x + 1.0) * (255.0 / 2.0)


def poisson_spikes(pixels: torch.Tensor, steps: int, max_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli-per-step rate code of float pixels `[n, H, W]` in [0, 255]: bool `[n, steps, H*W]`, spike
    probability `pixel / 255 * max_prob` at `t = 1 .. steps-1`, none at step 0 or where `p <= 1e-5`."""
    n = pixels.shape[0]
    p = (pixels.reshape(n, 1, -1).to(torch.float32) * (max_prob / 255.0))
    p = torch.where(p > MIN_PROB, p, 0.0)
    u = torch.rand(n, steps - 1, p.shape[2], generator=generator, device=generator.device, dtype=torch.float32)
    out = torch.zeros(n, steps, p.shape[2], dtype=torch.bool, device=pixels.device)
    out[:, 1:] = u.to(pixels.device) < p
    return out


def _seed(*parts: int) -> int:
    """A 63-bit generator seed from integers (stable across runs and platforms)."""
    h = hashlib.blake2b(np.asarray(parts, dtype=np.int64).tobytes(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


class Augmenter:
    """Re-encodes training images every epoch: `augmenter.spikes(images, epoch, indices)` -> bool `[B, T, H*W]`.

    `images` uint8 `[B, H, W]` (the store's per-sample extra array `images`, on any device), `indices` the
    samples' indices in the split (they seed the per-sample randomness). Everything runs on the images' device."""

    def __init__(self, spec: AugmentSpec, steps: int, seed: int = 0, slots: int = 1) -> None:
        self.spec = spec
        self.steps = int(steps)
        self.seed = int(seed)
        self.slots = int(slots)  # batch slots with their own transform per epoch (draw = "epoch"): the batch size
        self._epoch_transform: tuple[int, str, dict[str, torch.Tensor]] | None = None

    def _generator(self, device: torch.device, *parts: int) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(_seed(self.seed, *parts))

    def transform(self, n: int, image_shape: tuple[int, int], epoch: int, indices: np.ndarray,
                  device: torch.device) -> dict[str, torch.Tensor]:
        """The transforms of a batch: batch slot b's transform of this epoch (`draw = "epoch"`), or each sample's
        own (`draw = "sample"`)."""
        if self.spec.draw == "sample":
            gen = self._generator(device, 1, epoch, *np.asarray(indices, dtype=np.int64).tolist())
            return random_transform(n, image_shape, self.spec, gen)
        if n > self.slots:
            raise ValueError(f"batch of {n} samples but the augmenter has {self.slots} slots (set slots = batch size)")
        cached = self._epoch_transform
        if cached is None or cached[0] != epoch or cached[1] != str(device):
            gen = self._generator(device, 2, epoch)
            cached = (epoch, str(device), random_transform(self.slots, image_shape, self.spec, gen))
            self._epoch_transform = cached
        return {k: v[:n] for k, v in cached[2].items()}

    def spikes(self, images: torch.Tensor, epoch: int, indices: np.ndarray) -> torch.Tensor:
        """Augmented, Poisson re-encoded spikes bool `[B, T, H*W]` of uint8 `images [B, H, W]`."""
        if images.dim() != 3:
            raise ValueError(f"images must be [batch, H, W], got shape {tuple(images.shape)}")
        n = images.shape[0]
        dev = images.device
        indices = np.asarray(indices, dtype=np.int64)
        if indices.shape != (n,):
            raise ValueError(f"indices must have shape [{n}], got {indices.shape}")
        transform = None
        if not self.spec.is_identity:
            transform = self.transform(n, tuple(images.shape[1:]), epoch, indices, dev)
        pixels = augment_images(images, self.spec, transform)
        gen = self._generator(dev, 3, epoch, *indices.tolist())
        return poisson_spikes(pixels, self.steps, self.spec.max_prob, gen)


class TrainingImages:
    """A training split's source images (its `images` extra, uint8 `[n, H, W]`) kept on the training device, and
    the `Augmenter` that turns a batch of them into fresh spike trains every epoch (what the trainer trains on
    when `[augment] enabled = true`; test trains stay the store's fixed ones, as in the reference)."""

    def __init__(self, images: torch.Tensor, augmenter: Augmenter) -> None:
        self.images = images
        self.augmenter = augmenter

    def spikes(self, indices: np.ndarray, epoch: int) -> torch.Tensor:
        """bool `[B, T, H*W]` on the images' device for the split samples `indices` (int64 `[B]`) in `epoch`."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.images.device)
        return self.augmenter.spikes(self.images[idx], epoch, indices)


def training_images(spec: AugmentSpec, split: Any, n: int, steps: int, seed: int, batch_size: int,
                    device: torch.device | str = "cpu") -> TrainingImages | None:
    """`TrainingImages` of the first `n` samples of `split` when `spec.enabled`, else None. ValueError (naming the
    split and the fix) when the split has no `images` extra or its shape does not fit the split's units."""
    if not spec.enabled:
        return None
    name = getattr(split, "name", "?")
    if "images" not in getattr(split, "extra_names", []):
        raise ValueError(
            f"augmentation is enabled ([augment] enabled = true) but split {name!r} of the store has no 'images' "
            "extra array to augment; re-encode it with `keep_images`, or train on the fixed spike trains with "
            "`augment.enabled = false`")
    images = np.asarray(split.extra("images"))
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    n_units = int(split.n_units)
    if images.ndim != 3 or images.shape[0] != len(split) or images.shape[1] * images.shape[2] != n_units:
        raise ValueError(f"split {name!r}: extra 'images' has shape {images.shape}; augmentation needs "
                         f"[{len(split)}, H, W] images with H*W = {n_units} (the store's units)")
    if images.dtype != np.uint8:
        raise ValueError(f"split {name!r}: extra 'images' is {images.dtype}; augmentation needs uint8 pixels")
    data = torch.from_numpy(np.ascontiguousarray(images[:n])).to(device)
    return TrainingImages(data, Augmenter(spec, steps, seed=seed, slots=batch_size))
