"""Batched data augmentation as tensor operations: no per-image PIL, no loop over images.

Two tools, both working on a whole float batch ``(B, C, H, W)`` of pixels in
[0, 1] with a black (zero) background, i.e. *before* normalisation:

- :func:`augment_batch` draws, per image, a random affine transform (rotation,
  scale, horizontal shear, translation) and optionally an elastic distortion
  (a random displacement field smoothed by a separable Gaussian). Both are folded
  into one sampling grid, so a batch costs one ``F.grid_sample`` call. Pixels
  that come from outside the image are black.
- :func:`random_shift` moves each image by a whole number of pixels (padding and
  two gathers): no interpolation, so it is cheaper and never blurs.
- What users' images do to a digit, each on a random fraction ``p`` of the batch:
  :func:`stroke_width` (thicker strokes by max pooling, thinner by min pooling),
  :func:`binarize` (black and white only, at a random threshold),
  :func:`down_up` (down to a few pixels and back: blocky or blurred), and
  :func:`box_fill` (the digit's bounding box stretched towards the whole image,
  aspect changed). :func:`robust_batch` composes them with the affine and elastic
  transforms (the ``robust`` preset, :data:`ROBUST`).

Random numbers come from the ``generator`` passed in, drawn on the generator's
device, so a CPU generator drives augmentation of a batch on any device and the
same seed gives the same batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import AUGMENTS
from ..errors import ConfigError, DataError

Augmenter = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def _check_numbers(obj: object, ints: tuple[str, ...] = ()) -> None:
    """Every field of dataclass ``obj`` a finite number >= 0 (those in ``ints`` whole), p <= 1."""
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"augment {f.name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"augment {f.name} must be finite, got {value}")
        if value < 0:
            raise ConfigError(f"augment {f.name} must not be negative, got {value}")
        if f.name in ints and int(value) != value:
            raise ConfigError(f"augment {f.name} must be a whole number, got {value}")
    p = obj.p  # type: ignore[attr-defined]
    if p > 1:
        raise ConfigError(f"augment p is a fraction in [0, 1], got {p}")


@dataclass(frozen=True)
class AugmentConfig:
    """Magnitudes of the random transforms; each is drawn independently per image."""

    rotate: float = 0.0  # max degrees, angle uniform in [-rotate, rotate]
    scale: float = 0.0  # max relative change, zoom factor uniform in [1 - scale, 1 + scale]
    shear: float = 0.0  # max horizontal shear factor (x += k * y), k uniform in [-shear, shear]
    translate: float = 0.0  # max shift in pixels, per axis uniform in [-translate, translate]
    elastic_alpha: float = 0.0  # elastic displacement, RMS per axis in pixels (0 = off)
    elastic_sigma: float = 4.0  # smoothness of the elastic field: Gaussian sigma in pixels
    p: float = 1.0  # fraction of images augmented; the others are returned unchanged

    def __post_init__(self) -> None:
        _check_numbers(self)
        if self.rotate > 180:
            raise ConfigError(f"augment rotate is at most 180 degrees, got {self.rotate}")
        if self.scale >= 1:
            raise ConfigError(
                f"augment scale must be below 1 (factor 1 +/- scale), got {self.scale}"
            )
        if self.elastic_sigma <= 0:
            raise ConfigError(f"augment elastic_sigma must be positive, got {self.elastic_sigma}")

    @property
    def is_identity(self) -> bool:
        """True when augmentation changes nothing (all magnitudes zero, or ``p`` zero)."""
        return self.p == 0 or not (self.has_affine or self.elastic_alpha > 0)

    @property
    def has_affine(self) -> bool:
        return bool(self.rotate or self.scale or self.shear or self.translate)

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentConfig:
        """Build a config from a dict, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown augment key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**values)


