"""DICOM scans (the [dicom] extra): rescale, windowing, MONOCHROME1, RGB, multi-frame, compressed syntaxes."""

from __future__ import annotations

import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid

from tumorscan.codestream import FrameSize, frame_size
from tumorscan.dicom import dicom_to_image
from tumorscan.errors import (
    DicomAttributeError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    MissingDependencyError,
)
from tumorscan.images import MAX_PIXELS, PEAK_BYTES_PER_PIXEL, load_pixels


def _dicom(
    path: Path,
    pixels: np.ndarray,
    syntax: str = ExplicitVRLittleEndian,
    encoded: bytes | None = None,
    **attributes: Any,
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    dataset.Modality = "MR"
    colour = pixels.ndim == (4 if "NumberOfFrames" in attributes else 3)
    dataset.Rows, dataset.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    dataset.SamplesPerPixel = 3 if colour else 1
    dataset.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        dataset.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = bits, bits, bits - 1
    dataset.PixelRepresentation = int(np.issubdtype(pixels.dtype, np.signedinteger))
    for name, value in attributes.items():
        setattr(dataset, name, value)
    dataset.PixelData = pixels.tobytes() if encoded is None else encapsulate([encoded])
    dataset.save_as(path, enforce_file_format=True)
    return path


def _ramp(height: int = 16, width: int = 20, high: int = 1000) -> np.ndarray:
    return np.linspace(0, high, height * width).reshape(height, width).astype(np.uint16)


def test_min_max_without_a_window(tmp_path: Path) -> None:
    image = dicom_to_image(_dicom(tmp_path / "plain.dcm", _ramp()), "plain.dcm")
    assert image.mode == "L"
    pixels = np.asarray(image)
    assert (pixels.min(), pixels.max()) == (0, 255)
    assert np.all(np.diff(pixels.astype(int).ravel()) >= 0)


def test_rescale_then_window(tmp_path: Path) -> None:
    # stored 0..1000 -> 2 * v - 1000 = -1000..1000; window 0 +/- 500
    path = _dicom(
        tmp_path / "ct.dcm", _ramp(), RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=1000
    )
    pixels = np.asarray(dicom_to_image(path, "ct.dcm")).ravel()
    stored = _ramp().ravel().astype(float)
    real = stored * 2 - 1000
    assert np.all(pixels[real <= -501] == 0)
    assert np.all(pixels[real >= 500] == 255)
    middle = np.abs(real) < 400
    expected = ((real[middle] + 0.5) / 999 + 0.5) * 255
    assert np.abs(pixels[middle] - expected).max() <= 1


def test_multi_valued_window_uses_the_first(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "w.dcm", _ramp(), WindowCenter=[500, 100], WindowWidth=[1001, 50])
    pixels = np.asarray(dicom_to_image(path, "w.dcm"))
    assert pixels.min() == 0 and pixels.max() == 255 and 100 < np.median(pixels) < 155


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    normal = np.asarray(dicom_to_image(_dicom(tmp_path / "m2.dcm", _ramp()), "m2"))
    inverted = np.asarray(
        dicom_to_image(_dicom(tmp_path / "m1.dcm", _ramp(), PhotometricInterpretation="MONOCHROME1"), "m1")
    )
    np.testing.assert_array_equal(inverted, 255 - normal)


def test_rgb_passes_through(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (12, 14, 3), dtype=np.uint8)
    image = dicom_to_image(_dicom(tmp_path / "rgb.dcm", rgb), "rgb.dcm")
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), rgb)


def test_multi_frame_takes_the_middle_frame(tmp_path: Path) -> None:
    ramp = np.arange(80, dtype=np.uint16).reshape(8, 10)  # not flat: a flat frame is refused
    frames = np.stack([ramp + value for value in (100, 500, 900)])
    path = _dicom(tmp_path / "frames.dcm", frames, NumberOfFrames=3, WindowCenter=540, WindowWidth=1000)
    pixels = np.asarray(dicom_to_image(path, "frames.dcm"))
    assert pixels.shape == (8, 10)
    assert np.all(np.abs(pixels.astype(int) - 128) <= 11) and abs(pixels.mean() - 128) <= 1


