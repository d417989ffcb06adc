"""A model of the embedded Gemma 3 270M's shape with random weights, from its config and tokenizer files.

    python benchmarks/random_model.py KIT OUT

KIT holds config.json, the tokenizer files (tokenizer.json may be gzipped) and the chat template, as
`.gpu/kit` does. The result loads like any local checkpoint (`--model OUT`), so speed can be measured on a
machine that never received the 246 MB GGUF; its labels mean nothing.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main(kit: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in kit.iterdir():
        if f.suffix == ".gz":
            with gzip.open(f) as src, open(out / f.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif f.is_file():
            shutil.copy(f, out / f.name)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out), dtype=torch.bfloat16)
    model.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"random {n / 1e6:.0f}M-parameter model of the embedded shape in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
