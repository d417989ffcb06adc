"""Load on the running app: many classify requests at once, each checked, and the app's memory over time.

    python benchmarks/bench_load.py                       # a tiny random Gemma 3 (built in seconds)
    python benchmarks/bench_load.py --model embedded      # the real Gemma 3 270M (+ its shipped adapter)
    python benchmarks/bench_load.py --concurrent 50 --total 1000

Starts `python app.py` on a free port with the app's own queue settings (space.yaml), then:
  1. burst: --concurrent requests sent at once through gradio_client, each with a different text;
  2. sustained: --concurrent requests kept in flight until --total more have been answered.
Every answer is checked against a Classifier loaded in this process with the same model and adapter: the
label and the six probabilities of the request's own text. The app process's resident memory (VmRSS from
/proc/PID/status) is sampled throughout. Prints requests/s, the 50th/99th percentile latency (client
side, queue wait included), errors, mismatches, and RSS after start, after warm-up and at the end.
Exit status 1 if any request failed or got another text's answer.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="tiny (default), embedded, a Hub id or a folder")
    p.add_argument("--adapter", default=None, help="adapter folder or 'none' (default: the app's choice)")
    p.add_argument("--data", type=Path, default=None, help="JSONL/CSV of texts (default: shared test split)")
    p.add_argument("--concurrent", type=int, default=50, help="requests in flight at once (default 50)")
    p.add_argument("--total", type=int, default=1000, help="requests of the sustained phase (default 1000)")
    p.add_argument("--warmup", type=int, default=100, help="sustained requests before the RSS baseline")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the app and the model")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: the package and tests/tiny.py

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    model = str(tiny_model(work / "tiny")) if args.model == "tiny" else args.model
    texts = load_texts(args.data, max(args.concurrent, 200))
    if len(texts) < args.concurrent:
        raise SystemExit(f"need {args.concurrent} distinct texts, found {len(texts)}")

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "app.py", "--model", model, "--port", str(port), "--host", "127.0.0.1",
           "--runs-dir", str(work / "runs")]  # fmt: skip
    if args.adapter:
        cmd += ["--adapter", args.adapter]
    log = open(work / "app.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    sampler = Sampler(proc.pid)
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
        client = Client(url, verbose=False, max_workers=args.concurrent + 8)
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
        rss_ready = rss_mb(proc.pid)
        sampler.start()

        errors: list[str] = []
        mismatches: list[str] = []
        client_cancels: list[str] = []

        def one(text: str) -> float:
            t0 = time.perf_counter()
            try:
                try:
                    res = client.predict(text, "score", False, True, api_name="/classify")
                except CancelledError:
                    # gradio_client's shared event-stream reader can drop a job when it closes just as the
                    # job is submitted (a client-side race; the server sees no error). Counted, then retried.
                    client_cancels.append(text)
                    res = client.predict(text, "score", False, True, api_name="/classify")
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown, whatever its type
                errors.append(f"{type(exc).__name__}: {exc}")
                return time.perf_counter() - t0
            ms = time.perf_counter() - t0
            want = expected[text]
            same = res["text"] == text and res["label"] == want.label
            probs = res["probabilities"] or {}
            diffs = [abs(probs.get(k, -1) - v) for k, v in want.probabilities.items()]
            same = same and max(diffs) <= PROB_TOLERANCE
            if not same:
                mismatches.append(f"{text[:40]!r}: got {res['label']} for {res['text'][:40]!r}")
            return ms

        # 1. the burst: every request submitted before any is answered
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            burst = list(pool.map(one, texts[: args.concurrent]))
        burst_s = time.perf_counter() - t0

        # 2. sustained load, RSS marks every 100 requests
        marks: list[tuple[int, float]] = []
        done = 0
        lock = threading.Lock()

        def counted(text: str) -> float:
            nonlocal done
            ms = one(text)
            with lock:
                done += 1
                if done % 100 == 0 or done == args.warmup:
                    marks.append((done, rss_mb(proc.pid)))
            return ms

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            steady = list(pool.map(counted, (texts[i % len(texts)] for i in range(args.total))))
        steady_s = time.perf_counter() - t0
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

    warm = next((mb for n, mb in marks if n == args.warmup), marks[0][1] if marks else rss_end)
    per_k = (rss_end - warm) / max(1, args.total - args.warmup) * 1000
    peak = max(sampler.samples or [rss_end])
    rate = args.total / steady_s
    phases = {"b": burst, "s": steady}
    ms = {k: (statistics.median(v) * 1000, pct(v, 0.99) * 1000) for k, v in phases.items()}
    rows = [
        ("model", status["model"] + (f" + {status['adapter']}" if status.get("adapter") else "")),
        ("device / cores", f"{status.get('device')} / {os.cpu_count()} CPU cores"),
        (f"burst: {args.concurrent} at once", f"{burst_s:.2f} s, {args.concurrent / burst_s:.1f} req/s"),
        ("burst latency p50 / p99", "{:.0f} / {:.0f} ms".format(*ms["b"])),
        (f"sustained: {args.total}, {args.concurrent} in flight", f"{steady_s:.1f} s, {rate:.1f} req/s"),
        ("sustained latency p50 / p99", "{:.0f} / {:.0f} ms".format(*ms["s"])),
        ("errors / wrong answers", f"{len(errors)} / {len(mismatches)} of {args.concurrent + args.total}"),
        ("client-side cancels, retried", str(len(client_cancels))),
        ("RSS ready / warm / end / max", f"{rss_ready:.0f} / {warm:.0f} / {rss_end:.0f} / {peak:.0f} MiB"),
        (f"RSS growth after {args.warmup}", f"{rss_end - warm:+.1f} MiB ({per_k:+.1f} MiB per 1000)"),
        ("app still running", "yes" if alive else "NO"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("RSS every 100 requests (MiB): " + ", ".join(f"{n}: {mb:.0f}" for n, mb in marks))
    for line in (errors + mismatches)[:10]:
        print("  " + line)
    return 1 if errors or mismatches or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