def test_signed_pixels(tmp_path: Path) -> None:
    signed = (_ramp().astype(np.int32) - 500).astype(np.int16)
    pixels = np.asarray(dicom_to_image(_dicom(tmp_path / "signed.dcm", signed), "signed.dcm"))
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255


def j2k_header(rows: int, columns: int, components: int = 1) -> bytes:
    """A JPEG 2000 codestream's start: SOC and a SIZ segment declaring rows x columns."""
    size = struct.pack(">HIIIIIIIIH", 0, columns, rows, 0, 0, columns, rows, 0, 0, components)
    return b"\xff\x4f\xff\x51" + struct.pack(">H", 38 + 3 * components) + size + b"\x07\x01\x01" * components


def test_compressed_syntax_without_a_decoder_names_it(tmp_path: Path) -> None:
    garbage = j2k_header(16, 20) + bytes(range(256)) * 4  # a JPEG 2000 header, then noise
    path = _dicom(tmp_path / "j2k.dcm", _ramp(), syntax=JPEG2000Lossless, encoded=garbage)
    with pytest.raises(
        ImageError, match=r"j2k\.dcm: cannot decode the pixel data.*JPEG 2000 Image Compression"
    ):
        load_pixels(path, (32, 32))


def test_through_load_pixels_as_path_and_bytes(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "scan.dcm", _ramp())
    from_path, from_bytes = load_pixels(path, (32, 32)), load_pixels(path.read_bytes(), (32, 32))
    assert from_path.shape == (32, 32, 3)
    np.testing.assert_array_equal(from_path, from_bytes)


def test_bad_dicom_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.dcm"
    text.write_text("not a DICOM file", encoding="utf-8")
    with pytest.raises(ImageError, match=r"notes\.dcm: not a readable DICOM file"):
        load_pixels(text, (32, 32))
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(_dicom(tmp_path / "full.dcm", _ramp(64, 64)).read_bytes()[:-2000])
    with pytest.raises(ImageError, match=r"cut\.dcm"):
        load_pixels(truncated, (32, 32))


def test_dicom_without_pixels(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "report.dcm", _ramp())
    from pydicom import dcmread

    dataset = dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)
    with pytest.raises(ImageError, match=r"report\.dcm: the DICOM file holds no image"):
        load_pixels(path, (32, 32))


def test_huge_dicom_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "huge.dcm", _ramp(8, 8), Rows=20_000, Columns=20_000)
    with pytest.raises(ImageTooLargeError, match=r"huge\.dcm: 20000x20000"):
        load_pixels(path, (32, 32))


def test_missing_pydicom_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _dicom(tmp_path / "scan.dcm", _ramp())
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'tumorscan\[dicom\]'"):
        load_pixels(path, (32, 32))


