"""`predict` end to end on a large Parquet file: texts/s cold and warm, peak host memory, labels checked.

    python benchmarks/bench_predict.py --rows 1000000 --out benchmarks/results/predict-h200.json  # GPU
    python benchmarks/bench_predict.py --rows 200000 --shape e4b --out results/predict-e4b-h200.json
    python benchmarks/bench_predict.py --device cpu --rows 2000 --check 32                       # 2 cores
    python benchmarks/bench_predict.py --stub --rows 1000000 --chunk-size 16384   # no model: memory
    torchrun --nproc_per_node 2 benchmarks/bench_predict.py --rows 1000000 --input big.parquet  # 2 GPUs

The input is the test and validation texts repeated to `--rows` rows (columns id, text, label), written
once as Parquet (`--input` names it; an existing file with the right row count is reused). Each pass runs
`predict_file` on it into a fresh Parquet output, reading and writing included:
- pass 1 is cold: a freshly loaded model that has classified nothing; its texts/s are counted from the
  first row read (the summary's `seconds`), and its wall time includes the setup before that;
- later passes (`--passes`) are warm: every batch shape met before.
Host memory: the process's resident set (VmRSS) sampled every 50 ms in a thread, before the first pass and
at its peak during each pass, plus the kernel's own high-water mark (ru_maxrss). A flat peak across
`--rows` values is the evidence that memory does not grow with the file.
Labels: `--check` rows spread over the file, each classified alone with `Classifier.classify`, must have
the same label as in the output (the margin between the two best labels is printed for any that differ).

`--stub` replaces the model with a stand-in that labels a text from its length (no tokenizer, no torch
work): what remains is the model-free part of predict (reading, chunking, writing, the resume record).
Its figures are labelled "stub" in the results and say nothing about a model's speed.
`--shape e4b`: the Gemma 4 E4B text decoder with random weights (bench_e4b.py's checkpoint, written once
into `--workdir` and loaded through `load_model` as a user's model is), the embedded model's tokenizer from
`--kit`; speed only. `--shape e4b-tiny` is a scaled-down one, to check the script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gemma_emotion import classify as classify_module  # noqa: E402
from gemma_emotion import predict as predict_module  # noqa: E402
from gemma_emotion.classify import EncodedTexts  # noqa: E402
from gemma_emotion.distributed import Ranks  # noqa: E402
from gemma_emotion.labels import EMOTIONS, LABELS  # noqa: E402
from gemma_emotion.predict import PredictOptions, predict_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ABLATIONS = {"overlap": (predict_module, "OVERLAP"), "pinned": (classify_module, "PINNED_COPIES")}


class RssSampler:
    """Peak VmRSS of this process while `with` is open, read from /proc every `every` seconds."""

    def __init__(self, every: float = 0.05) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def mib(n: int) -> float:
    return round(n / 2**20, 1)


# -- the input -----------------------------------------------------------------------------------------------
def build_input(path: Path, data: Path, rows: int) -> None:
    """The test and validation texts repeated to `rows` rows, as Parquet (id, text, label)."""
    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return
    base = []
    for split in ("test", "validation"):
        with open(data / f"{split}.jsonl", encoding="utf-8") as fh:
            base += [json.loads(line) for line in fh]
    texts = pa.array([r["text"] for r in base], pa.string())
    labels = pa.array([r["label"] for r in base], pa.int64())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(
        tmp, pa.schema([("id", pa.int64()), ("text", pa.string()), ("label", pa.int64())])
    ) as w:
        for start in range(0, rows, 65536):
            n = min(65536, rows - start)
            idx = pa.array([(start + i) % len(base) for i in range(n)], pa.int64())
            ids = pa.array(range(start, start + n), pa.int64())
            w.write_table(pa.table({"id": ids, "text": texts.take(idx), "label": labels.take(idx)}))
    os.replace(tmp, path)


# -- the classifiers -----------------------------------------------------------------------------------------
class StubClassifier:
    """Labels a text from its length, with no model: what predict costs around the model."""

    calibrate = False
    enable_thinking = False
    labels = EMOTIONS

    def __init__(self) -> None:
        self.lm = SimpleNamespace(
            device=torch.device("cpu"), spec=SimpleNamespace(name="stub"), adapter=None, cpu_int8=False
        )

    def encode(self, texts: list[str]) -> EncodedTexts:
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        return EncodedTexts((), lengths.copy(), np.ones_like(lengths), np.zeros(len(texts), dtype=bool))

    def score_encoded(self, encoded, *, adapter=True, batch_size=None, progress=None) -> torch.Tensor:
        lengths = encoded.ids.astype(np.float32)  # each "prompt" is one id: its text's length
        logits = np.sin(lengths[:, None] * np.arange(1, len(LABELS) + 1, dtype=np.float32))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        if progress:
            progress(len(encoded), len(encoded))
        return torch.from_numpy(probs.astype(np.float32))

    def classify(self, text: str, mode: str = "score", *, adapter: bool = True):
        probs = self.score_encoded(self.encode([text]))[0]
        return SimpleNamespace(
            label=LABELS[int(probs.argmax())], probabilities=dict(zip(LABELS, probs.tolist()))
        )


def load_classifier(args: argparse.Namespace):
    """The classifier to measure and a description of it; load time in seconds."""
    if args.stub:
        return StubClassifier(), {"model": "stub (no model: reading, chunking, writing only)"}, 0.0
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadOptions, load_model, resolve_adapter

    t0 = time.perf_counter()
    model, adapter = args.model, None if args.no_adapter else resolve_adapter(args.model, args.adapter)
    if args.shape in ("e4b", "e4b-tiny"):
        # A checkpoint loaded through the project's own load path, as a user's E4B is (fused norms, attention
        # kernels): a model built in memory ran at half the rate (1,242 against bench_e4b.py's 2,358
        # texts/s, seventh session). Written once into the work folder, reused by later runs.
        from bench_e4b import shaped_checkpoint

        work = Path(args.workdir or tempfile.gettempdir())
        ckpt = shaped_checkpoint(Path(args.kit), work, tiny=args.shape == "e4b-tiny")
        model, adapter = str(ckpt), None
        t0 = time.perf_counter()
    lm = load_model(model, LoadOptions(device=args.device, dtype=args.dtype, adapter=adapter))
    info = {"model": model, "adapter": lm.adapter, "dtype": str(lm.dtype)}
    if args.shape != "real":
        info["model"] = "gemma4-e4b-shaped (random weights), through load_model"
    if lm.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    return Classifier(lm), info, time.perf_counter() - t0


# -- the passes ----------------------------------------------------------------------------------------------
def run_pass(clf, src: Path, out: Path, options: PredictOptions, ranks: Ranks) -> dict:
    if clf.lm.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timeline: dict[int, float] = {}  # tenth of the rows done -> RSS then (MiB)

    def progress(done: int, total: int | None) -> None:
        if total:
            timeline.setdefault(min(10, done * 10 // total), mib(RssSampler.now()))

    wall = time.perf_counter()
    with RssSampler() as rss:
        summary = predict_file(clf, src, out, options, progress=progress)
    wall = time.perf_counter() - wall
    r = {
        "rows": summary.rows,
        "texts_per_s": round(summary.texts_per_s, 1),  # from the first row read to the output complete
        "texts_per_s_wall": round(summary.labelled / wall, 1),  # the whole call, setup included
        "seconds": round(summary.seconds, 2),
        "setup_seconds": round(summary.setup_seconds, 3),
        "peak_rss_mib": mib(rss.peak),
        "rss_mib_by_tenth_done": [timeline.get(k) for k in range(11)],
        "label_counts": summary.label_counts,
        "empty": summary.empty,
        "cut": summary.cut,
        "processes": summary.processes,
    }
    if clf.lm.device.type == "cuda":
        r["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if ranks.main:
        print(json.dumps(r), flush=True)
    return r


def check_labels(clf, out: Path, n: int) -> dict:
    """`n` rows spread over the output, each classified alone: the same label?"""
    file = pq.ParquetFile(out)
    total = file.metadata.num_rows
    picks = sorted({round(i * (total - 1) / max(1, n - 1)) for i in range(n)}) if n else []
    table = pq.read_table(out, columns=["id", "text", "label"])
    rows = table.take(pa.array(picks, pa.int64())).to_pylist()
    differ = []
    for row in rows:
        one = clf.classify(row["text"])
        if one.label != row["label"]:
            best = sorted(one.probabilities.values(), reverse=True)
            differ.append({"id": row["id"], "batched": row["label"], "alone": one.label,
                           "margin_alone": round(best[0] - best[1], 5)})  # fmt: skip
    return {"checked": len(rows), "identical": len(rows) - len(differ), "differ": differ[:20]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--adapter", default=None, help="default: the shipped adapter for embedded")
    ap.add_argument("--no-adapter", action="store_true")
    ap.add_argument("--shape", choices=("real", "e4b", "e4b-tiny"), default="real")
    ap.add_argument("--kit", default=".gpu/kit", help="--shape e4b: a folder with a Gemma tokenizer")
    ap.add_argument("--device", default=None, help="cpu to measure the CPU path (default: CUDA when present)")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--stub", action="store_true", help="no model: the reading/writing part only")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--passes", type=int, default=2, help="1 cold pass, then warm ones (default 2)")
    ap.add_argument(
        "--ablate",
        default="",
        help="comma list of speed-ups to switch off for one more warm "
        "pass each: overlap (reading/tokenising/writing in threads), pinned (pinned, non-blocking "
        "batch copies on CUDA)",
    )
    ap.add_argument(
        "--check", type=int, default=None, help="rows checked against classify (default 256 GPU, 32 CPU)"
    )
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "emotion"))
    ap.add_argument(
        "--input", default=None, help="the Parquet input (built if missing; default: a temp folder)"
    )
    ap.add_argument("--workdir", default=None, help="where outputs go (default: a temp folder)")
    ap.add_argument("--out", default=None, help="write the results here as JSON")
    args = ap.parse_args()  # fmt: skip

    ranks = Ranks()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    src = Path(args.input) if args.input else work / f"input-{args.rows}.parquet"
    if ranks.main:
        t0 = time.perf_counter()
        build_input(src, Path(args.data), args.rows)
        size, secs = mib(src.stat().st_size), time.perf_counter() - t0
        print(f"input: {src} ({args.rows:,} rows, {size} MiB, {secs:.1f} s)")
    ranks.broadcast(None)  # the other processes wait for the input

    rss_start = RssSampler.now()
    clf, info, load_s = load_classifier(args)
    device = clf.lm.device
    results = {
        **info, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "rows": args.rows, "input_mib": mib(src.stat().st_size), "load_s": round(load_s, 2),
        "torch": torch.__version__, "processes": ranks.world, "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(sys.argv), "rss_before_load_mib": mib(rss_start),
        "rss_after_load_mib": mib(RssSampler.now()),
    }  # fmt: skip
    options = PredictOptions(batch_size=args.batch_size, chunk_size=args.chunk_size, overwrite=True)
    out = work / "output.parquet"
    results["passes"] = [run_pass(clf, src, out, options, ranks) for _ in range(max(1, args.passes))]
    results["cold_texts_per_s"] = results["passes"][0]["texts_per_s"]
    results["warm_texts_per_s"] = results["passes"][-1]["texts_per_s"] if args.passes > 1 else None
    results["ablations"] = {}
    for name in [a for a in args.ablate.split(",") if a]:
        module, flag = ABLATIONS[name]
        setattr(module, flag, False)
        results["ablations"][name] = run_pass(clf, src, out, options, ranks)
        setattr(module, flag, True)
        results["ablations"][name]["vs_on"] = round(
            results["ablations"][name]["texts_per_s"] / results["passes"][-1]["texts_per_s"], 3
        )
    results["peak_rss_mib"] = max(p["peak_rss_mib"] for p in results["passes"])
    results["ru_maxrss_mib"] = mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if ranks.main:
        n = args.check if args.check is not None else (256 if device.type == "cuda" else 32)
        results["labels"] = check_labels(clf, out, n)
        print(json.dumps(results, indent=2))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
