"""The training loss's LM head on a CPU: TRL's chunked log-probabilities against plain materialised logits.

    python benchmarks/bench_lm_head.py --tokens 32,64

The lean training step scores only the answer positions (`trainer.answer_positions_only`): a batch of 8
emotion rows is ~24-32 tokens, each projected onto the 262,144-token vocabulary of the embedded model
(hidden 640, the tied embedding as the head, frozen). TRL's `ChunkedLogProbFunction` never materialises the
(tokens, vocabulary) logits, at the price of reading the head's weights three times and many passes over
its tiles; at these few tokens the logits are only 32-64 MiB, so `log_softmax` on them is the alternative.
Forward and backward (the hidden states' gradient) of each, best of three, and their largest differences.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from trl.kernels.chunked_logprob import ChunkedLogProbFunction
from trl.trainer import utils as trl_utils


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="32,64")
    ap.add_argument("--vocab", type=int, default=262144)
    ap.add_argument("--hidden", type=int, default=640)
    args = ap.parse_args()
    torch.manual_seed(0)
    weight = torch.randn(args.vocab, args.hidden) * 0.02
    chunk = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    results = {"threads": torch.get_num_threads(), "vocab": args.vocab, "hidden": args.hidden, "runs": []}
    for n in (int(x) for x in args.tokens.split(",")):
        hidden = torch.randn(n, args.hidden)
        targets = torch.randint(0, args.vocab, (n,))

        def chunked(hidden=hidden, targets=targets):
            h = hidden.clone().requires_grad_()
            outs = ChunkedLogProbFunction.apply(h, weight, None, targets, 1.0, chunk, None, 1.0, ("is_top1",))
            outs[0].sum().backward()
            return outs[0].detach(), h.grad

        def materialised(hidden=hidden, targets=targets):
            h = hidden.clone().requires_grad_()
            logp = torch.log_softmax(h @ weight.t(), -1).gather(-1, targets[:, None]).squeeze(-1)
            logp.sum().backward()
            return logp.detach(), h.grad

        row: dict = {"tokens": n}
        for fn in (chunked, materialised):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            row[f"{fn.__name__}_ms"] = round(1000 * min(times), 1)
        (a, ga), (b, gb) = chunked(), materialised()
        row["largest_logprob_difference"] = float((a - b).abs().max())
        row["largest_grad_difference"] = float((ga - gb).abs().max())
        results["runs"].append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