# Presets, checked by eye on a grid of augmented digits: every digit stays readable.
NONE = AugmentConfig()
SHIFT_PX = 2  # the "shift" recipe: whole-pixel shifts up to 2 px (random_shift)
LIGHT = AugmentConfig(rotate=8, scale=0.08, translate=2)
STRONG = AugmentConfig(
    rotate=12, scale=0.12, shear=0.15, translate=2.5, elastic_alpha=0.8, elastic_sigma=4
)
PRESETS: dict[str, AugmentConfig] = {"none": NONE, "light": LIGHT, "strong": STRONG}
AUGMENT_NAMES = AUGMENTS  # the presets named in config.py, where TrainConfig checks them


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise DataError(
            f"augmentation expects a float batch (B, C, H, W), got {x.dtype} of shape "
            f"{tuple(x.shape)}"
        )


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Uniform numbers in [-1, 1) drawn on the generator's device, returned on ``device``."""
    src = generator.device if generator is not None else device
    return (torch.rand(shape, generator=generator, device=src) * 2 - 1).to(device)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of standard deviation ``sigma`` pixels, radius ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def elastic_field(
    batch: int,
    height: int,
    width: int,
    alpha: float,
    sigma: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Random smooth displacements (B, 2, H, W) in pixels, (dx, dy), RMS ``alpha`` per axis.

    Uniform noise (one H x W map per image and axis) is smoothed by a separable
    Gaussian of ``sigma`` pixels with wrap-around padding, so the field is equally
    strong up to the image border without drawing extra noise; it is divided by
    its exact expected standard deviation, so ``alpha`` is the displacement in pixels.
    """
    device = torch.device(device)
    kernel = gaussian_kernel(sigma).to(device)
    r = (kernel.numel() - 1) // 2
    c = batch * 2
    noise = _uniform((1, c, height, width), generator, device)  # one channel per map
    padded = _wrap_pad(noise, r)  # (1, 2B, H+2r, W+2r)
    weight = kernel.expand(c, 1, -1)
    # Depthwise (grouped) convolutions: much faster on CPU than a batch of 1-channel maps.
    smooth = F.conv2d(padded, weight.unsqueeze(2), groups=c)  # along x: (1, 2B, H+2r, W)
    smooth = F.conv2d(smooth, weight.unsqueeze(3), groups=c)  # along y: (1, 2B, H, W)
    # Each output is sum_ij kx[i] ky[j] u_ij over U[-1, 1] noise (variance 1/3); with
    # wrap-around a noise pixel may fall under several taps, so fold the kernel first.
    ssq_x = float((_fold(kernel, width) ** 2).sum())
    ssq_y = float((_fold(kernel, height) ** 2).sum())
    expected_std = math.sqrt(ssq_x * ssq_y / 3.0)
    return smooth.view(batch, 2, height, width) * (alpha / expected_std)


def _fold(kernel: torch.Tensor, period: int) -> torch.Tensor:
    """The taps of ``kernel`` summed by position modulo ``period`` (its wrap-around weights)."""
    folded = torch.zeros(period, dtype=kernel.dtype, device=kernel.device)
    index = torch.arange(kernel.numel(), device=kernel.device) % period
    return folded.index_add_(0, index, kernel)


def _wrap_pad(t: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two dims of ``t`` by ``r`` on each side, wrapping around (periodic)."""
    h, w = t.shape[-2:]
    if r <= min(h, w):
        return F.pad(t, (r, r, r, r), mode="circular")
    rows = torch.arange(-r, h + r, device=t.device) % h
    cols = torch.arange(-r, w + r, device=t.device) % w
    return t.index_select(-2, rows).index_select(-1, cols)


def warp(
    x: torch.Tensor,
    angle: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    shift: torch.Tensor,
    displacement: torch.Tensor | None = None,
) -> torch.Tensor:
    """Resample ``x`` (B, C, H, W) under given per-image transforms, in one ``grid_sample``.

    ``angle`` (B,) degrees (positive turns the image clockwise on screen), ``scale``
    (B,) zoom factors, ``shear`` (B,) horizontal shear factors (positive moves the
    lower half right) and ``shift`` (B, 2) pixels (dx right, dy down) define the
    affine map from input to output, about the image centre: scale, then shear,
    then rotate, then shift. ``displacement`` (B, 2, H, W) holds optional extra
    (dx, dy) pixels added to where each output pixel samples from.
    Pixels from outside the image are zero; values are clamped to [0, 1].
    """
    _check_batch(x)
    b, _, h, w = x.shape
    dev, f32 = x.device, torch.float32
    angle, scale, shear, shift = (t.to(dev, f32) for t in (angle, scale, shear, shift))
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Forward map A = R(angle) @ Shear(k) @ scale; sampling needs A^-1 = (1/s) Sh(-k) R(-angle).
    inv_s = 1.0 / scale
    a00 = (cos + shear * sin) * inv_s
    a01 = (sin - shear * cos) * inv_s
    a10 = -sin * inv_s
    a11 = cos * inv_s
    # Pixel offsets from the centre -> affine_grid's [-1, 1] units (align_corners=False).
    dx, dy = shift[:, 0], shift[:, 1]
    hx, hy = w / 2.0, h / 2.0
    theta = torch.stack(
        [
            torch.stack([a00, a01 * (hy / hx), -(a00 * dx + a01 * dy) / hx], 1),
            torch.stack([a10 * (hx / hy), a11, -(a10 * dx + a11 * dy) / hy], 1),
        ],
        1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2) as (x, y)
    if displacement is not None:
        units = torch.tensor([1.0 / hx, 1.0 / hy], dtype=f32, device=dev)
        grid = grid + displacement.to(dev, f32).permute(0, 2, 3, 1) * units
    return _sample(x, grid)


def _sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``x`` resampled bilinearly at ``grid`` (B, H, W, 2), black outside, clamped to [0, 1]."""
    out = F.grid_sample(
        x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.clamp_(0.0, 1.0)


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Randomly transform each image of ``x`` (B, C, H, W), float in [0, 1], background 0.

    Returns a tensor of the same shape, dtype and device, values in [0, 1]. With
    ``cfg.is_identity`` it returns ``x`` itself, untouched. Images not chosen by
    ``cfg.p`` come back bit-for-bit unchanged. For a given ``generator`` state the
    result is deterministic (on CPU).
    """
    _check_batch(x)
    if cfg.is_identity or x.shape[0] == 0:
        return x
    b, _, h, w = x.shape
    device = x.device
    mask = None
    if cfg.p < 1:
        mask = (_uniform((b,), generator, device) + 1) * 0.5 < cfg.p  # (B,) bool
    u = _uniform((b, 5), generator, device)  # angle, scale, shear, dx, dy in [-1, 1)
    displacement = None
    if cfg.elastic_alpha > 0:
        displacement = elastic_field(
            b, h, w, cfg.elastic_alpha, cfg.elastic_sigma, generator, device
        )
    out = warp(
        x,
        angle=u[:, 0] * cfg.rotate,
        scale=1.0 + u[:, 1] * cfg.scale,
        shear=u[:, 2] * cfg.shear,
        shift=u[:, 3:5] * cfg.translate,
        displacement=displacement,
    )
    if mask is not None:
        out = torch.where(mask.view(b, 1, 1, 1), out, x)
    return out


def shift_images(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, max_px: int) -> torch.Tensor:
    """Move image i of ``x`` (B, C, H, W) by whole pixels ``dx[i]`` right, ``dy[i]`` down.

    ``|dx|, |dy| <= max_px``. Vacated pixels are zero. Works on any dtype (uint8 too).
    """
    b, c, h, w = x.shape
    m = int(max_px)
    padded = F.pad(x, (m, m, m, m))  # (B, C, H+2m, W+2m), zeros around
    dev = x.device
    rows = torch.arange(h, device=dev) + m - dy.to(dev, torch.long).view(b, 1)  # (B, H)
    cols = torch.arange(w, device=dev) + m - dx.to(dev, torch.long).view(b, 1)  # (B, W)
    out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * m))  # (B, C, H, W+2m)
    return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))  # (B, C, H, W)


