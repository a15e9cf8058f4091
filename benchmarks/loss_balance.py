"""How much of a composite loss's gradient each of its parts makes: the student's gradient norm
per named part (``distill``, ``contrastive``, ...) on the first batches a SciFact training run
would see, and the cosine between the parts' gradients.

A hybrid loss is ``distill + β · contrastive``; its logged values say little about which term
steers training, since the two terms' gradients scale differently (a τ² factor, a temperature of
0.05, a label scale). This measures it on the student's parameters, with the rows, batch size,
temperature and label scale that ``eval/students_scifact.py`` trains with.

    python benchmarks/loss_balance.py --method hybrid [--batches 3] [--set beta=0.05]
        [--loss-option scale_by_temperature_squared=false] [--label NAME]

``--set`` overrides a training option of the recipe (repeatable), ``--loss-option`` a keyword of
the loss class. Writes one row per ``--label`` (default: method and overrides) into
``eval/results/loss_balance_scifact.{json,md}``; a recorded row is not measured again.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "eval"))

RESULTS = ROOT / "eval" / "results"


def _value(text: str) -> Any:
    """``key=value`` right-hand sides read as YAML scalars (numbers, booleans, strings)."""
    return yaml.safe_load(text)


def _pairs(items: list[str], flag: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} takes key=value, got {item!r}")
        out[key] = _value(value)
    return out


def part_gradients(model: Any, loss: Any, columns: list[list[str]], labels: Any) -> dict[str, tuple[float, Any]]:
    """For one batch (``columns``: the texts of each input column), every named part of ``loss``:
    its value and the flattened gradient it alone gives the model's trainable parameters. A loss
    that returns one tensor has the one part ``loss``."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    embeddings = [model(model.tokenize(texts))["sentence_embedding"] for texts in columns]
    parts = loss.compute_loss_from_embeddings(embeddings, labels)
    if not isinstance(parts, dict):
        parts = {"loss": parts}
    out = {}
    for name, part in parts.items():
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        pieces = [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)]
        out[name] = (float(part.detach()), torch.cat(pieces))
    return out


def target_mass(loss: Any, labels: Any) -> dict[str, float]:
    """For a listwise KL (lists whose first candidate is the judged positive): the mean share of
    the teacher's target on the positive, on the list's negatives and on the other rows' passages
    (``target_*``); nothing for other losses."""
    import torch

    from irdistill.losses import ListwiseKLLoss

    if not isinstance(loss, ListwiseKLLoss):
        return {}
    batch = int(labels.size(0))
    if loss.in_batch_negatives and loss.in_batch_target != "exclude":
        probs = loss.in_batch_target_probs(labels)
        width = int(labels.size(1)) - 1
        starts = torch.arange(batch) * width
        own = torch.stack([probs[r, s : s + width] for r, s in enumerate(starts.tolist())])
    else:
        width = int(labels.size(1)) - (1 if loss.in_batch_negatives else 0)
        own = torch.softmax(labels[:, :width] / loss.teacher_temperature, dim=1)
    positive = float(own[:, 0].mean())
    negatives = float(own[:, 1:].sum(dim=1).mean())
    return {
        "target_positive": positive,
        "target_list_negatives": negatives,
        "target_in_batch": 1 - positive - negatives,
    }


