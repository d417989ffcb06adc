#!/usr/bin/env bash
# After ../shared/gpu/prepare.sh: what a GPU session needs beside the wheels and the GGUF pieces.
#   .gpu/wheels-a  bitsandbytes cut to its CUDA 13 and CPU libraries (43 -> 7 MB), so that the first upload
#                  holds the wheels, the kit and the data together
#   .gpu/kit       the embedded model's config, chat template and tokenizer (tokenizer.json gzipped: 5 MiB,
#                  not 33), from which benchmarks/random_model.py and bench_e4b.py build random models
#   .gpu/data      the emotion splits (../shared does not travel)
# Run from the project root once the embedded model has been converted here (any `classify` does it).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
whl=$(ls .gpu/wheels-a/bitsandbytes-*.whl)
zip -q -d "$whl" 'bitsandbytes/libbitsandbytes_rocm*' 'bitsandbytes/libbitsandbytes_xpu*' \
    'bitsandbytes/libbitsandbytes_cuda1[12]*' >/dev/null || true
src=$(python3 -c 'from gemma_emotion import paths; print(paths.cache_dir() / "embedded" / "gemma-3-270m")')
rm -rf .gpu/kit .gpu/data
mkdir -p .gpu/kit .gpu/data
for f in config.json tokenizer_config.json chat_template.jinja generation_config.json; do cp "$src/$f" .gpu/kit/; done
gzip -c "$src/tokenizer.json" > .gpu/kit/tokenizer.json.gz
cp ../shared/data/emotion/*.jsonl .gpu/data/
du -sh .gpu/wheels-a .gpu/wheels-b .gpu/kit .gpu/data
