"""Load on the running app: many classify requests at once, each checked; classify while a CPU training
runs; a plain classify behind a long batch and after its cancel; the app's memory over time.

    python benchmarks/bench_load.py                       # a tiny random Gemma 3 (built in seconds)
    python benchmarks/bench_load.py --model embedded      # the real Gemma 3 270M (+ its shipped adapter)
    python benchmarks/bench_load.py --concurrent 50 --total 1000 --out load.json
    python benchmarks/bench_load.py --concurrent 5 --total 20 --training-requests 3 --batch-texts 500

Starts `python app.py` on a free port with the app's own queue settings (space.yaml), then (--phases):
  burst      --concurrent requests sent at once through gradio_client, each with a different text:
             p50/p95/p99 latency, requests/s, and the model passes that served them (the app's batcher,
             read from /status "serving");
  sustained  --concurrent requests kept in flight until --total more have been answered;
  training   a CPU training run started through /train_start (--train-size rows, one epoch), and once it
             is training: --training-requests classify requests one at a time, then as many at once
             (p50 / max of each), then the run is stopped;
  batch      a --batch-texts classify_batch; once its first chunk is done, --behind requests one at a
             time behind it (their latency: the wait for the running chunk plus their own pass); then the
             batch is cancelled (how long until it has stopped) and one classify is timed after it.
Every answer is checked against a Classifier loaded in this process with the same model and adapter: the
label and every probability of the request's own text. The app process's resident memory (VmRSS from
/proc/PID/status) is sampled throughout. Latency is client side (queue wait included). Prints a table
(and writes it as JSON with --out). Exit status 1 if any request failed or got another text's answer.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import CancelledError, ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "emotion"
PROB_TOLERANCE = 1e-4
# On a CPU the embedded model scores through int8 (gemma_emotion/int8.py): a text's probabilities move with
# the batch it is in by up to 0.014 (bench_int8.py, 64 texts, alone against batches of 16) and 0.05 in one
# run of 64; the label is checked as before, and so is the text the answer names.
INT8_TOLERANCE = 0.06


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(seconds: list[float], *qs: float) -> str:
    """Percentiles of latencies in seconds, as "a / b / c ms"."""
    return " / ".join(f"{pct(seconds, q) * 1000:,.0f}" for q in qs) + " ms"


def load_texts(data: Path | None, n: int) -> list[str]:
    """Distinct texts: the data file's (or the shared test split's), else assets/examples.json."""
    if data is None and (SHARED / "test.jsonl").is_file():
        data = SHARED / "test.jsonl"
    if data is not None:
        from gemma_emotion.data import load_split

        texts = [t.strip() for t in load_split(data, require_labels=False)["text"]]
    else:
        examples = json.loads((REPO / "gemma_emotion" / "assets" / "examples.json").read_text())
        texts = [item["text"] for item in examples]
    return list(dict.fromkeys(texts))[:n]


def tiny_model(folder: Path) -> Path:
    """The tests' tiny random Gemma 3 with a vocabulary from the shared data."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny import make_gemma3

    train = SHARED / "train.jsonl"
    return make_gemma3(folder, train if train.is_file() else None)


