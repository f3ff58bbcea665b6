"""The [dicom] extra's decoders: every valid file of pydicom's own test data with pixel data decodes.

pydicom ships its test files inside the package (pydicom/data/test_files); they are read from there, never
downloaded (`pydicom.data.get_testdata_files` would also try to fetch more).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from tumorscan.dicom import dicom_to_image
from tumorscan.errors import TumorscanError
from tumorscan.images import load_pixels

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"

REFUSED = {
    "JPEG-lossy.dcm": "bad_image",  # invalid SOS parameters for sequential JPEG (JPGExtended.dcm is its fix)
    "JPEG2000-embedded-sequence-delimiter.dcm": "image_too_large",  # a frame declaring 3.7e9 rows
    "MR_truncated.dcm": "bad_image",  # pixel data shorter than Rows x Columns
    "badVR.dcm": "bad_dicom_attribute",  # NumberOfFrames '1A'
    "meta_missing_tsyntax.dcm": "bad_image",  # no transfer syntax in the file meta
    "nested_priv_SQ.dcm": "bad_image",  # no BitsAllocated
}
"""pydicom's test files that are malformed on purpose, and the code each gets."""


def _with_pixel_data() -> list[Path]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(TEST_FILES.glob("**/*.dcm")):
            if "PixelData" in pydicom.dcmread(path, force=True, specific_tags=["PixelData"]):
                found.append(path)
    return found


def test_every_valid_test_file_decodes() -> None:
    files = _with_pixel_data()
    assert len(files) >= 60
    refused: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            try:
                image = dicom_to_image(path, path.name)
            except TumorscanError as exc:
                refused[path.name] = exc.code
            else:
                assert image.mode in ("L", "RGB") and min(image.size) > 0
    assert refused == {name: code for name, code in REFUSED.items() if (TEST_FILES / name).exists()}


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51"),  # JPEG Extended 12-bit
        ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70"),  # JPEG Lossless SV1
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),  # JPEG-LS lossless
        ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81"),  # JPEG-LS near-lossless
        ("GDCMJ2K_TextGBR.dcm", "1.2.840.10008.1.2.4.90"),  # JPEG 2000 that Pillow cannot open
    ],
)
def test_syntaxes_archives_use_decode_to_the_uncompressed_pixels(name: str, syntax: str) -> None:
    path = TEST_FILES / name
    dataset = pydicom.dcmread(path)
    assert dataset.file_meta.TransferSyntaxUID == syntax
    pixels = load_pixels(path, (32, 32))
    assert pixels.shape == (32, 32, 3) and pixels.std() > 1  # an image, not a flat frame


def test_lossless_files_decode_exactly() -> None:
    """The JPEG-LS lossless MR slice equals pydicom's uncompressed copy of the same slice."""
    lossless = dicom_to_image(TEST_FILES / "MR_small_jpeg_ls_lossless.dcm", "jls")
    original = dicom_to_image(TEST_FILES / "MR_small.dcm", "raw")
    assert list(lossless.getdata()) == list(original.getdata())


def test_committed_samples_for_the_emulated_pi() -> None:
    """tests/data/dicom (the emulated Pi check classifies it) holds a JPEG Lossless and a JPEG-LS file."""
    syntaxes = {pydicom.dcmread(path).file_meta.TransferSyntaxUID for path in DATA.glob("*.dcm")}
    assert syntaxes == {"1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80"}
    for path in DATA.glob("*.dcm"):
        assert load_pixels(path, (32, 32)).shape == (32, 32, 3)
