"""Training precision: the CPU's native bf16 read from /proc/cpuinfo, auto's choice, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from irdistill import precision
from irdistill.errors import InputError
from irdistill.precision import cpu_bf16_instructions, resolve_precision

X86 = "processor\t: 0\nflags\t\t: fpu vme sse avx2 avx512f {extra}\n\nprocessor\t: 1\nflags\t\t: fpu sse avx2\n"


def cpuinfo(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


@pytest.fixture(autouse=True)
def fresh_cache():
    cpu_bf16_instructions.cache_clear()
    yield
    cpu_bf16_instructions.cache_clear()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [("amx_tile amx_bf16 avx512_bf16", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512_vnni", None)],
)
def test_x86_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, expected: str | None) -> None:
    monkeypatch.setattr(precision.sys, "platform", "linux")
    assert cpu_bf16_instructions(cpuinfo(tmp_path, X86.format(extra=extra))) == expected


def test_arm_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision.sys, "platform", "linux")
    monkeypatch.setattr(precision.platform, "machine", lambda: "aarch64")
    path = cpuinfo(tmp_path, "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")
    assert cpu_bf16_instructions(path) == "bf16"
    cpu_bf16_instructions.cache_clear()
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")  # "bf16" alone is no x86 flag
    assert cpu_bf16_instructions(path) is None


def test_no_cpuinfo_means_no_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision.sys, "platform", "linux")
    assert cpu_bf16_instructions(str(tmp_path / "missing")) is None
    monkeypatch.setattr(precision.sys, "platform", "darwin")
    assert cpu_bf16_instructions(cpuinfo(tmp_path, X86.format(extra="amx_bf16"))) is None


@pytest.mark.parametrize(("native", "expected"), [("avx512_bf16", "bf16"), (None, "fp32")])
def test_auto_on_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: str | None, expected: str
) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: native)
    with caplog.at_level("INFO", logger="irdistill.precision"):
        chosen = resolve_precision("auto", device="cpu")
    assert chosen.name == expected and chosen.bf16 is (expected == "bf16")
    assert f"training precision: {expected}" in caplog.text and "auto" in chosen.reason


def test_explicit_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: None)
    assert resolve_precision("fp32", device="cpu").name == "fp32"
    with pytest.raises(InputError, match="no native bf16.*slower than fp32"):
        resolve_precision("bf16", device="cpu")
    with pytest.raises(InputError, match="unknown 'fp16'; known: auto, bf16, fp32"):
        resolve_precision("fp16", device="cpu")
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: "amx_bf16")
    assert resolve_precision("BF16", device="cpu").name == "bf16"