def test_dicom_is_classified(tflite_fp32: Path, tmp_path: Path) -> None:
    from tumorscan import Classifier

    prediction = Classifier.load(tflite_fp32).predict(_dicom(tmp_path / "scan.dcm", _ramp()))
    assert prediction.source.endswith("scan.dcm")


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("WindowCenter", "NaN!"), ("RescaleSlope", "abc"), ("NumberOfFrames", "x#1!"), ("Rows", "1e999")],
)
def test_non_numeric_attributes_are_typed_errors(tmp_path: Path, attribute: str, value: str) -> None:
    path = _dicom(tmp_path / "odd.dcm", _ramp(), WindowWidth=400, WindowCenter=200)
    from pydicom import dcmread

    dataset = dcmread(path)
    dataset.add_new(attribute, "LO", value)  # written as text, so any characters go through
    dataset.save_as(path)
    with pytest.raises(DicomAttributeError, match=rf"odd\.dcm: the DICOM attribute {attribute} is not"):
        load_pixels(path, (32, 32))


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"WindowCenter": "NaN", "WindowWidth": 400}, "not all finite"),
        ({"RescaleSlope": "1e308"}, "not all finite"),
        ({"WindowCenter": 90_000, "WindowWidth": 10}, "flat"),
    ],
)
def test_degenerate_dicom_pixels_are_refused_without_warnings(
    tmp_path: Path, attributes: dict[str, Any], reason: str
) -> None:
    path = _dicom(tmp_path / "odd.dcm", _ramp(), **attributes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(EmptyImageError, match=rf"odd\.dcm: .*{reason}"):
            load_pixels(path, (32, 32))


def test_codestream_larger_than_the_header_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = j2k_header(12_000, 12_000) + bytes(512)  # a few hundred bytes claiming 144 megapixels
    path = _dicom(tmp_path / "bomb.dcm", _ramp(64, 64), syntax=JPEG2000Lossless, encoded=bomb)
    assert path.stat().st_size < 2000
    with pytest.raises(ImageTooLargeError, match=r"bomb\.dcm: the compressed frame declares 12000x12000"):
        load_pixels(path, (32, 32))
    liar = _dicom(tmp_path / "liar.dcm", _ramp(64, 64), syntax=JPEG2000Lossless, encoded=j2k_header(80, 64))
    with pytest.raises(ImageError, match=r"liar\.dcm: the compressed frame is 64x80 \(1 components\) but"):
        load_pixels(liar, (32, 32))


def test_jpeg_and_jp2_codestream_sizes() -> None:
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x0b\x08\x01\x02\x03\x04\x03"
    assert frame_size(jpeg) == FrameSize(0x0102, 0x0304, 3)
    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x10ftypjp2 \x00\x00\x00\x00"
    jp2 += b"\x00\x00\x00\x00jp2c" + j2k_header(7, 9)
    assert frame_size(jp2) == FrameSize(7, 9, 1)
    assert frame_size(b"\xff\xd8\xff\xe0\x00\x04") is None and frame_size(b"RLE?") is None


PEAK_CHILD = """
import sys
from tumorscan.images import load_pixels
import tumorscan.dicom, pydicom.pixels

def peak():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))

before = peak()
load_pixels(sys.argv[1], (224, 224))
print(peak() - before)
"""


@pytest.mark.slow
def test_peak_memory_of_the_largest_accepted_dicom_stays_within_the_bound(tmp_path: Path) -> None:
    side = 8000  # 64 megapixels, the largest scan accepted
    ramp = (np.arange(side * side, dtype=np.uint32) % 4096).astype(np.uint16).reshape(side, side)
    path = _dicom(tmp_path / "largest.dcm", ramp)
    del ramp
    done = subprocess.run(
        [sys.executable, "-c", PEAK_CHILD, str(path)], capture_output=True, text=True, check=True
    )
    assert int(done.stdout) < PEAK_BYTES_PER_PIXEL * MAX_PIXELS


def test_a_deflate_bomb_is_refused_before_it_is_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zlib

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    import tumorscan.dicom

    limit = 8 << 20  # the real limit is 512 MB; a smaller one keeps the test fast
    monkeypatch.setattr(tumorscan.dicom, "MAX_INFLATED_BYTES", limit)
    small = _dicom(tmp_path / "small.dcm", _ramp(), syntax=DeflatedExplicitVRLittleEndian).read_bytes()
    assert load_pixels(small, (32, 32)).shape == (32, 32, 3)  # a genuine deflated file reads
    (meta_length,) = struct.unpack_from("<I", small, 140)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflater.compress(bytes(limit + (1 << 20))) + deflater.flush()
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(small[: 144 + meta_length] + body)
    assert bomb.stat().st_size < limit // 500
    with pytest.raises(
        ImageTooLargeError, match=r"bomb\.dcm: the deflated DICOM data inflates to over 8,388,608"
    ):
        load_pixels(bomb, (32, 32))
