"""Calibration data for post-training quantization: one seeded, stratified scan set for every quantizer."""

from tumorscan.calibration.feeds import OnnxCalibrationReader, tflite_representative_dataset
from tumorscan.calibration.selection import (
    MIN_RECOMMENDED,
    CalibrationEntry,
    CalibrationSet,
    CalibrationWarning,
    select_calibration,
    stratified_quotas,
)

__all__ = [
    "MIN_RECOMMENDED",
    "CalibrationEntry",
    "CalibrationSet",
    "CalibrationWarning",
    "OnnxCalibrationReader",
    "select_calibration",
    "stratified_quotas",
    "tflite_representative_dataset",
]