def random_shift(
    x: torch.Tensor, max_px: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image of ``x`` (B, C, H, W) by random whole pixels in [-max_px, max_px] per axis.

    A cheap alternative to :func:`augment_batch` for translation only: no
    interpolation, so pixels keep their exact values. Vacated pixels are zero, so
    apply it before normalisation (black background). ``max_px`` 0 returns ``x``.
    """
    if x.dim() != 4:
        raise DataError(f"random_shift expects a batch (B, C, H, W), got shape {tuple(x.shape)}")
    if isinstance(max_px, bool) or int(max_px) != max_px or max_px < 0:
        raise ConfigError(f"random_shift max_px must be a whole number >= 0, got {max_px!r}")
    m = int(max_px)
    if m == 0 or x.shape[0] == 0:
        return x
    if m >= min(x.shape[2], x.shape[3]):
        raise ConfigError(f"random_shift max_px {m} is not smaller than the image {x.shape[2:]}")
    b = x.shape[0]
    src = generator.device if generator is not None else x.device
    d = torch.randint(-m, m + 1, (2, b), generator=generator, device=src).to(x.device)
    return shift_images(x, d[0], d[1], m)


@dataclass(frozen=True)
class StrokeConfig:
    """Stroke width: a radius in pixels drawn per image, thicker or thinner with equal odds."""

    thicken: int = 0  # max radius of the max pooling (a stroke grows by up to 2 * thicken px)
    thin: int = 0  # max radius of the min pooling (a stroke shrinks by up to 2 * thin px)
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_numbers(self, ("thicken", "thin"))
        if max(self.thicken, self.thin) > 6:
            raise ConfigError(
                f"augment stroke radius is at most 6 pixels, got {max(self.thicken, self.thin)}"
            )

    @property
    def is_identity(self) -> bool:
        return self.p == 0 or (self.thicken == 0 and self.thin == 0)


@dataclass(frozen=True)
class BinarizeConfig:
    """Black and white only: ink where the pixel is above a threshold drawn in [low, high]."""

    low: float = 0.3
    high: float = 0.6
    p: float = 0.0

    def __post_init__(self) -> None:
        _check_numbers(self)
        if not 0 < self.low <= self.high < 1:
            raise ConfigError(
                f"augment binarize thresholds need 0 < low <= high < 1, got {self.low}, {self.high}"
            )

    @property
    def is_identity(self) -> bool:
        return self.p == 0


@dataclass(frozen=True)
class ResampleConfig:
    """Down to a side in [min_side, max_side] pixels and back (area down, nearest or bilinear up)."""

    min_side: int = 0  # 0 = off
    max_side: int = 0
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_numbers(self, ("min_side", "max_side"))
        if self.min_side > self.max_side:
            raise ConfigError(
                f"augment resample min_side {self.min_side} is above max_side {self.max_side}"
            )
        if self.max_side and (self.min_side < 4 or self.max_side > 64):
            raise ConfigError(
                f"augment resample sides must lie in 4..64, got {self.min_side}..{self.max_side}"
            )

    @property
    def is_identity(self) -> bool:
        return self.p == 0 or self.max_side == 0


@dataclass(frozen=True)
class BoxFillConfig:
    """The ink's bounding box stretched towards the whole image, each axis on its own.

    Per axis the box's side and centre move a fraction ``fill * sqrt(u)`` (u uniform in
    [0, 1)) of the way to the full image: 0 keeps the digit, 1 fills the image edge to edge.
    """

    fill: float = 0.0
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_numbers(self)
        if self.fill > 1:
            raise ConfigError(f"augment fill is a fraction in [0, 1], got {self.fill}")

    @property
    def is_identity(self) -> bool:
        return self.p == 0 or self.fill == 0


@dataclass(frozen=True)
class RobustConfig:
    """The composed recipe: box fill, affine + elastic, down-up, stroke width, binarisation."""

    box_fill: BoxFillConfig = BoxFillConfig()
    affine: AugmentConfig = AugmentConfig()
    resample: ResampleConfig = ResampleConfig()
    stroke: StrokeConfig = StrokeConfig()
    binarize: BinarizeConfig = BinarizeConfig()

    @property
    def is_identity(self) -> bool:
        return all(
            c.is_identity
            for c in (self.box_fill, self.affine, self.resample, self.stroke, self.binarize)
        )


def _chosen(
    b: int, p: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(B,) bool: which images a transform applied to a fraction ``p`` of the batch touches."""
    return (_uniform((b,), generator, device) + 1) * 0.5 < p


