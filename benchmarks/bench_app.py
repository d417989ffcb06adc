"""The app as a user meets it: `python app.py` to a served page, to a ready model, then classify latency.

    python benchmarks/bench_app.py                          # embedded model (converted on first use)
    python benchmarks/bench_app.py --model /path/to/ckpt --requests 50 --burst 20

Starts app.py in a subprocess on a free port and prints one table: seconds until HTTP 200 on / (the page
is served while the model loads), seconds until the model is ready, the median and 90th-percentile
latency of score-mode classify requests sent one after another through gradio_client (and the model's
own share of it), and the wall time and rate of a burst of concurrent requests. Texts come from
assets/examples.json (or --data, a JSONL/CSV file with a text column). Run it twice for a warm cache.
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
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_texts(data: str | None) -> list[str]:
    if data:
        sys.path.insert(0, str(REPO))
        from gemma_emotion.data import load_split

        return list(load_split(data, require_labels=False)["text"])
    return [item["text"] for item in json.loads((REPO / "assets" / "examples.json").read_text())]


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no HTTP 200 from {url} within {timeout:.0f} s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--adapter", default=None, help="adapter folder or 'none' (default: the app's choice)")
    p.add_argument("--data", default=None, help="a JSONL/CSV file of texts (default: assets/examples.json)")
    p.add_argument("--requests", type=int, default=30, help="sequential classify requests (default 30)")
    p.add_argument("--burst", type=int, default=20, help="concurrent requests in the burst (0 = skip)")
    p.add_argument("--concurrency", type=int, default=None, help="the app's queue concurrency limit")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the page and the model")
    args = p.parse_args()

    texts = load_texts(args.data)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    runs = tempfile.mkdtemp(prefix="bench-app-runs-")
    cmd = [sys.executable, "app.py", "--model", args.model, "--port", str(port), "--host", "127.0.0.1",
           "--runs-dir", runs]  # fmt: skip
    if args.adapter:
        cmd += ["--adapter", args.adapter]
    env = dict(os.environ)
    if args.concurrency:
        env["GEMMA_EMOTION_CONCURRENCY"] = str(args.concurrency)
    log = open(Path(runs) / "app.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(url, proc, args.timeout)
        served_s = time.perf_counter() - start

        from gradio_client import Client

        client = Client(url, verbose=False)
        while True:
            status = client.predict(api_name="/status")
            if status["state"] != "loading":
                break
            if time.perf_counter() - start > args.timeout:
                raise SystemExit(f"model not ready within {args.timeout:.0f} s: {status}")
            time.sleep(0.2)
        ready_s = time.perf_counter() - start
        if status["state"] != "ready":
            raise SystemExit(f"model failed to load: {status['error']}")

        client.predict(texts[0], "score", api_name="/classify")  # warm-up: prefix cache, first kernels
        wall, model_ms = [], []
        for i in range(args.requests):
            t0 = time.perf_counter()
            res = client.predict(texts[i % len(texts)], "score", api_name="/classify")
            wall.append((time.perf_counter() - t0) * 1000)
            model_ms.append(res["latency_ms"])

        burst_s = None
        if args.burst:
            t0 = time.perf_counter()
            jobs = [
                client.submit(texts[i % len(texts)], "score", api_name="/classify") for i in range(args.burst)
            ]
            with ThreadPoolExecutor(min(args.burst, 32)) as pool:
                list(pool.map(lambda job: job.result(timeout=args.timeout), jobs))
            burst_s = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    rows = [
        ("model", f"{status['model']}" + (f" + {status['adapter']}" if status.get("adapter") else "")),
        ("device", status.get("device") or "?"),
        ("python app.py → HTTP 200 on /", f"{served_s:.2f} s"),
        ("python app.py → model ready", f"{ready_s:.2f} s"),
        (f"classify latency, median of {len(wall)} (client)", f"{statistics.median(wall):.1f} ms"),
        ("classify latency, p90 (client)", f"{pct(wall, 0.9):.1f} ms"),
        ("  of which model time, median", f"{statistics.median(model_ms):.1f} ms"),
    ]
    if burst_s is not None:
        rows.append(
            (
                f"burst of {args.burst} concurrent requests",
                f"{burst_s:.2f} s ({args.burst / burst_s:.1f} req/s)",
            )
        )
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 24}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
