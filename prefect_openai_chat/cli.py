"""The `prefect-openai-chat` command: the demo, the simulator, and block setup.

Example:
    $ prefect-openai-chat demo
    $ prefect-openai-chat simulator --profile flaky --port 8787 --seed 7
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="prefect-openai-chat",
        description="OpenAI Chat Completions inside Prefect pipelines, safely.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a chat completion flow against the local simulator (no key, no network)",
        description="Run a Prefect flow that sends a chat completion through the local"
        " simulator and prints the answer and its usage.",
    )
    demo.add_argument("--profile", default="flaky", help="simulator profile (default: flaky)")
    demo.add_argument("--seed", type=int, default=7, help="simulator seed (default: 7)")
    demo.add_argument("--model", default="gpt-4o-mini-2024-07-18", help="model name to request")
    demo.set_defaults(handler=_run_demo)

    from prefect_openai_chat.simulator.cli import add_parser as add_simulator
    from prefect_openai_chat.simulator.cli import run as run_simulator

    add_simulator(commands)
    commands.choices["simulator"].set_defaults(handler=run_simulator)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from prefect_openai_chat.demo import run_demo

    return run_demo(profile=args.profile, seed=args.seed, model=args.model)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
