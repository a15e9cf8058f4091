"""GPU check: the steps irdistill runs on a GPU, each measured against its CPU or fp32 counterpart.

Steps (each reported as ok with its figures, "skipped: <reason>" when its requirement is
missing, or "failed: <error>"; never silently):

1. ``faiss``: faiss-gpu flat and IVF-PQ search against CPU faiss on the same MiniLM embeddings
   of the SciFact corpus: identical ids for flat; for IVF-PQ the overlap of the two top-10 lists
   and each side's recall of the flat top-10.
2. ``evaluate``: ``irdistill evaluate`` on SciFact with ``--device cuda`` (faiss and encoder on
   the GPU): wall time and nDCG@10.
3. ``cross_encoder``: cross-encoder teacher scoring at fp32 / fp16 / bf16: pairs/s, max
   |difference| and Kendall tau against fp32.
4. ``listwise_vllm``: the listwise LLM teacher on vLLM against transformers on the same windows
   (one window per query): share of equal orders, max |logit difference|, windows/s of each.
5. ``train_bf16``: one epoch of Margin-MSE student training in bf16 (examples/s), on
   cross-encoder scores of the BM25 top 10 of the training queries.

``--cpu`` runs the same steps on a small slice (``--docs``, ``--queries``) with the CPU standing
in for the GPU (the "GPU" side of a comparison is then CPU faiss or torch on the CPU), so the
script is exercised where no GPU is; tests/test_gpu_check.py runs it with tiny random models.

Usage:  bash benchmarks/gpu_check.sh            (installs the GPU extras, then runs this)
        python benchmarks/gpu_check.py [--cpu] [--model M] [--cross-encoder C] [--llm L]
Writes eval/results/gpu_check.json and eval/results/gpu_check.md (or under --results).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"


class Skip(Exception):
    """A step whose requirement is missing: reported as "skipped: <reason>"."""


def default_cross_encoder() -> str:
    """The fine-tuned SciFact teacher when this checkout has it, else MiniLM with a fresh head."""
    here = Path(__file__).resolve().parent.parent / "runs" / "teachers" / "ce-minilm-scifact"
    return str(here) if (here / "config.json").is_file() else "all-MiniLM-L6-v2"


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def write_slice(collection: Any, folder: Path, docs: int, queries: int) -> Path:
    """A BEIR folder of the first ``queries`` judged queries, their judged documents and the
    first ``docs`` documents: a small, self-consistent collection."""
    qids = [q for q in collection.query_ids if collection.qrels.get(q)][:queries]
    judged = {d for q in qids for d in collection.qrels[q]}
    dids = list(dict.fromkeys([d for d in collection.doc_ids if d in judged] + collection.doc_ids[:docs]))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for d in dids:
            doc = collection.corpus[d]
            out.write(json.dumps({"_id": d, "title": doc.title or "", "text": doc.text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for q in qids:
            out.write(json.dumps({"_id": q, "text": collection.queries[q]}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    rows = [f"{q}\t{d}\t{r}" for q in qids for d, r in collection.qrels[q].items() if d in set(dids)]
    (folder / "qrels" / f"{collection.split or 'test'}.tsv").write_text(
        "\n".join(["query-id\tcorpus-id\tscore", *rows]) + "\n"
    )
    return folder


class Check:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        import torch

        self.args, self.work = args, work
        self.cpu = args.cpu
        self.cuda = torch.cuda.is_available() and not self.cpu
        self.device = "cuda" if self.cuda else "cpu"
        self.steps: dict[str, dict[str, Any]] = {}
        from irdistill.data import load_collection

        test, train = load_collection(args.dataset), load_collection(args.train_dataset)
        if self.cpu:  # a small slice
            test = load_collection(str(write_slice(test, work / "test", args.docs, args.queries)), split=test.split)
            train = load_collection(
                str(write_slice(train, work / "train", args.docs, args.queries)), split=train.split or "train"
            )
        self.test, self.train = test, train
        self.test_source = str(work / "test") if self.cpu else args.dataset

    def need_gpu(self) -> None:
        if not self.cpu and not self.cuda:
            raise Skip("no CUDA GPU visible (run with --cpu for the CPU smoke mode)")

    def run(self, name: str, step: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        try:
            figures = step()
            status = "ok"
        except Skip as why:
            figures, status = {}, f"skipped: {why}"
        except Exception as err:  # a failed step is reported, and the next steps still run
            figures, status = {"traceback": traceback.format_exc(limit=3)}, f"failed: {type(err).__name__}: {err}"
        self.steps[name] = {"status": status, "seconds": round(time.perf_counter() - start, 2), **figures}
        print(f"{name}: {status}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ the steps

    def faiss(self) -> dict[str, Any]:
        import faiss

        from irdistill.encoding import DenseEncoder

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if not self.cpu and gpus == 0:
            raise Skip("faiss has no GPU support here (pip uninstall -y faiss-cpu && pip install faiss-gpu-cu12)")
        self.need_gpu()
        encoder = DenseEncoder(self.args.model, device=self.device, cache=False, show_progress_bar=False)
        docs = encoder.embed(self.test.doc_texts(), "document")
        queries = encoder.embed(self.test.query_texts(), "query")
        k = min(10, len(docs))
        flat = faiss.IndexFlatIP(docs.shape[1])
        flat.add(docs)
        on_gpu = (
            (lambda index: faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index))
            if gpus and not self.cpu
            else (lambda index: index)
        )
        _, cpu_ids = flat.search(queries, k)
        _, gpu_ids = on_gpu(flat).search(queries, k)
        dim, n = docs.shape[1], len(docs)
        m = next(m for m in (16, 8, 4, 2, 1) if dim % m == 0)
        nlist = max(1, min(256, int(4 * np.sqrt(n)), n // 39 or 1))
        train = docs
        if len(train) < 256 * 4:  # a small slice: enough points for 8-bit codebooks (same for both sides)
            rng = np.random.default_rng(0)
            train = np.concatenate(
                [docs + rng.normal(0, 0.01, docs.shape).astype(np.float32) for _ in range(1024 // n + 1)]
            )
        ivfpq = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        ivfpq.train(train)
        ivfpq.add(docs)
        ivfpq.nprobe = min(16, nlist)
        _, cpu_pq = ivfpq.search(queries, k)
        gpu_index = on_gpu(ivfpq)
        if hasattr(gpu_index, "nprobe"):
            gpu_index.nprobe = ivfpq.nprobe
        _, gpu_pq = gpu_index.search(queries, k)

        def overlap(a: np.ndarray, b: np.ndarray) -> float:
            return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist(), strict=True)]))

        return {
            "docs": n,
            "queries": len(queries),
            "gpu_side": "faiss-gpu" if gpus and not self.cpu else "cpu faiss (stand-in)",
            "flat_ids_identical": bool(np.array_equal(cpu_ids, gpu_ids)),
            "ivfpq_overlap@10": round(overlap(cpu_pq, gpu_pq), 4),
            "ivfpq_cpu_recall_of_flat@10": round(overlap(cpu_pq, cpu_ids), 4),
            "ivfpq_gpu_recall_of_flat@10": round(overlap(gpu_pq, cpu_ids), 4),
        }

    def evaluate(self) -> dict[str, Any]:
        self.need_gpu()
        import faiss

        # faiss on the GPU when this faiss has GPU support; else (faiss-gpu-cu12 does not load on a
        # CUDA 13 machine) the encoder alone, with the search on CPU faiss, and the row says so
        gpu_faiss = self.cpu or (getattr(faiss, "get_num_gpus", lambda: 0)() > 0)
        faiss_device = self.device if gpu_faiss else "cpu"
        out = self.work / "evaluate"
        cmd = [
            sys.executable,
            *("-m", "irdistill.cli.main", "-q", "evaluate", "--model", self.args.model),
            *("--dataset", self.test_source, "--device", faiss_device, "--model-device", self.device),
            *("--no-cache", "--out", str(out)),
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"irdistill evaluate exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        metrics = json.loads((out / "metrics.json").read_text())["metrics"]
        perf = json.loads((out / "perf.json").read_text())
        return {
            "wall_s": round(seconds, 2),
            "ndcg@10": round(metrics["ndcg@10"], 4),
            "docs_per_second": perf["docs_per_second"],
            "device": self.device,
            "faiss_device": faiss_device,
            "backend": perf.get("backend"),
        }

    def pairs(self, collection: Any, depth: int) -> tuple[list[str], list[str], dict[str, list[str]]]:
        from irdistill.candidates import mine_candidates

        run = mine_candidates(collection, "bm25", k=depth, exclude_positives=False, show_progress_bar=False)
        lists = {q: list(docs) for q, docs in run.items()}
        queries = [collection.queries[q] for q, docs in lists.items() for _ in docs]
        passages = [collection.corpus[d].full_text() for docs in lists.values() for d in docs]
        return queries, passages, lists

    def cross_encoder(self) -> dict[str, Any]:
        self.need_gpu()
        from irdistill.teachers.cross_encoder import CrossEncoderTeacher

        queries, passages, _ = self.pairs(self.test, self.args.depth)
        out: dict[str, Any] = {
            "pairs": len(queries),
            "model": Path(self.args.cross_encoder).name,
            "device": self.device,
        }
        reference = None
        for dtype in ("float32", "float16", "bfloat16"):
            teacher = CrossEncoderTeacher(self.args.cross_encoder, device=self.device, dtype=dtype)  # type: ignore[arg-type]
            teacher.score(queries[:8], passages[:8])  # warm-up
            start = time.perf_counter()
            scores = teacher.score(queries, passages)
            seconds = time.perf_counter() - start
            row: dict[str, Any] = {"pairs_per_s": round(len(queries) / seconds, 1)}
            if reference is None:
                reference = scores
            else:
                row["max_abs_diff"] = float(np.max(np.abs(scores - reference)))
                row["kendall_tau"] = round(kendall_tau(scores, reference), 4)
            out[dtype] = row
            del teacher
        return out

    def listwise_vllm(self) -> dict[str, Any]:
        from irdistill.teachers.listwise_vllm import vllm_problem

        if importlib.util.find_spec("vllm") is None:
            raise Skip('vllm is not installed (pip install "irdistill[vllm]")')
        self.need_gpu()
        if self.cpu or vllm_problem():
            raise Skip(vllm_problem() or "vLLM runs on a CUDA GPU only")
        import torch

        from irdistill.teachers.listwise_llm import ListwiseLLMTeacher

        _, _, lists = self.pairs(self.test, 20)
        queries = [self.test.queries[q] for q in lists]
        passages = [[self.test.corpus[d].full_text() for d in docs] for docs in lists.values()]
        options = dict(window=20, stride=10, dtype="bfloat16")
        reference = ListwiseLLMTeacher(self.args.llm, device="cuda", **options)
        start = time.perf_counter()
        expected = [reference.rank(q, p) for q, p in zip(queries, passages, strict=True)]
        hf_s = time.perf_counter() - start
        del reference
        torch.cuda.empty_cache()
        teacher = ListwiseLLMTeacher(
            self.args.llm,
            engine="vllm",
            engine_options={"gpu_memory_utilization": 0.4, "enforce_eager": True},
            **options,
        )
        teacher.load()
        start = time.perf_counter()
        got = teacher.rank_many(queries, passages)
        vllm_s = time.perf_counter() - start
        equal = [
            list(np.argsort(-a, kind="stable")) == list(np.argsort(-b, kind="stable"))
            for a, b in zip(got, expected, strict=True)
        ]
        return {
            "windows": len(queries),
            "orders_equal": round(float(np.mean(equal)), 4),
            "max_abs_diff": float(max(np.max(np.abs(a - b)) for a, b in zip(got, expected, strict=True))),
            "transformers_windows_per_s": round(len(queries) / hf_s, 2),
            "vllm_windows_per_s": round(len(queries) / vllm_s, 2),
        }

    def train_bf16(self) -> dict[str, Any]:
        self.need_gpu()
        from irdistill.config import build_config
        from irdistill.teachers.cross_encoder import CrossEncoderTeacher
        from irdistill.workflows.scoring import score_candidates
        from irdistill.workflows.training import TrainConfig, train_student

        _, _, lists = self.pairs(self.train, 10)
        teacher = CrossEncoderTeacher(self.args.cross_encoder, device=self.device)
        scores = score_candidates(
            teacher, self.train, lists, self.work / "scores", include_positives=False, show_progress_bar=False
        )
        del teacher
        source = str(self.work / "train") if self.cpu else self.args.train_dataset
        cfg = build_config(
            TrainConfig,
            {
                "student": self.args.model,
                "dataset": source,
                "split": self.train.split or "train",
                "scores": str(scores),
                "epochs": 1,
                "batch_size": self.args.train_batch_size,
                # the GPU step asks for bf16; the CPU smoke mode takes what this CPU computes natively
                "precision": "auto" if self.cpu else "bf16",
                "max_seq_length": 128,
                "out": str(self.work / "student"),
            },
            source="gpu_check",
        )
        result = train_student(cfg, show_progress_bar=False)
        return {
            "examples": result.examples,
            "examples_per_s": round(result.examples_per_second, 1),
            "train_loss": round(result.train_loss, 4),
            "precision": json.loads((result.path / "irdistill_training.json").read_text())["precision"],
            "device": self.device,
        }


def report(check: Check, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    import torch

    env = {
        "mode": "cpu smoke" if args.cpu else "gpu",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "model": args.model,
        "cross_encoder": args.cross_encoder,
        "llm": args.llm,
        "docs": len(check.test.corpus),
        "queries": len(check.test.queries),
    }
    lines = [
        f"GPU check ({env['mode']}; {env['gpu'] or 'no GPU'}; torch {env['torch']}): {env['docs']} documents, "
        f"{env['queries']} queries of {args.dataset}. Produced by `bash benchmarks/gpu_check.sh"
        f"{' --cpu' if args.cpu else ''}`.",
        "",
        "| step | status | seconds | figures |",
        "|---|---|---|---|",
    ]
    for name, row in check.steps.items():
        figures = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("status", "seconds", "traceback"))
        lines.append(f"| {name} | {row['status']} | {row['seconds']} | {figures} |")
    return {"environment": env, "steps": check.steps}, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="smoke mode: a small slice, the CPU standing in for the GPU")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="dense model (encoding, faiss, evaluate, student)")
    parser.add_argument("--cross-encoder", default=None, help="cross-encoder teacher (default: the SciFact teacher)")
    parser.add_argument("--llm", default="SmolLM2-135M-Instruct", help="listwise LLM teacher (a transformers folder)")
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--train-dataset", default="beir/scifact/train")
    parser.add_argument("--docs", type=int, default=500, help="--cpu: documents in the slice")
    parser.add_argument("--queries", type=int, default=20, help="--cpu: queries in the slice")
    parser.add_argument("--depth", type=int, default=100, help="BM25 candidates per query for the cross-encoder")
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--steps", default="faiss,evaluate,cross_encoder,listwise_vllm,train_bf16")
    parser.add_argument("--results", default=str(RESULTS), help="folder for gpu_check.json / .md")
    args = parser.parse_args(argv)
    args.cross_encoder = args.cross_encoder or default_cross_encoder()
    if args.cpu:
        args.depth = min(args.depth, 10)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="irdistill-gpu-check-") as tmp:
        os.environ.setdefault("IRDISTILL_CACHE", str(Path(tmp) / "cache"))
        check = Check(args, Path(tmp))
        for name in args.steps.split(","):
            check.run(name, getattr(check, name))
            # written after every step: a run cut short by its time limit keeps the steps it finished
            data, table = report(check, args)
            (results / "gpu_check.json").write_text(json.dumps(data, indent=2) + "\n")
            (results / "gpu_check.md").write_text(table)
    print(table)
    return 1 if any(row["status"].startswith("failed") for row in check.steps.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
