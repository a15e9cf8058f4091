"""Where the time of GPU scoring and encoding goes: a profile to run on a GPU machine.

Runs, on SciFact test queries x corpus passages, the cross-encoder teacher's ``score`` and the dense
encoder's ``embed`` with the default and larger batches, each timed (CUDA synchronised) and one of each
under cProfile, plus the tokenizer alone, so that a slow GPU step can be attributed to tokenisation,
host-side batching or the model.

    python benchmarks/gpu_profile.py --cross-encoder PATH --model PATH [--pairs 30000] [--device cuda]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import time
from typing import Any


def timed(fn: Any, sync: Any) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return round(time.perf_counter() - start, 3)


def profile(fn: Any, rows: int = 14) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(rows)
    return "\n".join(line for line in text.getvalue().splitlines() if line.strip())[-3000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cross-encoder", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--pairs", type=int, default=30000)
    parser.add_argument("--docs", type=int, default=0, help="documents to embed (0: the whole corpus)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    import torch

    from irdistill.data import load_collection
    from irdistill.encoding import DenseEncoder
    from irdistill.teachers.cross_encoder import CrossEncoderTeacher

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    c = load_collection(args.dataset)
    docs = c.doc_texts()
    docs = docs[: args.docs] if args.docs else docs
    rng = random.Random(0)
    queries = c.query_texts()
    pairs_q = [queries[i % len(queries)] for i in range(args.pairs)]
    pairs_p = [docs[rng.randrange(len(docs))] for _ in range(args.pairs)]
    out: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    teacher = CrossEncoderTeacher(args.cross_encoder, device=args.device, dtype="float32")
    tok = teacher.cross_encoder.tokenizer
    out["tokenize_s"] = timed(lambda: tok(pairs_q, pairs_p, truncation=True, max_length=512, padding=False), sync)
    teacher.score(pairs_q[:64], pairs_p[:64])
    for batch_size, batch_tokens in ((64, 16384), (256, None), (1024, None)):
        teacher.batch_size, teacher.batch_tokens = batch_size, batch_tokens
        out[f"ce_score_b{batch_size}_s"] = timed(lambda: teacher.score(pairs_q, pairs_p), sync)
        print(json.dumps(out), flush=True)
    teacher.batch_size, teacher.batch_tokens = 64, 16384
    print("== cross-encoder score, batch 64 ==\n" + profile(lambda: teacher.score(pairs_q, pairs_p)), flush=True)
    encoder = DenseEncoder(args.model, device=args.device, cache=False, show_progress_bar=False)
    encoder.model.max_seq_length = 256
    encoder.embed(docs[:64], "document")
    for batch_size in (64, 256):
        encoder.batch_size = batch_size
        out[f"embed_b{batch_size}_s"] = timed(lambda: encoder.embed(docs, "document"), sync)
        print(json.dumps(out), flush=True)
    encoder.batch_size = 64
    print("== dense embed, batch 64 ==\n" + profile(lambda: encoder.embed(docs, "document")), flush=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
