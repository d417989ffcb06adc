"""Start the gemma-emotion Gradio app: `python app.py [--model M] [--adapter A] [--port N] ...`.

Thin on purpose: settings come from space.yaml, then GEMMA_EMOTION_* variables, then these flags; the page
is built by `gemma_emotion.ui.build_app` and served at once while the model loads in the background.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gemma_emotion import gpu
from gemma_emotion.errors import UserError
from gemma_emotion.settings import load_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)"
    )
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--model", default=None, help="embedded, a Hub id or a checkpoint folder")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder, or 'none'")
    p.add_argument("--runs-dir", default=None, help="folder for runs, reports and corrections")
    p.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    p.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="public-demo restrictions (no training, no server paths); default: on a Space only",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gpu.load_spaces()  # on ZeroGPU `spaces` must be imported before anything touches CUDA
    try:
        settings = load_settings(
            overrides={
                "model": args.model,
                "adapter": args.adapter,
                "storage": args.runs_dir,
                "demo_mode": args.demo,
            }
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from gemma_emotion.ui import AppState, build_app, launch_options

    state = AppState(settings)
    state.load(settings.model, state.initial_adapter())  # background: the page is served meanwhile
    app = build_app(state)
    app.queue(
        default_concurrency_limit=settings.queue.default_concurrency_limit, max_size=settings.queue.max_size
    )
    app.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
