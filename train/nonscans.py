"""Images that are not brain MRI, made locally (numpy, PIL) or shipped with matplotlib: nothing is downloaded.

They measure whether a model's input checks and confidence flag foreign inputs: photos, documents, charts,
noise, flat images, colour images and shapes. `non_mri_images()` is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, cast

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

SIZE = 256
WORDS = ("the", "patient", "was", "seen", "in", "clinic", "today", "and", "report", "follows", "tests")


def _canvas(colour: tuple[int, int, int] = (255, 255, 255)) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (SIZE, SIZE), colour)
    return image, ImageDraw.Draw(image)


def _from_array(array: NDArray[np.floating]) -> Image.Image:
    """A float array in 0-1 (H x W grey or H x W x 3) as an RGB image."""
    scaled = np.clip(array * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled).convert("RGB")


def _gradients() -> dict[str, Image.Image]:
    ramp = np.linspace(0, 1, SIZE)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    radial = np.hypot(x - 0.5, y - 0.5)
    return {
        "gradient_horizontal": _from_array(np.tile(ramp, (SIZE, 1))),
        "gradient_radial": _from_array(1 - radial * 1.4),
        "gradient_sky": _from_array(np.stack([0.3 + 0.4 * y, 0.5 + 0.3 * y, 0.9 - 0.1 * y], axis=2)),
        "gradient_sunset": _from_array(np.stack([0.9 - 0.2 * y, 0.4 + 0.2 * x, 0.2 + 0.3 * y], axis=2)),
    }


def _text_page(font_size: int, ink: int, paper: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image, draw = _canvas((paper,) * 3)
    font = ImageFont.load_default(size=font_size)
    for top in range(8, SIZE - font_size, int(font_size * 1.5)):
        line = " ".join(rng.choice(WORDS, size=8))
        draw.text((8, top), line, fill=(ink,) * 3, font=font)
    return image


def _texts() -> dict[str, Image.Image]:
    return {
        "text_page_small": _text_page(10, 0, 255, 0),
        "text_page_large": _text_page(18, 0, 255, 1),
        "text_page_grey": _text_page(12, 60, 230, 2),
        "text_terminal": _text_page(12, 220, 10, 3),
    }


def _charts() -> dict[str, Image.Image]:
    rng = np.random.default_rng(4)
    charts = {}
    image, draw = _canvas()
    for i, height in enumerate(rng.uniform(30, 200, size=8)):
        draw.rectangle((20 + i * 28, 230 - height, 40 + i * 28, 230), fill=(40, 90, 200))
    draw.line((15, 230, 245, 230), fill=(0, 0, 0), width=2)
    charts["chart_bars"] = image
    image, draw = _canvas()
    points = [(10 + i * 30, 128 + 80 * np.sin(i / 1.3)) for i in range(9)]
    draw.line(points, fill=(200, 30, 30), width=3)
    draw.line((10, 240, 250, 240), fill=(0, 0, 0))
    draw.line((10, 10, 10, 240), fill=(0, 0, 0))
    charts["chart_line"] = image
    image, draw = _canvas()
    start = 0.0
    for share, colour in zip(
        (0.4, 0.3, 0.2, 0.1), ((230, 80, 60), (60, 160, 80), (70, 90, 220), (240, 200, 40)), strict=True
    ):
        draw.pieslice((28, 28, 228, 228), start, start + 360 * share, fill=colour)
        start += 360 * share
    charts["chart_pie"] = image
    image, draw = _canvas()
    for x, y in rng.uniform(20, 236, size=(80, 2)):
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(20, 20, 20))
    charts["chart_scatter"] = image
    return charts


def _noise() -> dict[str, Image.Image]:
    rng = np.random.default_rng(5)
    salt = (rng.random((SIZE, SIZE)) > 0.5).astype(float)
    return {
        "noise_rgb": _from_array(rng.random((SIZE, SIZE, 3))),
        "noise_grey": _from_array(rng.random((SIZE, SIZE))),
        "noise_gaussian_dark": _from_array(np.abs(rng.normal(0.1, 0.15, (SIZE, SIZE)))),
        "noise_salt_pepper": _from_array(salt),
    }


def _flats() -> dict[str, Image.Image]:
    return {
        f"flat_{name}": Image.new("RGB", (SIZE, SIZE), colour)
        for name, colour in (
            ("white", (255, 255, 255)),
            ("black", (0, 0, 0)),
            ("grey", (128, 128, 128)),
            ("red", (200, 30, 30)),
        )
    }


def _colours() -> dict[str, Image.Image]:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    hue = np.stack(
        [np.sin(6 * x) * 0.5 + 0.5, np.sin(6 * x + 2) * 0.5 + 0.5, np.sin(6 * x + 4) * 0.5 + 0.5], 2
    )
    checker = ((x * 8).astype(int) + (y * 8).astype(int)) % 2
    blocks, draw = _canvas((20, 20, 20))
    for i, colour in enumerate(((255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 255, 0))):
        draw.rectangle((20 + i * 55, 40, 65 + i * 55, 220), fill=colour)
    return {
        "colour_rainbow": _from_array(hue),
        "colour_checker": _from_array(np.stack([checker, 1 - checker, 0.5 * np.ones_like(x)], axis=2)),
        "colour_blocks": blocks,
        "colour_tinted_disc": _from_array(
            np.stack([(np.hypot(x - 0.5, y - 0.5) < 0.35) * c for c in (0.9, 0.5, 0.2)], 2)
        ),
    }


def _shapes() -> dict[str, Image.Image]:
    rng = np.random.default_rng(6)
    circles, draw = _canvas((255, 255, 255))
    for x, y, r in rng.uniform((20, 20, 5), (236, 236, 30), size=(12, 3)):
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(0, 0, 0), width=2)
    boxes, draw = _canvas((230, 230, 230))
    for x, y, w, h in rng.uniform((0, 0, 20, 20), (200, 200, 80, 80), size=(8, 4)):
        draw.rectangle((x, y, x + w, y + h), fill=(int(x) % 255, 100, int(y) % 255))
    grid, draw = _canvas((0, 0, 0))
    for step in range(0, SIZE, 16):
        draw.line((step, 0, step, SIZE), fill=(255, 255, 255))
        draw.line((0, step, SIZE, step), fill=(255, 255, 255))
    star, draw = _canvas((255, 255, 255))
    angles = np.linspace(0, 2 * np.pi, 11)[:-1]
    radii = np.where(np.arange(10) % 2, 40, 110)
    draw.polygon(
        [(128 + r * np.cos(a), 128 + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)],
        fill=(0, 0, 0),
    )
    return {"shapes_circles": circles, "shapes_boxes": boxes, "shapes_grid": grid, "shapes_star": star}


def _matplotlib_samples() -> dict[str, Image.Image]:
    """Photos and maps that matplotlib ships (its MRI sample, s1045.ima, is left out on purpose)."""
    from matplotlib import cbook

    images = {}
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        with cast(IO[bytes], cbook.get_sample_data(name)) as stream:
            images[f"sample_{name.split('.')[0].lower()}"] = Image.open(stream).convert("RGB")
    for name, key in (("topobathy.npz", "topo"), ("jacksboro_fault_dem.npz", "elevation")):
        relief = np.asarray(
            cast(Any, cbook.get_sample_data(name))[key], dtype=float
        )  # matplotlib loads .npz itself
        images[f"sample_{key}"] = _from_array((relief - relief.min()) / np.ptp(relief))
    return images


SOURCES: tuple[Callable[[], dict[str, Image.Image]], ...] = (
    _gradients,
    _texts,
    _charts,
    _noise,
    _flats,
    _colours,
    _shapes,
    _matplotlib_samples,
)


def non_mri_images() -> dict[str, Image.Image]:
    """Every non-MRI image by name (photos, documents, charts, noise, flat, colour, shapes): 33 images."""
    images: dict[str, Image.Image] = {}
    for source in SOURCES:
        images.update(source())
    return images
