"""Real images that are not brain MRI, from installed packages only: a held-out test set, never fitted on.

pydicom's test files (CT, nuclear medicine, ultrasound, an abdominal MRI, a segmentation mask; decoded by
`tumorscan.dicom`, as tumor-infer reads them), the samples bundled in the scikit-image wheel (photos,
textures, a phantom, microscopy, a retina, text, astronomy; none of the ones it would download) and
matplotlib's sample photos. Every colour image comes twice: as it is and turned grey (`NAME_grey`), since
scans are grey. `foreign_images()` is deterministic and reads nothing from the network.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

import numpy as np
from PIL import Image

DICOM_FILES = {
    "ct_head": "J2K_pixelrep_mismatch.dcm",
    "ct_head_2": "693_J2KI.dcm",
    "ct_spine": "CT_small.dcm",
    "nm_bone_scan": "JPEG2000.dcm",
    "us_cardiac": "examples_ybr_color.dcm",
    "us_doppler": "examples_rgb_color.dcm",
    "us_palette": "examples_palette.dcm",
    "mr_abdomen": "examples_overlay.dcm",
    "seg_liver_mask": "liver_1frame.dcm",
}
"""pydicom test files by name (the first frame of a multi-frame file). Its MR_small* files are left out:
small MR slices whose anatomy is not known."""

SKIMAGE_SAMPLES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)
"""`skimage.data` functions whose images ship in the wheel. Left out: those fetched with pooch (`brain` is an
MRI), and the drawn ones (checkerboard, binary blobs, logo, colour wheel)."""

MATPLOTLIB_SAMPLES = {"grace_hopper": "grace_hopper.jpg", "gift_box": "Minduka_Present_Blue_Pack.png"}
"""matplotlib sample photos (its MRI, s1045.ima, is left out)."""


def _image(array: np.ndarray) -> Image.Image:
    """A uint8 or 0-1 float array (H x W grey, H x W x 3 or x 4 colour) as an L or RGB image."""
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.asarray(array, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    return image.convert("RGB") if image.mode not in ("L", "RGB") else image


def _dicom() -> dict[str, Image.Image]:
    from pydicom.data import get_testdata_file

    from tumorscan.dicom import dicom_to_image

    images = {}
    for name, file in DICOM_FILES.items():
        path = get_testdata_file(file, download=False)
        if path is None:
            raise FileNotFoundError(f"pydicom's test file {file} is not installed; reinstall pydicom.")
        image = dicom_to_image(Path(path), file)
        images[f"dicom_{name}"] = image if image.mode in ("L", "RGB") else image.convert("RGB")
    return images


def _skimage() -> dict[str, Image.Image]:
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about optional plugins it does not need here
        return {f"skimage_{name}": _image(getattr(skimage.data, name)()) for name in SKIMAGE_SAMPLES}


def _matplotlib() -> dict[str, Image.Image]:
    from matplotlib import cbook

    images = {}
    for name, file in MATPLOTLIB_SAMPLES.items():
        with cast(IO[bytes], cbook.get_sample_data(file)) as stream:
            images[f"matplotlib_{name}"] = _image(np.asarray(Image.open(stream).convert("RGB")))
    return images


SOURCES: tuple[Callable[[], dict[str, Image.Image]], ...] = (_dicom, _skimage, _matplotlib)


def foreign_images() -> dict[str, Image.Image]:
    """Every foreign image by name (L or RGB), each colour one also as `NAME_grey`: 41 images, sorted."""
    images: dict[str, Image.Image] = {}
    for source in SOURCES:
        for name, image in source().items():
            images[name] = image
            if image.mode == "RGB":
                images[f"{name}_grey"] = image.convert("L")
    return dict(sorted(images.items()))
