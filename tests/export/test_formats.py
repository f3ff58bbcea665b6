"""The table of formats and modes: names, combinations and output paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumorscan.export.formats import TARGETS, UnknownTargetError, parse_names, select_targets


def test_int8_alone_selects_both_formats() -> None:
    targets = select_targets("tflite,onnx", ["int8"])
    assert [t.name for t in targets] == ["tflite-int8", "onnx-int8"]
    assert all(t.calibrated for t in targets)


def test_modes_follow_the_table_order_whatever_the_request_order() -> None:
    targets = select_targets(["tflite"], "int8, fp32,dynamic,fp16")
    assert [t.mode for t in targets] == ["fp32", "fp16", "dynamic", "int8"]


def test_unknown_mode_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownTargetError, match=r"unknown mode \['int4'\].*fp32, fp16, dynamic, int8"):
        select_targets("tflite", "int8,int4")


def test_unknown_format_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownTargetError, match=r"unknown format \['coreml'\].*tflite, onnx"):
        select_targets("coreml", "fp32")


def test_unsupported_combination_names_it_and_the_supported_modes() -> None:
    with pytest.raises(UnknownTargetError, match=r"onnx fp16, onnx dynamic.*onnx: fp32, int8"):
        select_targets("tflite,onnx", "fp16,dynamic")


def test_empty_list_is_refused() -> None:
    with pytest.raises(UnknownTargetError, match="choose from"):
        parse_names(" , ", ("fp32",), "mode")


def test_output_path_is_stem_dash_mode_with_the_format_suffix() -> None:
    paths = {t.name: t.output_path(Path("out"), "model") for t in TARGETS}
    assert paths["tflite-int8"] == Path("out/model-int8.tflite")
    assert paths["onnx-fp32"] == Path("out/model-fp32.onnx")


def test_every_writer_resolves_to_a_function() -> None:
    for target in TARGETS:
        assert callable(target.load_writer()), target.name


def test_without_formats_every_mode_goes_to_the_formats_supporting_it() -> None:
    chosen = select_targets(None, "fp32,fp16,dynamic,int8")
    assert [t.name for t in chosen] == [t.name for t in TARGETS]
    assert [t.name for t in select_targets(None, "fp16")] == ["tflite-fp16"]
