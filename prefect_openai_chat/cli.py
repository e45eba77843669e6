"""The `prefect-openai-chat` command: the demo, the simulator, block setup, extract, nights.

Example:
    $ prefect-openai-chat --version
    $ prefect-openai-chat demo                     # the local simulator, no key, no cost
    $ prefect-openai-chat demo --real --records 20 # OPENAI_API_KEY: real, paid calls
    $ prefect-openai-chat simulator --profile flaky --port 18787 --seed 7
    $ prefect-openai-chat setup --simulator        # offline blocks (or OPENAI_API_KEY)
    $ prefect-openai-chat extract tickets.jsonl --schema pkg.mod:Model --prompt '{text}' \\
          --output out/rows.csv
    $ prefect-openai-chat nights --last 30 --output nights.html
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="extract support tickets with a Prefect flow (the local simulator unless --real)",
        description="Run the extract-records flow over the shipped sample support tickets"
        " and print what it did. The calls go to the local simulator, so it needs no key"
        " and no network, unless you ask for a real, paid API with --real or"
        " --credentials-block.",
    )
    where = demo.add_mutually_exclusive_group()
    where.add_argument(
        "--simulate",
        action="store_true",
        help="call the local simulator (the default)",
    )
    where.add_argument(
        "--real",
        action="store_true",
        help="call the real API: OPENAI_API_KEY, and OPENAI_BASE_URL when set (costs money)",
    )
    where.add_argument(
        "--credentials-block",
        metavar="NAME",
        help="call the API of this saved OpenAICredentials block (costs money)",
    )
    demo.add_argument(
        "--profile",
        default="flaky",
        help="simulator profile: ideal, flaky, rate-limited, outage, sloppy-json,"
        " chaos (default: flaky)",
    )
    demo.add_argument("--seed", type=int, default=7, help="simulator seed (default: 7)")
    demo.add_argument(
        "--records",
        type=int,
        default=300,
        help="how many sample tickets to process, 1 to 300 (default: 300)",
    )
    demo.add_argument(
        "--model",
        default="gpt-4o-mini-2024-07-18",
        help="model to request (default: gpt-4o-mini-2024-07-18)",
    )
    demo.add_argument(
        "--output",
        default="prefect-openai-chat-demo",
        help="folder for the rows, the quarantine and the summary"
        " (default: ./prefect-openai-chat-demo)",
    )
    demo.add_argument(
        "--fresh",
        action="store_true",
        help="start a new record ledger for this run, so no record comes from an earlier"
        " run's answers (without it, a second demo answers every record from the ledger:"
        " no call, 0 tokens)",
    )
    demo.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from prefect_openai_chat.demo import DemoError, first_reason, quiet_prefect_environment

    quiet_prefect_environment()  # before Prefect starts a server
    from prefect_openai_chat.demo import run_demo

    if not 1 <= args.records <= 300:
        print("--records must be between 1 and 300", file=sys.stderr)
        return 2
    try:
        summary = run_demo(
            profile=args.profile,
            seed=args.seed,
            model=args.model,
            records=args.records,
            output=args.output,
            real=args.real,
            credentials_block=args.credentials_block,
            fresh=args.fresh,
        )
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if summary["records"] != summary["valid"] + summary["quarantined"]:
        print("demo: some records ended neither valid nor quarantined", file=sys.stderr)
        return 1
    if summary["records"] and not summary["valid"]:
        reason = first_reason(summary["quarantine"]) or "see the quarantine file"
        print(
            f"demo FAILED: nothing was extracted, all {summary['records']} records were"
            f" quarantined ({summary['quarantine']}). First reason: {reason}",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_setup(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = commands.add_parser(
        "setup",
        help="save credentials and a ChatModel block from environment variables",
        description="Register the plugin's block types with the Prefect API and save an"
        " OpenAICredentials block and a ChatModel block built from OPENAI_API_KEY (and"
        " OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID when set), or, with --simulator,"
        " blocks that call the bundled simulator: no key, no network, no cost.",
        epilog="examples:\n"
        "  prefect-openai-chat setup                     # OPENAI_API_KEY from the environment\n"
        "  prefect-openai-chat simulator --profile flaky --port 18787   # another terminal\n"
        "  prefect-openai-chat setup --simulator         # blocks that call it (offline)\n"
        "  prefect-openai-chat setup --simulator http://simulator:18787/v1"
        "   # a worker elsewhere",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup.add_argument(
        "--simulator",
        nargs="?",
        const="",
        default=None,
        metavar="URL",
        help="save blocks that call the simulator at URL (default http://127.0.0.1:18787/v1)"
        " with its key sk-simulator, instead of OPENAI_API_KEY; keep `prefect-openai-chat"
        " simulator` running there (in another terminal, or as a service with --host 0.0.0.0"
        " for workers in other containers)",
    )
    setup.add_argument(
        "--credentials",
        default="openai-credentials",
        help="name of the credentials block (default: openai-credentials)",
    )
    setup.add_argument(
        "--chat-model",
        default="nightly-chat-model",
        help="name of the ChatModel block (default: nightly-chat-model)",
    )
    setup.add_argument(
        "--model",
        default="gpt-4o-mini-2024-07-18",
        help="model of the ChatModel block (default: gpt-4o-mini-2024-07-18)",
    )
    setup.add_argument(
        "--allow-temporary-server",
        action="store_true",
        help="save the blocks even when PREFECT_API_URL is not set, to a temporary server"
        " thrown away when the command ends (without it, setup refuses)",
    )
    setup.set_defaults(handler=_run_setup)


def _run_setup(args: argparse.Namespace) -> int:
    from prefect_openai_chat.setup import (
        SIMULATOR_COMMAND,
        required_key,
        save_blocks,
        simulator_answers,
        simulator_base_url,
        temporary_server_warning,
    )

    if args.simulator is None:
        try:
            required_key()
        except ValueError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2
    warning = temporary_server_warning()
    if warning and not args.allow_temporary_server:
        print(f"setup failed: {warning}", file=sys.stderr)
        return 2
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    credentials, chat_model = save_blocks(
        args.credentials, args.chat_model, args.model, simulator_url=args.simulator
    )
    print(f"saved OpenAICredentials block {credentials!r} and ChatModel block {chat_model!r}")
    if args.simulator is not None:
        url = simulator_base_url(args.simulator)
        state = "answers now" if simulator_answers(url) else "is NOT running yet"
        print(
            f"they call the simulator at {url} (key sk-simulator), which {state}: keep it"
            f" running while flows and workers use these blocks, e.g. `{SIMULATOR_COMMAND}`"
            " in another terminal (add --host 0.0.0.0 to serve workers in other containers)"
        )
    if warning:
        print("they went to a temporary server and are gone: see the warning", file=sys.stderr)
    return 0


def _version() -> str:
    """The installed distribution's version, else the package's own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefect-openai-chat")
    except PackageNotFoundError:
        from prefect_openai_chat import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="prefect-openai-chat",
        description="OpenAI Chat Completions inside Prefect pipelines, safely.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(commands)
    _add_setup(commands)
    from prefect_openai_chat.extract_command import add_parser as add_extract

    add_extract(commands)
    from prefect_openai_chat.nights.command import add_parser as add_nights

    add_nights(commands)
    from prefect_openai_chat.simulator.cli import add_parser as add_simulator
    from prefect_openai_chat.simulator.cli import run as run_simulator

    add_simulator(commands)
    commands.choices["simulator"].set_defaults(handler=run_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script.

    A misuse (an `InvalidInputError`, a path that cannot be used, any `OSError`) is one
    line on stderr saying what was wrong and what to do, and exit code 2 as argparse
    gives for a bad option; never a traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except Exception as exc:
        if not is_misuse(exc):
            raise
        print(f"prefect-openai-chat {args.command}: error: {misuse_message(exc)}", file=sys.stderr)
        return 2


def is_misuse(exc: BaseException) -> bool:
    """What the user can fix: an `InvalidInputError`, an `OSError`, a server that cannot
    be reached (looked up lazily, so that `--help` imports neither the SDK nor httpx)."""
    if isinstance(exc, OSError):
        return True
    errors, httpx = sys.modules.get("prefect_openai_chat.errors"), sys.modules.get("httpx")
    if errors is not None and isinstance(exc, errors.InvalidInputError):
        return True
    return httpx is not None and isinstance(exc, httpx.TransportError)


def misuse_message(exc: BaseException) -> str:
    """One line saying what was wrong and what to do about it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None:
        what = exc.strerror or type(exc).__name__
        return (
            f"{what}: {str(exc.filename)!r}; choose another path, or fix that one"
            " (it must be a folder you may write to when it is an output)"
        )
    if isinstance(exc, OSError):
        return f"{text}; check the address, the path or the permission it names, and retry"
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError):
        try:
            where = f" {exc.request.url}"
        except RuntimeError:  # no request attached
            where = ""
        return (
            f"cannot reach{where} ({text}); start that server (`prefect server start` for"
            " the Prefect API) or fix its address (PREFECT_API_URL, OPENAI_BASE_URL)"
        )
    return text


if __name__ == "__main__":
    sys.exit(main())
