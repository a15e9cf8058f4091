"""Checks made before any work: packages, models, teacher recipes, text encodings, file modes."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from irdistill.cli.main import main
from irdistill.dependencies import REQUIREMENTS, Requirement, missing, require
from irdistill.errors import InputError, MissingDependencyError
from irdistill.paths import (
    atomic_path,
    check_model,
    default_mode,
    save_model_atomic,
    write_text_atomic,
)
from irdistill.teachers.factory import check_teacher


def test_require_names_every_missing_package_and_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REQUIREMENTS, "nope", Requirement("irdistill_no_such_module", "no-such-dist", "2.0"))
    monkeypatch.setitem(REQUIREMENTS, "old", Requirement("yaml", "PyYAML", "999.0"))
    assert missing("datasets") == []
    with pytest.raises(MissingDependencyError) as err:
        require("datasets", "nope", "old", purpose="a test")
    text = str(err.value)
    assert text.startswith("a test needs no-such-dist>=2.0 (not installed), PyYAML>=999.0 (")
    assert text.endswith('installed): pip install "no-such-dist>=2.0" "PyYAML>=999.0"')


def test_require_sees_a_package_removed_from_the_import_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed
    with pytest.raises(
        MissingDependencyError,
        match=r"needs accelerate>=1\.1\.0 \(not installed\): "
        r'pip install "accelerate>=1\.1\.0"',
    ):
        require("accelerate", purpose="training")


def test_train_checks_packages_before_reading_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)
    code = main(
        [
            "train",
            "--student",
            str(tiny_model_dir),
            "--dataset",
            str(tmp_path / "no-such-data"),
            "--loss",
            "infonce",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "irdistill train: error: training a student needs "
        'accelerate>=1.1.0 (not installed): pip install "accelerate>=1.1.0"'
    )
    assert not (tmp_path / "out").exists()


def test_check_model(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRDISTILL_MODELS", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    assert check_model(str(tiny_model_dir)) == str(tiny_model_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"^model 'empty': empty is not a model folder"):
        check_model("empty")
    for path in ("/no/such/model", "./nothing", "empty/student", "a/b/c"):
        with pytest.raises(InputError, match=f"^--model '{path}': no such model folder"):
            check_model(path, what="--model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="not found locally .* and HF_HUB_OFFLINE is set"):
        check_model("some-org/some-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert check_model("some-org/some-model") == "some-org/some-model"  # online: the hub decides


def test_check_teacher_walks_ensemble_members_without_building(tmp_path: Path, tiny_model_dir: Path) -> None:
    good = {"teacher": "ensemble", "members": [{"teacher": "bm25"}, {"teacher": "dense", "model": str(tiny_model_dir)}]}
    check_teacher(good)  # no collection needed, nothing encoded
    bad = {
        "teacher": "ensemble",
        "members": [{"teacher": "bm25"}, {"teacher": "dense", "model": str(tmp_path / "gone")}],
    }
    with pytest.raises(InputError, match=r"^run: teacher: member 2: teacher dense model '.*gone': no such"):
        check_teacher(bad, source="run: teacher")
    with pytest.raises(InputError, match="teacher dense takes no key 'colour'"):
        check_teacher({"teacher": "dense", "model": str(tiny_model_dir), "colour": 1})


def test_score_reports_a_missing_teacher_model_before_loading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "teacher.yaml"
    recipe.write_text(f"teacher: dense\nmodel: {tmp_path / 'gone'}\n")
    code = main(
        [
            "score",
            "--teacher",
            str(recipe),
            "--dataset",
            str(tmp_path / "no-such-data"),
            "--candidates",
            str(tmp_path / "none.trec"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "teacher dense model" in capsys.readouterr().err  # not the data set, not the run file


def test_evaluate_checks_the_model_before_the_collection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--model", str(tmp_path / "gone"), "--dataset", str(tmp_path / "no-data")])
    assert code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"irdistill evaluate: error: --model '{tmp_path / 'gone'}': no such model folder"
    )


def test_recipe_that_is_not_utf8_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "run.yaml"
    recipe.write_bytes(b"dataset: beir/scifact\nout: caf\xe9\n")
    assert main(["run", str(recipe)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"irdistill run: error: {recipe}:2: not valid UTF-8 (byte e9 at "
        "column 9); re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_of_an_ordinary_file(tmp_path: Path, umask: int, tiny_model_dir: Path) -> None:
    old = os.umask(umask)
    try:
        assert default_mode() == 0o666 & ~umask
        write_text_atomic(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        for name in ("a.json", "b.bin"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)

        from sentence_transformers import SentenceTransformer

        target = save_model_atomic(
            SentenceTransformer(str(tiny_model_dir), device="cpu"), tmp_path / "model", {"extra.json": "{}"}
        )
        (tmp_path / "plain-dir").mkdir()
        assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE((tmp_path / "plain-dir").stat().st_mode)
        assert (target / "extra.json").read_text() == "{}"
    finally:
        os.umask(old)
