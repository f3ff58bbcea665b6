#!/usr/bin/env python3
"""Print a DICOM Structured Report written by tumor-infer --dicom-sr: its header and its content tree.

Usage: scripts/show_sr.py REPORT.dcm
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HEADER = (
    "SOPClassUID",
    "Modality",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "CompletionFlag",
    "VerificationFlag",
)


def _value(item: Any) -> str:
    kind = item.ValueType
    if kind == "CODE":
        code = item.ConceptCodeSequence[0]
        return f"{code.CodeMeaning} ({code.CodingSchemeDesignator} {code.CodeValue})"
    if kind == "NUM":
        measured = item.MeasuredValueSequence[0]
        return f"{measured.NumericValue} [{measured.MeasurementUnitsCodeSequence[0].CodeValue}]"
    if kind in ("TEXT", "UIDREF"):
        return str(item.TextValue if kind == "TEXT" else item.UID)
    if kind == "IMAGE":
        return f"image {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID}"
    return ""


def show(item: Any, depth: int, images: list[int]) -> None:
    for child in item.get("ContentSequence", []):
        if child.ValueType == "IMAGE":
            images[-1] += 1
            continue
        name = child.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in child else ""
        print(
            f"{'  ' * depth}{child.RelationshipType} {child.ValueType} {name}: {_value(child)}".rstrip(": ")
        )
        images.append(0)
        show(child, depth + 1, images)
        if images[-1]:
            print(f"{'  ' * (depth + 1)}(+ {images[-1]} source IMAGE references)")
        images.pop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    import pydicom

    dataset = pydicom.dcmread(parser.parse_args().report)
    for keyword in HEADER:
        print(f"{keyword}: {dataset.get(keyword, '')}")
    evidence = dataset.get("CurrentRequestedProcedureEvidenceSequence", [])
    count = sum(len(s.ReferencedSOPSequence) for e in evidence for s in e.ReferencedSeriesSequence)
    print(f"CurrentRequestedProcedureEvidenceSequence: {count} instances")
    print(f"CONTAINER {dataset.ConceptNameCodeSequence[0].CodeMeaning}")
    show(dataset, 1, [0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
