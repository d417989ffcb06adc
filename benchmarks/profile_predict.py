"""Where score mode's time goes on a GPU, and whether CUDA graphs pay (issue 19's 20,000 texts/s).

    python benchmarks/profile_predict.py --model DIR [--adapter DIR] --data DATA --rows 65536 --out OUT.json

On `--rows` texts (the test and validation splits repeated), each part of `Classifier.predict`'s score
path timed alone: tokenising, planning the batches, building the padded batches (`_left_pad`), and the
model passes (`score_encoded`) at several batch sizes, with the GPU's busy time from a profiler pass
(kernel time over wall time: a low share means the CPU, not the GPU, sets the pace). Then the same passes
replayed as CUDA graphs, one graph per (batch rows, padded width), every batch padded to the full row count:
texts/s and how many labels agree with the eager path. Speed only (random weights are as fast as real ones).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemma_emotion import classify as C  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.models import LoadOptions, attention_kernels, load_model  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, *args, **kw):
    sync()
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    sync()
    return out, time.perf_counter() - t0


def forward_padded(clf: C.Classifier, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`_label_probs` on an already padded batch of suffix ids (what follows the cached prefix)."""
    n = len(clf._prefix_ids)
    rows = ids.shape[0]
    model = clf.lm.inference_model()
    cache = clf._prefix_cache(model, rows)
    full_mask = torch.cat([torch.ones(rows, n, dtype=mask.dtype, device=mask.device), mask], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, n:]
    inputs = dict(
        input_ids=ids, attention_mask=full_mask, position_ids=positions, cache=cache, use_cache=True
    )
    head = clf._label_head(model)
    logits = (
        head(inputs) if head is not None else model(**inputs, logits_to_keep=1).logits[:, -1, clf._label_ids]
    )
    return torch.softmax(logits.float(), dim=-1)


class Graphs:
    """One CUDA graph per (rows, width); inputs copied into its static buffers, then replayed."""

    def __init__(self, clf: C.Classifier, rows: int) -> None:
        self.clf, self.rows, self.graphs = clf, rows, {}
        self.pool = torch.cuda.graph_pool_handle()

    def _graph(self, width: int):
        if width not in self.graphs:
            dev = self.clf.lm.device
            ids = torch.full((self.rows, width), self.clf.lm.tokenizer.pad_token_id, device=dev)
            mask = torch.ones((self.rows, width), dtype=torch.long, device=dev)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    forward_padded(self.clf, ids, mask)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                out = forward_padded(self.clf, ids, mask)
            self.graphs[width] = (graph, ids, mask, out)
        return self.graphs[width]

    def probs(self, encoded: C.EncodedTexts) -> torch.Tensor:
        order = self.clf._plan(encoded, "score", self.rows)
        pending = []
        for idx in order:
            batch = encoded.take(idx)
            ids, mask = C._left_pad(
                batch.ids, batch.lengths, self.clf.lm.tokenizer.pad_token_id, self.clf.lm.device
            )
            width = ids.shape[1]
            graph, s_ids, s_mask, out = self._graph(width)
            s_ids.fill_(self.clf.lm.tokenizer.pad_token_id)
            s_mask.zero_()
            s_mask[:, -1] = 1  # unused rows: one real token, so no row attends to nothing
            s_ids[: len(idx)].copy_(ids)
            s_mask[: len(idx)].copy_(mask)
            graph.replay()
            pending.append(out[: len(idx)].clone())
        planned = torch.cat(pending).float().cpu()
        probs = torch.empty_like(planned)
        probs[torch.tensor([i for idx in order for i in idx])] = planned
        return probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--batches", default="512,1024,2048,4096")
    ap.add_argument("--graph-batches", default="512,1024")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    res: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    base = list(load_split(args.data, "test")["text"]) + list(load_split(args.data, "validation")["text"])
    texts = [base[i % len(base)] for i in range(args.rows)]
    lm = load_model(args.model, LoadOptions(adapter=args.adapter))
    clf = C.Classifier(lm)
    clf.predict(texts[:512])  # warm: prefix cache, label head check
    encoded, s = timed(clf.encode, texts)
    res["encode_texts_per_s"] = round(len(texts) / s)
    n = len(clf._prefix_ids)
    res["prefix_tokens"] = n
    res["mean_suffix_tokens"] = round(float(encoded.lengths.mean()), 1)
    plan, s = timed(clf._plan, encoded, "score", 512)
    res["plan_s"] = round(s, 4)
    pad = lm.tokenizer.pad_token_id

    def pads() -> None:
        for idx in plan:
            batch = encoded.take(idx)
            C._left_pad(batch.ids, batch.lengths, pad, lm.device)

    _, s = timed(pads)
    res["left_pad_texts_per_s"] = round(len(texts) / s)
    print(json.dumps(res), flush=True)
    eager = None
    for b in [int(x) for x in args.batches.split(",")]:
        clf.score_encoded(encoded.take(slice(8192)), batch_size=b)  # shapes met once
        probs, s = timed(clf.score_encoded, encoded, batch_size=b)
        eager = probs if eager is None else eager
        res[f"score_encoded_b{b}_texts_per_s"] = round(len(texts) / s)
        print(f"score_encoded batch {b}: {len(texts) / s:.0f} texts/s", flush=True)
    if torch.cuda.is_available():
        k = min(len(encoded), 16384)
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        ) as prof:
            _, wall = timed(clf.score_encoded, encoded.take(slice(k)), batch_size=512)
        events = prof.key_averages()
        gpu_us = sum(e.self_device_time_total for e in events)
        res["profiled_wall_s"] = round(wall, 4)
        res["gpu_busy_share"] = round(gpu_us / 1e6 / wall, 3)
        res["cpu_ops_top"] = events.table(
            sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50
        )
        res["cuda_ops_top"] = events.table(
            sort_by="self_cuda_time_total", row_limit=20, max_name_column_width=50
        )
        print(res["cuda_ops_top"], flush=True)
        print(res["cpu_ops_top"], flush=True)
        print("gpu busy share", res["gpu_busy_share"], flush=True)
        for b in [int(x) for x in args.graph_batches.split(",")]:
            try:
                with torch.inference_mode(), lm.use(True), attention_kernels(lm.device):
                    g = Graphs(clf, b)
                    g.probs(encoded.take(slice(8192)))  # capture every width
                    probs, s = timed(g.probs, encoded)
                res[f"graphs_b{b}_texts_per_s"] = round(len(texts) / s)
                res[f"graphs_b{b}_same_label"] = int((probs.argmax(-1) == eager.argmax(-1)).sum())
                res[f"graphs_b{b}_max_prob_diff"] = float((probs - eager).abs().max())
                res[f"graphs_b{b}_widths"] = len(g.graphs)
                print(
                    f"graphs batch {b}: {len(texts) / s:.0f} texts/s, same label "
                    f"{res[f'graphs_b{b}_same_label']}/{len(texts)}",
                    flush=True,
                )
            except Exception as exc:  # an experiment: record why it could not capture
                res[f"graphs_b{b}_error"] = f"{type(exc).__name__}: {exc}"[:2000]
                print("graphs", b, res[f"graphs_b{b}_error"], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if "top" not in k}, indent=1))


if __name__ == "__main__":
    main()