class Sampler(threading.Thread):
    """Samples a process's RSS every `every` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append(rss_mb(self.pid))
            self.halt.wait(self.every)


class App:
    """The launched app, a client, the reference classifier and the checks of every answer."""

    def __init__(self, client, proc: subprocess.Popen, expected: dict, status: dict, tolerance: float):
        self.client, self.proc, self.expected, self.status = client, proc, expected, status
        self.tolerance = tolerance
        self.errors: list[str] = []
        self.mismatches: list[str] = []
        self.client_cancels: list[str] = []

    def serving(self) -> dict:
        return self.client.predict(api_name="/status")["serving"]

    def classify(self, text: str) -> float:
        """One checked /classify; its latency in seconds."""
        t0 = time.perf_counter()
        try:
            try:
                res = self.client.predict(text, "score", False, True, api_name="/classify")
            except CancelledError:
                # gradio_client's shared event-stream reader can drop a job when it closes just as the
                # job is submitted (a client-side race; the server sees no error). Counted, then retried.
                self.client_cancels.append(text)
                res = self.client.predict(text, "score", False, True, api_name="/classify")
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown, whatever its type
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        want = self.expected.get(text)
        if want is not None:
            probs = res["probabilities"] or {}
            same = res["text"] == text and res["label"] == want.label
            same = (
                same
                and max(abs(probs.get(k, -1) - v) for k, v in want.probabilities.items()) <= self.tolerance
            )
            if not same:
                self.mismatches.append(f"{text[:40]!r}: got {res['label']} for {res['text'][:40]!r}")
        return seconds

    def at_once(self, texts: list[str]) -> list[float]:
        with ThreadPoolExecutor(len(texts)) as pool:
            return list(pool.map(self.classify, texts))

    def wait(self, predicate, what: str, timeout: float):
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.2)
        return value


def burst_phase(app: App, texts: list[str], n: int) -> list[tuple[str, str]]:
    before = app.serving()
    t0 = time.perf_counter()
    latencies = app.at_once(texts[:n])
    wall = time.perf_counter() - t0
    after = app.serving()
    passes = after["passes"] - before["passes"]
    return [
        (f"burst: {n} at once", f"{wall:.2f} s, {n / wall:.1f} req/s"),
        ("burst latency p50 / p95 / p99", ms(latencies, 0.5, 0.95, 0.99)),
        ("burst: model passes (requests a pass)", f"{passes} ({n / max(1, passes):.1f})"),
    ]


def sustained_phase(app: App, texts: list[str], total: int, concurrent: int, warmup: int):
    marks: list[tuple[int, float]] = []
    done = 0
    lock = threading.Lock()

    def counted(text: str) -> float:
        nonlocal done
        seconds = app.classify(text)
        with lock:
            done += 1
            if done % 100 == 0 or done == warmup:
                marks.append((done, rss_mb(app.proc.pid)))
        return seconds

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        latencies = list(pool.map(counted, (texts[i % len(texts)] for i in range(total))))
    wall = time.perf_counter() - t0
    rows = [
        (f"sustained: {total}, {concurrent} in flight", f"{wall:.1f} s, {total / wall:.1f} req/s"),
        ("sustained latency p50 / p95 / p99", ms(latencies, 0.5, 0.95, 0.99)),
    ]
    return rows, marks


def training_phase(app: App, texts: list[str], data: Path, n: int, train_size: int, timeout: float):
    """Classify while a training run trains (on a CPU: the case the app yields a core for)."""
    config = {"model": app.status["model"], "data": str(data), "train_size": train_size, "epochs": 1,
              "test_size": 0}  # fmt: skip
    started = app.client.predict(config, api_name="/train_start")
    try:

        def training():
            status = app.client.predict(started["name"], 0, api_name="/train_status")
            if status["run"]["status"] != "running":
                raise SystemExit(f"the training ended before the requests: {status['run']}")
            return status["records"]

        app.wait(training, "the training's first step", timeout)
        one_by_one = [app.classify(t) for t in texts[:n]]
        together = app.at_once(texts[n : 2 * n])
        still = app.client.predict(started["name"], 0, api_name="/train_status")["run"]["status"]
    finally:
        stopped = app.client.predict(api_name="/train_stop")
    notes = [n for n in (stopped.get("run") or {}).get("notes") or [] if "beside the app" in n]
    return [
        (f"during training: {n} one at a time, p50 / max", ms(one_by_one, 0.5, 1.0)),
        (f"during training: {n} at once, p50 / max", ms(together, 0.5, 1.0)),
        ("training still running after them", "yes" if still == "running" else f"NO ({still})"),
        ("training process", notes[0] if notes else "(no CPU note: trained on a GPU)"),
    ]


def batch_phase(app: App, texts: list[str], n_batch: int, behind: int, timeout: float):
    """A plain classify behind a long batch, then the batch cancelled and a classify after it."""
    before = app.serving()
    batch = [texts[i % len(texts)] for i in range(n_batch)]
    job = app.client.submit(batch, "score", True, api_name="/classify_batch")
    app.wait(lambda: app.serving()["chunks"] > before["chunks"], "the batch's first chunk", timeout)
    first = app.serving()
    waits = []
    for text in texts[:behind]:
        waits.append(app.classify(text))
        time.sleep(0.3)  # spread over the batch's chunks
    mid = app.serving()
    chunk_rows = (mid["texts"] - before["texts"]) / max(1, mid["chunks"] - before["chunks"])
    t0 = time.perf_counter()
    job.cancel()
    app.wait(lambda: job.done(), "the cancelled batch to end", timeout)
    app.wait(lambda: app.serving()["cancelled"] > before["cancelled"], "the batch to stop", timeout)
    stop_s = time.perf_counter() - t0
    after_cancel = app.classify(texts[behind])
    end = app.serving()
    done = end["texts"] - before["texts"]
    return [
        (f"behind a {n_batch:,}-text batch: {behind} classify, p50 / max", ms(waits, 0.5, 1.0)),
        (
            "batch chunks: rows a chunk (mean)",
            f"{chunk_rows:,.0f} ({first['chunks'] - before['chunks']} done before the first request)",
        ),  # fmt: skip
        ("cancel → batch stopped", f"{stop_s:.2f} s ({done:,} of {n_batch:,} texts labelled)"),
        ("classify after the cancel", f"{after_cancel * 1000:,.0f} ms"),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="tiny (default), embedded, a Hub id or a folder")
    p.add_argument("--adapter", default=None, help="adapter folder or 'none' (default: the app's choice)")
    p.add_argument("--data", type=Path, default=None, help="JSONL/CSV of texts (default: shared test split)")
    p.add_argument("--phases", default="burst,sustained,training,batch", help="which phases, comma-separated")
    p.add_argument("--concurrent", type=int, default=50, help="requests in flight at once (default 50)")
    p.add_argument("--total", type=int, default=1000, help="requests of the sustained phase (default 1000)")
    p.add_argument("--warmup", type=int, default=100, help="sustained requests before the RSS baseline")
    p.add_argument("--training-requests", type=int, default=20, help="classify requests during training")
    p.add_argument("--train-size", type=int, default=1000, help="rows of the training run (default 1000)")
    p.add_argument("--batch-texts", type=int, default=5000, help="texts of the long batch (default 5000)")
    p.add_argument("--behind", type=int, default=5, help="classify requests behind the long batch")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the app and the model")
    p.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = p.parse_args()
    phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    unknown = phases - {"burst", "sustained", "training", "batch"}
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: the package and tests/tiny.py

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    model = str(tiny_model(work / "tiny")) if args.model == "tiny" else args.model
    need = max(args.concurrent, 2 * args.training_requests, args.behind + 1, 200)
    texts = load_texts(args.data, need)
    if len(texts) < args.concurrent:
        raise SystemExit(f"need {args.concurrent} distinct texts, found {len(texts)}")
    data = args.data or SHARED

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "app.py", "--model", model, "--port", str(port), "--host", "127.0.0.1",
           "--runs-dir", str(work / "runs")]  # fmt: skip
    if args.adapter:
        cmd += ["--adapter", args.adapter]
    log = open(work / "app.log", "w")
    env = {**os.environ, "GEMMA_EMOTION_DATA": str(data)}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    sampler = Sampler(proc.pid)
    rows: list[tuple[str, str]] = []
    marks: list[tuple[int, float]] = []
    try:
        from gradio_client import Client

        deadline = time.monotonic() + args.timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited with {proc.returncode}; see {work / 'app.log'}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no page at {url} within {args.timeout:.0f} s") from None
                time.sleep(0.2)
        client = Client(url, verbose=False, max_workers=max(args.concurrent, 2 * args.training_requests) + 8)
        while (status := client.predict(api_name="/status"))["state"] == "loading":
            if time.monotonic() > deadline:
                raise SystemExit(f"model not ready within {args.timeout:.0f} s")
            time.sleep(0.2)
        if status["state"] != "ready":
            raise SystemExit(f"model failed to load: {status['error']}")

        # The reference: the same model and adapter in this process.
        from gemma_emotion.classify import Classifier
        from gemma_emotion.models import LoadOptions, load_model

        direct = Classifier(load_model(model, LoadOptions(adapter=status["adapter"])))
        expected = {t: direct.classify(t, "score") for t in texts}
        with direct.lm.use(True):
            int8 = direct.lm.inference_model() is not direct.lm.model
        tolerance = INT8_TOLERANCE if int8 else PROB_TOLERANCE
        del direct
        app = App(client, proc, expected, status, tolerance)
        rss_ready = rss_mb(proc.pid)
        sampler.start()

        rows += [
            ("model", status["model"] + (f" + {status['adapter']}" if status.get("adapter") else "")),
            ("device / cores", f"{status.get('device')} / {os.cpu_count()} CPU cores"),
        ]
        if "burst" in phases:
            app.classify(texts[-1])  # warm-up: the prefix cache, the first kernels
            rows += burst_phase(app, texts, args.concurrent)
        if "sustained" in phases:
            found, marks = sustained_phase(app, texts, args.total, args.concurrent, args.warmup)
            rows += found
        if "training" in phases:
            rows += training_phase(app, texts, data, args.training_requests, args.train_size, args.timeout)
        if "batch" in phases:
            rows += batch_phase(app, texts, args.batch_texts, args.behind, args.timeout)
        rss_end = rss_mb(proc.pid)
        sampler.halt.set()
        alive = proc.poll() is None
    finally:
        sampler.halt.set()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    sent = "all requests"
    rows += [
        ("errors / wrong answers", f"{len(app.errors)} / {len(app.mismatches)} ({sent})"),
        ("answers checked against", f"label, text, probabilities within {app.tolerance:g}"),
        ("client-side cancels, retried", str(len(app.client_cancels))),
    ]
    peak = max(sampler.samples or [rss_end])
    if marks:
        warm = next((mb for n, mb in marks if n == args.warmup), marks[0][1])
        per_k = (rss_end - warm) / max(1, args.total - args.warmup) * 1000
        rows.append(
            ("RSS ready / warm / end / max", f"{rss_ready:.0f} / {warm:.0f} / {rss_end:.0f} / {peak:.0f} MiB")
        )
        rows.append(
            (f"RSS growth after {args.warmup}", f"{rss_end - warm:+.1f} MiB ({per_k:+.1f} MiB per 1000)")
        )
    else:
        rows.append(("RSS ready / end / max", f"{rss_ready:.0f} / {rss_end:.0f} / {peak:.0f} MiB"))
    rows.append(("app still running", "yes" if alive else "NO"))

    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if marks:
        print("RSS every 100 requests (MiB): " + ", ".join(f"{n}: {mb:.0f}" for n, mb in marks))
    for line in (app.errors + app.mismatches)[:10]:
        print("  " + line)
    if args.out:
        args.out.write_text(
            json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": dict(rows)}, indent=2) + "\n"
        )
    return 1 if app.errors or app.mismatches or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