def measure(method: str, overrides: dict[str, Any], loss_options: dict[str, Any], batches: int) -> dict[str, Any]:
    """Gradient norms per part over the first ``batches`` batches of ``method``'s training rows."""
    import torch
    from students_scifact import HERE, METHODS, TEACHER_SCORES

    from irdistill.config import build_config, load_yaml
    from irdistill.workflows.training import TrainConfig, _loss, build_training_data, load_student, training_collection

    base = load_yaml(HERE / "recipes" / "scifact_student_base.yaml")
    values = {
        **base,
        **METHODS[method],
        "epochs": 1,
        "max_seq_length": 128,
        "seed": 1,
        "scores": str(TEACHER_SCORES / "train"),
        "out": "/dev/null",
        **overrides,
    }
    if loss_options:
        values["loss_options"] = {**values.get("loss_options", {}), **loss_options}
    cfg = build_config(TrainConfig, values, source=method)
    collection = training_collection(cfg)
    data = build_training_data(cfg, collection)
    model = load_student(cfg)
    model.train()  # dropout on, as in training; seeded so that a row can be measured again
    torch.manual_seed(cfg.seed)
    loss = _loss(cfg, model, data.loss_options)
    columns = [c for c in data.dataset.column_names if c != "label"]
    size = cfg.batch_size
    norms: dict[str, list[float]] = {}
    cosines: list[float] = []
    values_seen: dict[str, list[float]] = {}
    for b in range(batches):
        rows = data.dataset[b * size : (b + 1) * size]
        labels = torch.tensor(rows["label"], dtype=torch.float32)
        parts = part_gradients(model, loss, [rows[c] for c in columns], labels)
        for name, (value, grad) in parts.items():
            norms.setdefault(name, []).append(float(grad.norm()))
            values_seen.setdefault(name, []).append(value)
        for name, value in target_mass(loss, labels).items():
            values_seen.setdefault(name, []).append(value)
        if len(parts) == 2:
            (_, a), (_, c) = parts.values()
            cosines.append(float(torch.nn.functional.cosine_similarity(a, c, dim=0)))
        logging.info("batch %d: %s", b + 1, {k: round(v[-1], 4) for k, v in norms.items()})
    row: dict[str, Any] = {
        "method": method,
        "overrides": overrides,
        "loss_options": loss_options,
        "loss_config": {k: v for k, v in loss.get_config_dict().items() if isinstance(v, (int, float, str, bool))},
        "batches": batches,
        "batch_size": size,
        "grad_norm": {k: round(statistics.fmean(v), 4) for k, v in norms.items()},
        "value": {k: round(statistics.fmean(v), 4) for k, v in values_seen.items() if k in norms},
    }
    mass = {k: round(statistics.fmean(v), 3) for k, v in values_seen.items() if k.startswith("target_")}
    if mass:
        row["target_mass"] = mass
    total = sum(row["grad_norm"].values())
    row["grad_share"] = {k: round(v / total, 3) for k, v in row["grad_norm"].items()}
    if cosines:
        row["grad_cosine"] = round(statistics.fmean(cosines), 3)
    return row


def write_md(table: dict[str, Any]) -> None:
    lines = [
        "# Gradient share of each part of the composite losses (SciFact train, all-MiniLM-L6-v2)",
        "",
        "Produced by `python benchmarks/loss_balance.py` (see its docstring): the norm of the student's "
        "gradient from each named part of the loss, averaged over the first batches of a training run "
        "(the untrained student, 128 tokens, the recipe's batch size and label scale), its share of the "
        "sum of the parts' norms, and the cosine between the two parts' gradients.",
        "",
        "A listwise KL's row also gives where its teacher target puts the mass, averaged over the rows of "
        "those batches: on the judged positive / the list's negatives / the other rows' passages.",
        "",
        "| row | loss settings | batches | part: value / grad norm (share) | cosine | target mass: positive / "
        "list negatives / in-batch |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in table.items():
        settings = ", ".join(f"{k}={v}" for k, v in {**r["overrides"], **r["loss_options"]}.items()) or "defaults"
        parts = "; ".join(
            f"{k}: {r['value'][k]} / {r['grad_norm'][k]} ({100 * r['grad_share'][k]:.1f} %)" for k in r["grad_norm"]
        )
        mass = r.get("target_mass")
        shares = (
            f"{mass['target_positive']:.3f} / {mass['target_list_negatives']:.3f} / {mass['target_in_batch']:.3f}"
            if mass
            else "-"
        )
        lines.append(f"| {label} | {settings} | {r['batches']} | {parts} | {r.get('grad_cosine', '-')} | {shares} |")
    lines += [
        "",
        "Rows are `eval/students_scifact.py` methods: `hybrid-kl` and `listwise-kl` train with the KL as first "
        "built (its `FIRST_KL`: the other rows' passages at the query's floor in the target, a τ² factor), the "
        "`-v2` rows with the KL as it is now (hybrid-kl: over the query's own list; listwise-kl: no target mass "
        "on the other rows' passages; no τ² below τ = 1). 'defaults' means the method's own settings.",
    ]
    (RESULTS / "loss_balance_scifact.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True, help="a method of eval/students_scifact.py")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a training option")
    parser.add_argument("--loss-option", action="append", default=[], metavar="KEY=VALUE", help="a loss keyword")
    parser.add_argument("--label", help="row name (default: method and overrides)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides, loss_options = _pairs(args.set, "--set"), _pairs(args.loss_option, "--loss-option")
    label = args.label or " ".join([args.method, *args.set, *args.loss_option])
    path = RESULTS / "loss_balance_scifact.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    if label not in table:
        table[label] = measure(args.method, overrides, loss_options, args.batches)
        path.write_text(json.dumps(table, indent=2) + "\n")
    write_md(table)
    print((RESULTS / "loss_balance_scifact.md").read_text())


if __name__ == "__main__":
    main()
