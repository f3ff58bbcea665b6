"""The emulated Raspberry Pi check's command line: options, models, one model's table, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tumorscan.export.aarch64.cli import CheckOptions, check_model, main, parse_options, resolve_models
from tumorscan.export.aarch64.guest import EmulatedCpu, Emulator
from tumorscan.export.aarch64.host import CheckError
from tumorscan.models import default_model_path

ANSWERS = (("a.png", "no_tumor", [0.1, 0.1, 0.7, 0.1]), ("b.png", "glioma_tumor", [0.6, 0.2, 0.1, 0.1]))
CPUS = [
    EmulatedCpu("cortex-a72", "3.11.2", "0xd08", False),
    EmulatedCpu("cortex-a76", "3.11.2", "0xd0b", True),
]


@dataclass(frozen=True)
class NativeEmulator(Emulator):
    """Runs the tumor-infer stand-in natively: on CPU X it prints the records in `outputs`/X.jsonl."""

    fake: Path = Path()
    outputs: Path = Path()

    def command(self, cpu: str, *arguments: str) -> list[str]:
        return [sys.executable, str(self.fake), str(self.outputs / f"{cpu}.jsonl"), "0", *arguments]

    def environment(self, host: Mapping[str, str] | None = None) -> dict[str, str]:
        return dict(os.environ)


def _options(tmp_path: Path, **changes: object) -> CheckOptions:
    options = parse_options(["--cache", str(tmp_path / "cache"), "--x86-python", sys.executable], tmp_path)
    return replace(options, **changes)


def test_defaults_lie_in_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUMORSCAN_AARCH64_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    options = parse_options([], tmp_path / "repo")
    assert options == CheckOptions(
        repo=tmp_path / "repo",
        models=(),
        scans=tuple(
            tmp_path / "repo" / "tests" / "data" / name for name in ("mri/train", "mri/test", "dicom")
        ),
        cpus=("cortex-a72", "cortex-a76"),
        expect=None,
        cache=tmp_path / "repo" / ".cache" / "aarch64",
        mirror=None,
        x86_python=tmp_path / "repo" / ".venv" / "bin" / "python",
    )


def test_options_are_taken_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUMORSCAN_AARCH64_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["--cpu", "cortex-a76", "--cpu", "cortex-a72", "--cpu", "cortex-a76", "--model", "a.onnx"]
    argv += ["--model", "b.tflite", "--scans", "s", "--expect", "e.jsonl", "--mirror", "http://m/debian"]
    options = parse_options(argv, tmp_path / "repo")
    assert options.cpus == ("cortex-a76", "cortex-a72") and options.models == (
        Path("a.onnx"),
        Path("b.tflite"),
    )
    assert (options.scans, options.expect, options.mirror) == (
        (Path("s"),),
        Path("e.jsonl"),
        "http://m/debian",
    )
    assert options.cache == tmp_path / "env-cache"
    assert parse_options(["--cache", "c"], tmp_path).cache == tmp_path / "c"  # made absolute


def test_an_unknown_cpu_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_options(["--cpu", "cortex-a53"], tmp_path)
    assert raised.value.code == 2
    assert "argument --cpu: invalid choice: 'cortex-a53'" in capsys.readouterr().err


def test_models_are_the_packaged_one_or_the_files_named(tmp_path: Path) -> None:
    assert resolve_models(_options(tmp_path)) == {default_model_path(): None}

    first, second = tmp_path / "a.onnx", tmp_path / "b.tflite"
    first.write_bytes(b"")
    second.write_bytes(b"")
    assert resolve_models(_options(tmp_path, models=(first, second))) == {first: first, second: second}
    with pytest.raises(CheckError, match=r"missing.onnx: no such model file$"):
        resolve_models(_options(tmp_path, models=(first, tmp_path / "missing.onnx")))
    with pytest.raises(CheckError, match=r"^--expect holds one model's results: pass a single --model$"):
        resolve_models(_options(tmp_path, models=(first, second), expect=tmp_path / "e.jsonl"))


def test_a_check_that_cannot_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(tmp_path, ["--x86-python", str(tmp_path / "no-python")]) == 2
    assert (
        capsys.readouterr().err
        == f"check_aarch64: {tmp_path / 'no-python'}: no such Python; pass --x86-python\n"
    )


def test_one_model_is_checked_on_each_cpu(
    tmp_path: Path, fake_infer: Path, jsonl: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "cortex-a72.jsonl").write_text(jsonl(*ANSWERS), encoding="utf-8")
    (outputs / "cortex-a76.jsonl").write_text(jsonl(ANSWERS[0]), encoding="utf-8")
    expect = tmp_path / "expected.jsonl"
    expect.write_text(jsonl(*ANSWERS), encoding="utf-8")
    options = _options(tmp_path, expect=expect)
    emulator = NativeEmulator(options.cache, fake=fake_infer, outputs=outputs)
    model = default_model_path()

    assert not check_model(options, emulator, CPUS, ["scans"], model, None)

    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["", "model default.tflite (packaged): tolerance 0.0001 (float output)"]
    assert lines[3].split()[0] == "cortex-a72" and lines[3].endswith("  match")
    assert lines[4].split()[0] == "cortex-a76" and lines[4].endswith("  MISMATCH")
    assert lines[5:] == [
        "      b.png: missing from the emulated run",
        f"  results: {options.cache / 'results' / model.name}",
    ]
    kept = options.cache / "results" / model.name / "cortex-a76.jsonl"
    assert [json.loads(line)["source"] for line in kept.read_text(encoding="utf-8").splitlines()] == ["a.png"]


def test_the_check_imports_no_training_or_export_framework() -> None:
    """It runs with any Python that has tumorscan, the runtime's dependencies only."""
    probe = (
        "import json, sys\nimport tumorscan.export.aarch64.cli\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = set(json.loads(done.stdout))
    assert "tumorscan" in modules
    assert not modules & {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert"}
