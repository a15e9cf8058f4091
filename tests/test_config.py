"""Command configs: YAML recipes, command-line overrides, and their error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from irdistill.cli.config import CompareConfig, EvaluateConfig
from irdistill.config import build_config, config_from, load_yaml
from irdistill.errors import InputError

RECIPE = """\
# a recipe as eval/recipes/ holds them
model: sentence-transformers/all-MiniLM-L6-v2
dataset: beir/scifact/test
index: hnsw
index_params: {m: 32, ef_search: 256}
k: 100
metrics: [ndcg@10, recall@100]
max_seq_length: null
cache: false
"""


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_values_load(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE)
    config = config_from(EvaluateConfig, str(path), {})
    assert config.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert config.dataset == "beir/scifact/test"
    assert config.index == "hnsw"
    assert config.index_params == {"m": 32, "ef_search": 256}
    assert config.k == 100
    assert config.metrics == ["ndcg@10", "recall@100"]
    assert config.max_seq_length is None
    assert config.cache is False
    # keys the recipe does not name keep their defaults
    assert (config.batch_size, config.device, config.out) == (64, "auto", None)
    config.validate()


def test_command_line_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE)
    overrides = {"index": "flat", "k": 10, "index_params": {}, "batch_size": None, "out": "runs/x"}
    config = config_from(EvaluateConfig, str(path), overrides)
    assert config.index == "flat"
    assert config.k == 10
    assert config.index_params == {}
    assert config.out == "runs/x"
    assert config.batch_size == 64  # a flag left out (None) does not override
    assert config.model == "sentence-transformers/all-MiniLM-L6-v2"  # not overridden: from YAML


def test_without_yaml(tmp_path: Path) -> None:
    config = config_from(
        CompareConfig,
        None,
        {"runs": ["a.trec", "b"], "dataset": "beir/scifact", "max_p": 0.01, "names": None},
    )
    assert config.runs == ["a.trec", "b"]
    assert config.dataset == "beir/scifact"
    assert config.max_p == 0.01
    assert config.names is None
    assert config.metrics == ["ndcg@10", "mrr@10", "recall@100"]
    assert config.stat_test == "student"
    config.validate()


def test_compare_yaml_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "runs: [a.trec, b.trec]\ndataset: beir/scifact\nstat_test: fisher\nmax_p: 1\n")
    config = config_from(CompareConfig, str(path), {"stat_test": "tukey", "names": ["A", "B"]})
    assert config.stat_test == "tukey"
    assert config.names == ["A", "B"]
    assert config.max_p == 1.0 and isinstance(config.max_p, float)  # an int is a fine float
    config.validate()


def test_unknown_key_names_the_key_and_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE + "indx: flat\n")
    with pytest.raises(
        InputError,
        match=re.escape(f"{path}: unknown key 'indx'; allowed: model, dataset, split, index,"),
    ) as info:
        config_from(EvaluateConfig, str(path), {})
    assert "save_index" in str(info.value)  # the whole list
    with pytest.raises(
        InputError,
        match=r"unknown key 'index'; allowed: runs, dataset, split, names, margin, metrics, stat_test, max_p, out$",
    ):
        build_config(CompareConfig, {"runs": ["a", "b"], "index": "flat"}, source="compare")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("k", "ten", "k must be int, got str 'ten'"),
        ("k", 10.5, "k must be int, got float 10.5"),
        ("k", True, "k must be an integer, got True"),
        ("metrics", "ndcg@10", "metrics must be list, got str"),
        ("index_params", [1, 2], "index_params must be dict, got list"),
        ("cache", "yes", "cache must be bool, got str"),
        ("max_seq_length", "long", "max_seq_length must be int, got str"),
        ("split", 3, "split must be str, got int 3"),
    ],
)
def test_wrong_type_names_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(f"config: {message}")):
        build_config(EvaluateConfig, {"model": "m", "dataset": "d", key: value})


def test_wrong_type_in_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "runs: a.trec\ndataset: beir/scifact\n")
    with pytest.raises(InputError, match=re.escape(f"{path}: runs must be list, got str 'a.trec'")):
        config_from(CompareConfig, str(path), {})
    path = write(tmp_path, 'k: "ten"\n', name="eval.yaml")
    with pytest.raises(InputError, match=re.escape(f"{path}: k must be int, got str 'ten'")):
        config_from(EvaluateConfig, str(path), {})


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("model: x\ndataset: [a, b\nk: 3\n", 3),
        ("model: x\nk: 10\n  index: flat\n", 3),
        ("model: x\n\tk: 3\n", 2),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=re.escape(f"{path}:{line}: not valid YAML")):
        config_from(EvaluateConfig, str(path), {})


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- model\n- dataset\n", "list"), ("just a string\n", "str"), ("42\n", "int")],
)
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=re.escape(f"{path}: expected a mapping of keys to values, got {kind}")):
        config_from(EvaluateConfig, str(path), {})


def test_empty_yaml_and_missing_file(tmp_path: Path) -> None:
    assert load_yaml(write(tmp_path, "# only a comment\n")) == {}
    config = config_from(EvaluateConfig, str(write(tmp_path, "")), {"model": "bm25", "dataset": "d"})
    assert (config.model, config.k) == ("bm25", 1000)
    missing = tmp_path / "absent.yaml"
    with pytest.raises(InputError, match=re.escape(f"{missing}: no such config file")):
        config_from(EvaluateConfig, str(missing), {})


def test_validate_errors() -> None:
    with pytest.raises(InputError, match="--model is required"):
        EvaluateConfig(dataset="d").validate()
    with pytest.raises(InputError, match="--dataset is required"):
        EvaluateConfig(model="m").validate()
    with pytest.raises(InputError, match="at least two runs"):
        CompareConfig(runs=["a"], dataset="d").validate()
    with pytest.raises(InputError, match="compare: --dataset is required"):
        CompareConfig(runs=["a", "b"]).validate()
    with pytest.raises(InputError, match="3 names for 2 runs"):
        CompareConfig(runs=["a", "b"], dataset="d", names=["x", "y", "z"]).validate()


def test_defaults_are_not_shared() -> None:
    first, second = EvaluateConfig(), EvaluateConfig()
    first.metrics.append("map@10")
    first.index_params["m"] = 8
    assert second.metrics == ["ndcg@10", "mrr@10", "recall@100", "recall@1000"]
    assert second.index_params == {}


def test_a_bad_override_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    recipe = tmp_path / "ok.yaml"
    recipe.write_text("model: bm25\ndataset: beir/scifact\n")
    with pytest.raises(InputError, match="command line: k must be int"):
        config_from(EvaluateConfig, str(recipe), {"k": "ten"})
