"""Batched augmentation: shapes, ranges, determinism, identity, geometry, masks, validation."""

from __future__ import annotations

import pytest
import torch

from mnist_classifier.data import augment
from mnist_classifier.data.augment import (
    LIGHT,
    STRONG,
    AugmentConfig,
    augment_batch,
    elastic_field,
    make_augmenter,
    random_shift,
    warp,
)
from mnist_classifier.errors import ConfigError, DataError

CONFIGS = {
    "light": LIGHT,
    "strong": STRONG,
    "translate": AugmentConfig(translate=3),
    "elastic": AugmentConfig(elastic_alpha=1.0, elastic_sigma=3),
    "half": AugmentConfig(rotate=10, p=0.5),
}


def digits(n: int = 64, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Synthetic 'digits': random strokes of ink (some exactly 1.0) inside rows/cols 6..21."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28, dtype=dtype)
    ink = torch.rand(n, 1, 16, 16, generator=g, dtype=dtype)
    x[:, :, 6:22, 6:22] = torch.where(ink > 0.7, torch.ones_like(ink), ink * (ink > 0.4))
    return x


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(B, 2) centre of mass (x, y) in pixels of a (B, 1, H, W) batch."""
    h, w = x.shape[-2:]
    mass = x.sum(dim=(1, 2, 3))
    cx = (x.sum(dim=(1, 2)) * torch.arange(w, dtype=x.dtype)).sum(1) / mass
    cy = (x.sum(dim=(1, 3)) * torch.arange(h, dtype=x.dtype)).sum(1) / mass
    return torch.stack([cx, cy], 1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_and_range_are_kept(name: str, dtype: torch.dtype) -> None:
    x = digits(dtype=dtype)
    out = augment_batch(x, CONFIGS[name], gen(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_seed_same_batch_other_seed_other_batch(name: str) -> None:
    x = digits()
    a = augment_batch(x, CONFIGS[name], gen(1))
    b = augment_batch(x, CONFIGS[name], gen(1))
    c = augment_batch(x, CONFIGS[name], gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_zero_magnitudes_return_the_input_itself() -> None:
    x = digits()
    cfg = AugmentConfig(elastic_sigma=2.0, p=0.5)
    assert cfg.is_identity
    assert augment_batch(x, cfg, gen(0)) is x


def test_p_zero_is_identity_whatever_the_magnitudes() -> None:
    x = digits()
    cfg = AugmentConfig(rotate=30, translate=3, elastic_alpha=2, p=0)
    assert cfg.is_identity
    assert torch.equal(augment_batch(x, cfg, gen(0)), x)
    assert not AugmentConfig(rotate=30).is_identity


def test_images_not_chosen_by_p_are_bit_for_bit_unchanged() -> None:
    x = digits(200)
    out = augment_batch(x, AugmentConfig(rotate=15, translate=2, p=0.5), gen(3))
    same = (out == x).flatten(1).all(1)
    # Every image moves under a random rotation+shift, so unchanged ones are the unchosen ones.
    assert 60 < int(same.sum()) < 140


def test_integer_shift_moves_the_centre_of_mass_by_that_amount() -> None:
    x = digits(8)
    b = x.shape[0]
    ones, zeros = torch.ones(b), torch.zeros(b)
    shift = torch.tensor([[3.0, -2.0]]).expand(b, 2)
    out = warp(x, angle=zeros, scale=ones, shear=zeros, shift=shift)
    moved = centre_of_mass(out) - centre_of_mass(x)
    torch.testing.assert_close(moved, shift, atol=1e-3, rtol=0)
    # A whole-pixel shift samples pixel centres: the same as rolling the image.
    torch.testing.assert_close(out, torch.roll(x, shifts=(-2, 3), dims=(2, 3)), atol=1e-5, rtol=0)


def test_random_translation_stays_within_its_range_and_varies() -> None:
    x = digits(200)
    out = augment_batch(x, AugmentConfig(translate=2), gen(0))
    moved = centre_of_mass(out) - centre_of_mass(x)
    assert moved.abs().max() <= 2.05
    assert moved.abs().max() > 1.5  # the range is used, not just a tiny jitter
    assert moved.std(0).min() > 0.8  # uniform on [-2, 2] has std 1.15


def test_positive_angle_turns_clockwise_and_shear_moves_the_bottom_right() -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 14, 20] = 1.0  # a dot right of the centre (the centre is at 13.5, 13.5)
    one, zero = torch.ones(1), torch.zeros(1)
    rot = warp(x, angle=torch.tensor([90.0]), scale=one, shear=zero, shift=torch.zeros(1, 2))
    assert rot[0, 0, 20, 13] > 0.99  # now below the centre: clockwise with y pointing down
    # On a non-square image too: centre (14.5, 9.5); (+2.5, +0.5) turns to (-0.5, +2.5).
    wide = torch.zeros(1, 1, 20, 30)
    wide[0, 0, 10, 17] = 1.0
    rot = warp(wide, angle=torch.tensor([90.0]), scale=one, shear=zero, shift=torch.zeros(1, 2))
    assert rot[0, 0, 12, 14] > 0.99
    y = torch.zeros(1, 1, 28, 28)
    y[0, 0, 21, 10] = 1.0  # 7.5 px below the centre
    sheared = warp(y, angle=zero, scale=one, shear=torch.tensor([0.4]), shift=torch.zeros(1, 2))
    torch.testing.assert_close(
        centre_of_mass(sheared), torch.tensor([[10 + 0.4 * 7.5, 21.0]]), atol=1e-3, rtol=0
    )


def test_scale_factor_grows_the_ink_about_the_centre() -> None:
    x = digits(16)
    b = x.shape[0]
    zeros = torch.zeros(b)
    out = warp(x, angle=zeros, scale=torch.full((b,), 1.5), shear=zeros, shift=torch.zeros(b, 2))

    def spread(t: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(28, dtype=t.dtype) - 13.5
        return ((t.sum(dim=(1, 2)) * pos**2).sum(1) / t.sum(dim=(1, 2, 3))).sqrt()

    torch.testing.assert_close(spread(out) / spread(x), torch.full((b,), 1.5), atol=0.05, rtol=0)


def test_elastic_field_has_rms_alpha_and_is_smooth() -> None:
    field = elastic_field(256, 28, 28, alpha=1.5, sigma=4.0, generator=gen(0))
    assert field.shape == (256, 2, 28, 28)
    assert abs(float(field.std()) - 1.5) < 0.1
    # The border is as strong as the middle (wrap-around smoothing, no edge fade).
    assert abs(float(field[..., 0, :].std()) - 1.5) < 0.15
    # Neighbouring displacements move together: a smooth field, not per-pixel noise.
    step = field[..., 1:] - field[..., :-1]
    assert float(step.std()) < 0.3 * float(field.std())


def test_random_shift_is_a_whole_pixel_roll_within_range() -> None:
    x = digits(100)
    out = random_shift(x, 2, gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[i], torch.roll(x[i], (dy, dx), dims=(1, 2)))
        ]
        assert matches, f"image {i} is not a shift of its input by at most 2 px"
        seen.update(matches)
    assert len(seen) >= 20  # nearly all 25 shifts occur in 100 images
    assert torch.equal(out, random_shift(x, 2, gen(0)))
    assert not torch.equal(out, random_shift(x, 2, gen(1)))


def test_random_shift_works_on_uint8_and_zero_is_identity() -> None:
    x = (digits(10) * 255).to(torch.uint8)
    out = random_shift(x, 3, gen(0))
    assert out.dtype == torch.uint8 and int(out.sum()) == int(x.sum())  # ink kept, not blurred
    assert random_shift(x, 0, gen(0)) is x


@pytest.mark.parametrize("max_px", [-1, 1.5, 28])
def test_random_shift_rejects_bad_amounts(max_px: float) -> None:
    with pytest.raises(ConfigError, match="max_px"):
        random_shift(digits(2), max_px, gen(0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"rotate": -1}, "rotate"),
        ({"scale": -0.1}, "scale"),
        ({"shear": -0.1}, "shear"),
        ({"translate": -2}, "translate"),
        ({"elastic_alpha": -1}, "elastic_alpha"),
        ({"elastic_sigma": 0}, "elastic_sigma"),
        ({"p": -0.5}, "p"),
        ({"p": 1.5}, "p"),
        ({"scale": 1.0}, "scale"),
        ({"rotate": 200}, "rotate"),
        ({"translate": float("nan")}, "translate"),
        ({"rotate": "10"}, "rotate"),
    ],
)
def test_config_validation_names_the_bad_value(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        AugmentConfig(**values)
    assert "\n" not in str(info.value)


def test_config_from_dict_round_trips_and_refuses_unknown_keys() -> None:
    assert AugmentConfig.from_dict(STRONG.to_dict()) == STRONG
    with pytest.raises(ConfigError, match="rotation"):
        AugmentConfig.from_dict({"rotation": 5})


def test_bad_input_batch_is_refused() -> None:
    with pytest.raises(DataError, match="float batch"):
        augment_batch(torch.zeros(4, 28, 28), LIGHT, gen(0))
    with pytest.raises(DataError, match="float batch"):
        augment_batch(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), LIGHT, gen(0))


@pytest.mark.parametrize("name", augment.AUGMENT_NAMES)
def test_named_augmenters(name: str) -> None:
    x = digits(16)
    fn = make_augmenter(name)
    out = fn(x, gen(0))
    assert out.shape == x.shape
    assert torch.equal(out, x) == (name == "none")
    with pytest.raises(ConfigError, match="unknown augmentation"):
        make_augmenter("extreme")


def test_empty_batch() -> None:
    x = torch.zeros(0, 1, 28, 28)
    assert augment_batch(x, STRONG, gen(0)).shape == x.shape
    assert random_shift(x, 2, gen(0)).shape == x.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_drives_a_cuda_batch_like_a_cpu_one() -> None:
    x = digits(32)
    cpu = augment_batch(x, STRONG, gen(5))
    cuda = augment_batch(x.cuda(), STRONG, gen(5))
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=0)
    shifted = random_shift(x.cuda(), 2, gen(5))
    assert torch.equal(shifted.cpu(), random_shift(x, 2, gen(5)))


# --- What users' images do to a digit: stroke width, binarisation, down-up, box filling ---

from mnist_classifier.data.augment import (  # noqa: E402
    ROBUST,
    BinarizeConfig,
    BoxFillConfig,
    ResampleConfig,
    RobustConfig,
    StrokeConfig,
    binarize,
    box_fill,
    down_up,
    ink_box,
    robust_batch,
    stretch_box,
    stroke_width,
)


def strokes(n: int = 32) -> torch.Tensor:
    """Digit-like images: a 3-pixel wide bar and a cross stroke of varying length, grey edges."""
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        top = 4 + i % 5
        x[i, 0, top:24, 12:15] = 1.0
        x[i, 0, top:24, 11] = 0.5
        x[i, 0, 14:17, 8 : 12 + i % 8] = 1.0
    return x


TRANSFORMS = {
    "thicken": (stroke_width, StrokeConfig(thicken=2)),
    "thin": (stroke_width, StrokeConfig(thin=2, p=0.5)),
    "stroke": (stroke_width, StrokeConfig(thicken=2, thin=1, p=0.5)),
    "binarize": (binarize, BinarizeConfig(low=0.2, high=0.7, p=1.0)),
    "down_up": (down_up, ResampleConfig(min_side=10, max_side=32)),
    "box_fill": (box_fill, BoxFillConfig(fill=1.0)),
    "robust": (robust_batch, ROBUST),
}
ZERO = {
    "thicken": StrokeConfig(),
    "thin": StrokeConfig(thicken=2, thin=1, p=0),
    "stroke": StrokeConfig(thicken=0, thin=0, p=1),
    "binarize": BinarizeConfig(p=0),
    "down_up": ResampleConfig(),
    "box_fill": BoxFillConfig(fill=0.0, p=1),
    "robust": RobustConfig(),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_new_transforms_keep_shape_dtype_and_range(name: str, dtype: torch.dtype) -> None:
    fn, cfg = TRANSFORMS[name]
    x = strokes().to(dtype)
    out = fn(x, cfg, gen(0))
    assert out.shape == x.shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    assert torch.equal(x, strokes().to(dtype))  # the input is not modified in place


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_new_transforms_are_deterministic_by_seed(name: str) -> None:
    fn, cfg = TRANSFORMS[name]
    x = strokes()
    assert torch.equal(fn(x, cfg, gen(5)), fn(x, cfg, gen(5)))
    assert not torch.equal(fn(x, cfg, gen(5)), fn(x, cfg, gen(6)))


@pytest.mark.parametrize("name", list(ZERO))
def test_new_transforms_at_zero_magnitude_return_the_input(name: str) -> None:
    fn, _ = TRANSFORMS[name]
    cfg = ZERO[name]
    assert cfg.is_identity
    x = strokes()
    assert fn(x, cfg, gen(0)) is x
    assert fn(torch.zeros(0, 1, 28, 28), TRANSFORMS[name][1], gen(0)).shape == (0, 1, 28, 28)


def ink_area(x: torch.Tensor) -> torch.Tensor:
    return (x > 0.5).flatten(1).sum(1)


def test_thickening_grows_and_thinning_shrinks_every_stroke() -> None:
    x = strokes()
    thick = stroke_width(x, StrokeConfig(thicken=2), gen(0))
    thin = stroke_width(x, StrokeConfig(thin=1), gen(0))
    assert (ink_area(thick) > ink_area(x)).all()
    assert (ink_area(thin) < ink_area(x)).all()
    assert (ink_area(thin) > 0).all()  # a 3-pixel stroke survives radius 1
    # Max pooling never lowers a pixel, min pooling never raises one.
    assert (thick >= x).all() and (thin <= x).all()
    # Radius 1 or 2 (drawn per image) makes the 3-pixel bar 5 or 7 pixels wide.
    widths = (thick[:, 0, 20] > 0.5).sum(1)
    assert set(widths.tolist()) == {5, 7}


def test_thinning_that_would_erase_a_digit_is_skipped_and_p_picks_images() -> None:
    x = torch.zeros(4, 1, 28, 28)
    x[:, 0, 5:23, 14] = 1.0  # one-pixel line: min pooling would remove it all
    assert torch.equal(stroke_width(x, StrokeConfig(thin=2), gen(0)), x)
    many = strokes(200)
    out = stroke_width(many, StrokeConfig(thicken=1, p=0.5), gen(1))
    changed = (out != many).flatten(1).any(1)
    assert 60 < int(changed.sum()) < 140


def test_binarize_gives_only_zero_and_one_at_a_threshold_in_range() -> None:
    x = torch.linspace(0, 1, 28 * 28).view(1, 1, 28, 28).repeat(50, 1, 1, 1)
    out = binarize(x, BinarizeConfig(low=0.3, high=0.6, p=1.0), gen(0))
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert (out[x <= 0.3] == 0).all() and (out[x > 0.6] == 1).all()
    thresholds = 1 - out.flatten(1).mean(1)  # fraction of the ramp below the threshold
    assert thresholds.min() >= 0.29 and thresholds.max() <= 0.61 and thresholds.std() > 0.03


def test_down_up_with_nearest_is_blocky_and_keeps_the_ink() -> None:
    x = strokes(64)
    out = down_up(x, ResampleConfig(min_side=14, max_side=14), gen(0))
    blocks = out.view(64, 1, 14, 2, 14, 2)
    blocky = (blocks == blocks[:, :, :, :1, :, :1]).flatten(1).all(1)
    assert 10 < int(blocky.sum()) < 54  # nearest for about half, bilinear for the others
    mass_in, mass_out = x.sum(dim=(1, 2, 3)), out.sum(dim=(1, 2, 3))
    assert ((mass_out - mass_in).abs() < 0.15 * mass_in).all()


def test_stretch_box_fills_the_image_and_changes_the_aspect() -> None:
    x = strokes(8)
    full = stretch_box(x, torch.ones(8, 2))
    box = ink_box(full)
    assert (box[:, :2] <= 1).all() and (box[:, 2:] >= 26).all()
    wide = stretch_box(x, torch.tensor([[1.0, 0.0]]).repeat(8, 1))
    before, after = ink_box(x), ink_box(wide)
    assert (after[:, 0] <= 1).all() and (after[:, 2] >= 26).all()  # width filled
    assert ((after[:, 1] - before[:, 1]).abs() <= 1).all()  # height kept
    assert ((after[:, 3] - before[:, 3]).abs() <= 1).all()
    # Random fills only ever grow the box.
    grown = ink_box(box_fill(x, BoxFillConfig(fill=1.0), gen(0)))
    assert (grown[:, :2] <= ink_box(x)[:, :2]).all() and (grown[:, 2:] >= ink_box(x)[:, 2:]).all()


def test_ink_box_of_an_empty_image_is_the_whole_image() -> None:
    assert ink_box(torch.zeros(1, 1, 28, 28)).tolist() == [[0, 0, 27, 27]]
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 3:9, 5:20] = 1
    assert ink_box(x).tolist() == [[5, 3, 19, 8]]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: StrokeConfig(thicken=-1), "thicken"),
        (lambda: StrokeConfig(thin=1.5), "thin"),
        (lambda: StrokeConfig(thicken=9), "radius"),
        (lambda: StrokeConfig(p=2), "p"),
        (lambda: BinarizeConfig(low=0.8, high=0.5), "binarize"),
        (lambda: BinarizeConfig(p=float("nan")), "p"),
        (lambda: ResampleConfig(min_side=20, max_side=10), "min_side"),
        (lambda: ResampleConfig(min_side=2, max_side=10), "sides"),
        (lambda: BoxFillConfig(fill=1.5), "fill"),
        (lambda: BoxFillConfig(fill="1"), "fill"),
    ],
)
def test_new_configs_refuse_bad_values_in_one_line(make, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        make()
    assert "\n" not in str(info.value)
