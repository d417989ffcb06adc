"""E4B-shaped score mode: batches cut at fixed counts against batches planned by length, and Gemma 4's
norms on fp32 copies against the bf16 activation, in one process on one GPU.

    python benchmarks/bench_e4b_plan.py --tokenizer KIT --data DATA --out DIR

The model is bench_e4b.py's (the E4B text decoder's real config, random weights scaled to stay finite),
built in GPU memory and handed to the project's `Classifier` as a `LoadedModel` without a checkpoint on
disk, so a measurement fits in a minute or two of a lent GPU. Each variant: one untimed pass, then the
median of `--repeat` passes over the test split; MFU counts the real tokens run after the cached system
prompt (2 x decoder parameters x tokens / s / the card's measured bf16 matmul rate), as bench_e4b.py does.
Results are written after every variant, so a run cut short keeps what it measured. On an H200 its
absolute rates came out a third below bench_e4b.py's through the load path (benchmarks/README.md): compare
its variants with each other, and take the level from bench_e4b.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_e4b import E4B, TINY, decoder_params, matmul_rate  # noqa: E402
from bench_score_batches import timed_pass  # noqa: E402

from gemma_emotion import classify, fused  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.models import LoadedModel, ModelSpec, load_tokenizer, stop_token_ids  # noqa: E402

VARIANTS = (  # (plan, norms, batch), most wanted first
    ("planned", "native", 1024),
    ("fixed", "fp32", 1024),  # what the third session measured (44 % MFU)
    ("planned", "native", 512),
    ("fixed", "native", 1024),
    ("planned", "fp32", 1024),
    ("fixed", "fp32", 512),
)


def build(kit: Path, shape: dict) -> LoadedModel:
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = Gemma4TextConfig(**shape)
    config._attn_implementation = "sdpa"
    with device:
        model = Gemma4ForCausalLM(config).to(torch.bfloat16)
    with torch.no_grad():  # bench_e4b.build_checkpoint's scaling: random weights overflow otherwise
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(0.02 / max(float(p.float().std()), 1e-6))
    model.eval()
    model.config.use_cache = True
    fused.fuse_rms_norms(model)
    tokenizer = load_tokenizer(str(kit))
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=ModelSpec("folder", "e4b-random"),
        device=device,
        dtype=torch.bfloat16,
        stop_token_ids=stop_token_ids(tokenizer),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="out/e4b-plan")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="a scaled-down shape, to check the script on a CPU")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rate = matmul_rate()
    lm = build(Path(args.tokenizer), TINY if args.tiny else E4B)
    clf = classify.Classifier(lm)
    texts = list(load_split(args.data, "test")["text"])[: args.limit]
    real = int(clf._encode_many(texts).lengths.sum())
    params = decoder_params(lm.model)
    result: dict = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "matmul_tflops": rate / 1e12, "decoder_params": params,
        "rows": len(texts), "real_tokens_after_prefix": real, "runs": [],
    }  # fmt: skip
    print(f"{result['device']}: bf16 matmul {rate / 1e12:.0f} TFLOP/s; {params / 1e9:.2f} B decoder params")
    min_tokens = classify.MIN_BATCH_TOKENS
    for plan, norms, batch in VARIANTS:
        classify.MIN_BATCH_TOKENS = min_tokens if plan == "planned" else None
        fused.NATIVE_DTYPE = norms == "native"
        first = timed_pass(clf, texts, batch)
        eps = statistics.median(timed_pass(clf, texts, batch) for _ in range(args.repeat))
        row = {
            "plan": plan, "norms": norms, "batch": batch, "first_pass_examples_per_s": first,
            "examples_per_s": eps, "mfu_real_tokens": 2 * params * real * eps / len(texts) / rate,
        }  # fmt: skip
        result["runs"].append(row)
        print(json.dumps(row), flush=True)
        (out / "bench_e4b_plan.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