def _randint(
    low: int,
    high: int,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Whole numbers uniform in [low, high], drawn on the generator's device."""
    src = generator.device if generator is not None else device
    return torch.randint(low, high + 1, shape, generator=generator, device=src).to(device)


def stroke_width(
    x: torch.Tensor, cfg: StrokeConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Thicken (max pooling) or thin (min pooling) the strokes of a fraction ``cfg.p`` of ``x``.

    Each chosen image gets a radius r uniform in 1..thicken (or 1..thin): a (2r+1)-square
    max (min) filter grows (shrinks) every stroke by r pixels on each side. A thinning that
    would keep less than a quarter of an image's ink, or a thickening that would cover
    more than 40% of the image, is not applied to that image: the digit stays readable. One pooling per distinct radius in the batch.
    """
    _check_batch(x)
    if cfg.is_identity or x.shape[0] == 0:
        return x
    b, device = x.shape[0], x.device
    chosen = _chosen(b, cfg.p, generator, device)
    u = _uniform((b,), generator, device)
    both = cfg.thicken and cfg.thin
    grow = u < 0 if both else torch.full((b,), bool(cfg.thicken), device=device)
    r_grow = _randint(1, max(1, cfg.thicken), (b,), generator, device)
    r_thin = _randint(1, max(1, cfg.thin), (b,), generator, device)
    radius = torch.where(grow, r_grow, -r_thin)  # positive: thicken, negative: thin
    radius = torch.where(chosen, radius, torch.zeros_like(radius))
    out = x
    for r in radius.unique().tolist():
        if r == 0:
            continue
        idx = (radius == r).nonzero().flatten()
        part = x.index_select(0, idx)
        k = 2 * abs(r) + 1
        if r > 0:
            changed = F.max_pool2d(part, k, stride=1, padding=abs(r))
            keep = (changed > 0.5).float().mean(dim=(1, 2, 3)) <= 0.4
            changed = torch.where(keep.view(-1, 1, 1, 1), changed, part)
        else:
            changed = -F.max_pool2d(-part, k, stride=1, padding=abs(r))
            keep = changed.sum(dim=(1, 2, 3)) >= 0.25 * part.sum(dim=(1, 2, 3))
            changed = torch.where(keep.view(-1, 1, 1, 1), changed, part)
        if out is x:
            out = x.clone()
        out.index_copy_(0, idx, changed)
    return out


def binarize(
    x: torch.Tensor, cfg: BinarizeConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Turn a fraction ``cfg.p`` of ``x`` into pure 0/1 images at a threshold in [low, high]."""
    _check_batch(x)
    if cfg.is_identity or x.shape[0] == 0:
        return x
    b, device = x.shape[0], x.device
    chosen = _chosen(b, cfg.p, generator, device)
    t = cfg.low + (_uniform((b,), generator, device) + 1) * 0.5 * (cfg.high - cfg.low)
    binary = (x > t.view(b, 1, 1, 1).to(x.dtype)).to(x.dtype)
    return torch.where(chosen.view(b, 1, 1, 1), binary, x)


def down_up(
    x: torch.Tensor, cfg: ResampleConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Resample a fraction ``cfg.p`` of ``x`` to a side in [min_side, max_side] and back.

    Down by area averaging (up by nearest when the side is larger than the image), back
    by nearest (blocky, as a small bitmap scaled up) or bilinear with equal odds. One
    pair of resizes per distinct (side, mode) in the batch.
    """
    _check_batch(x)
    if cfg.is_identity or x.shape[0] == 0:
        return x
    b, _, h, w = x.shape
    device = x.device
    chosen = _chosen(b, cfg.p, generator, device)
    side = _randint(cfg.min_side, cfg.max_side, (b,), generator, device)
    nearest = _uniform((b,), generator, device) < 0
    key = torch.where(chosen, side * 2 + nearest.long(), torch.zeros_like(side))
    out = x
    for k in key.unique().tolist():
        if k == 0:
            continue
        s, near = k // 2, bool(k % 2)
        idx = (key == k).nonzero().flatten()
        part = x.index_select(0, idx)
        small = F.interpolate(part, size=(s, s), mode="area" if s < min(h, w) else "nearest")
        if near:
            back = F.interpolate(small, size=(h, w), mode="nearest")
        else:
            back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        if out is x:
            out = x.clone()
        out.index_copy_(0, idx, back.clamp_(0.0, 1.0))
    return out


def ink_box(x: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """(B, 4) pixel bounds (x0, y0, x1, y1), inclusive, of the pixels above ``threshold``.

    An image without ink gets the whole image.
    """
    h, w = x.shape[-2:]
    ink = x.amax(dim=1) > threshold  # (B, H, W)
    cols, rows = ink.any(dim=1), ink.any(dim=2)  # (B, W), (B, H)

    def bounds(m: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = m.float().argmax(dim=1)
        last = n - 1 - m.flip(1).float().argmax(dim=1)
        empty = ~m.any(dim=1)
        first = torch.where(empty, torch.zeros_like(first), first)
        last = torch.where(empty, torch.full_like(last, n - 1), last)
        return first, last

    x0, x1 = bounds(cols, w)
    y0, y1 = bounds(rows, h)
    return torch.stack([x0, y0, x1, y1], 1)


def box_fill(
    x: torch.Tensor, cfg: BoxFillConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Stretch the ink box of a fraction ``cfg.p`` of ``x`` towards the whole image.

    Width and height move independently (the aspect changes), by ``fill * sqrt(u)`` of
    the way from the box to the image edges; one ``grid_sample`` for the batch.
    """
    _check_batch(x)
    if cfg.is_identity or x.shape[0] == 0:
        return x
    b = x.shape[0]
    chosen = _chosen(b, cfg.p, generator, x.device)
    amount = cfg.fill * ((_uniform((b, 2), generator, x.device) + 1) * 0.5).sqrt()
    amount = torch.where(chosen.view(b, 1), amount, torch.zeros_like(amount))
    return torch.where(chosen.view(b, 1, 1, 1), stretch_box(x, amount), x)


def stretch_box(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Move the ink box of each image of ``x`` a fraction ``amount`` (B, 2) (x, y) to the edges.

    ``amount`` 0 keeps an axis (up to resampling), 1 stretches the ink edge to edge.
    """
    _check_batch(x)
    b, _, h, w = x.shape
    device, f32 = x.device, torch.float32
    amount = amount.to(device, f32).clamp(0.0, 1.0)
    box = ink_box(x).to(f32)
    # Box edges in affine_grid's [-1, 1] units (align_corners=False: pixel i spans i..i+1).
    lo = torch.stack([box[:, 0] * 2 / w - 1, box[:, 1] * 2 / h - 1], 1)  # (B, 2)
    hi = torch.stack([(box[:, 2] + 1) * 2 / w - 1, (box[:, 3] + 1) * 2 / h - 1], 1)
    out_lo = lo + amount * (-1 - lo)
    out_hi = hi + amount * (1 - hi)
    # Output u samples input lo + (u - out_lo) * (hi - lo) / (out_hi - out_lo).
    k = (hi - lo) / (out_hi - out_lo)
    t = lo - out_lo * k
    zero = torch.zeros(b, dtype=f32, device=device)
    theta = torch.stack(
        [torch.stack([k[:, 0], zero, t[:, 0]], 1), torch.stack([zero, k[:, 1], t[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    return _sample(x, grid)


def robust_batch(
    x: torch.Tensor, cfg: RobustConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """All of :class:`RobustConfig` in order: box fill, affine + elastic, down-up, stroke, binarise."""
    _check_batch(x)
    x = box_fill(x, cfg.box_fill, generator)
    x = augment_batch(x, cfg.affine, generator)
    x = down_up(x, cfg.resample, generator)
    x = stroke_width(x, cfg.stroke, generator)
    return binarize(x, cfg.binarize, generator)


# The ``robust`` preset: what users' images do to a digit (see benchmarks/robustness.py).
# Thickening by radius 2 adds 4 pixels to a stroke: a 20-pixel MNIST digit's 2-3 pixel
# strokes become 6-7 pixels, a third of its width.
ROBUST = RobustConfig(
    box_fill=BoxFillConfig(fill=1.0, p=0.2),
    affine=AugmentConfig(
        rotate=15, scale=0.12, shear=0.15, translate=2.5, elastic_alpha=0.8, elastic_sigma=4
    ),
    resample=ResampleConfig(min_side=12, max_side=32, p=0.2),
    stroke=StrokeConfig(thicken=2, thin=1, p=0.3),
    binarize=BinarizeConfig(low=0.2, high=0.7, p=0.2),
)


def make_augmenter(name: str) -> Augmenter:
    """The augmentation recipe called ``name`` as a function (x, generator) -> x.

    ``none`` returns batches unchanged, ``shift`` is :func:`random_shift` by up to
    :data:`SHIFT_PX` pixels, ``light`` and ``strong`` are :func:`augment_batch`
    with :data:`LIGHT` and :data:`STRONG`, ``robust`` is :func:`robust_batch` with
    :data:`ROBUST`.
    """
    if name == "shift":

        def shift(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            return random_shift(x, SHIFT_PX, generator)

        return shift
    if name in PRESETS:
        cfg = PRESETS[name]

        def preset(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            return augment_batch(x, cfg, generator)

        return preset
    if name == "robust":

        def robust(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            return robust_batch(x, ROBUST, generator)

        return robust
    raise ConfigError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENT_NAMES)}")
