"""`prefect-openai-chat simulator`: serve the simulator in the foreground.

The lead's CLI calls `add_parser(subparsers)` and `run(args)`; `python -m
prefect_openai_chat.simulator` uses the same two functions.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="prefect-openai-chat")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["simulator", "--profile", "flaky", "--seed", "7"]).seed
    7
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from prefect_openai_chat.simulator.faults import FAULT_DOCS
from prefect_openai_chat.simulator.profiles import PROFILE_DOCS, PROFILES, settings_for
from prefect_openai_chat.simulator.settings import OutageWindow, SimulatorSettings

DESCRIPTION = (
    "Serve an OpenAI-compatible Chat Completions simulator on loopback (or, with"
    " --host 0.0.0.0, on every interface, for a worker in another container)."
)
DEFAULT_PORT = 18787
"""The suggested port: 8787 (the old one) is Dask's dashboard and RStudio Server's; 18787
is no common tool's default (not Dask, Jupyter 8888, Prefect 4200, Ollama 11434, Monero
18080-18089, RabbitMQ 15672, Jaeger 16686) and is below the ephemeral ranges (32768 on
Linux, 49152 on Windows and macOS), so no outgoing connection takes it."""
ALL_INTERFACES = ("0.0.0.0", "::")
EXPOSED_WARNING = (
    "warning: --host {host} serves the simulator on every network interface: other"
    " machines and containers can reach it, with no protection but its API key. It is a"
    " test server; keep it on a private network"
)


def _epilog() -> str:
    profiles = "\n".join(f"  {name:<13} {doc}" for name, doc in PROFILE_DOCS.items())
    faults = "\n".join(f"  {name:<15} {doc}" for name, doc in FAULT_DOCS.items())
    return (
        f"profiles:\n{profiles}\n\nfaults (for --fault, --script and the x-simulator-fault "
        f"request header):\n{faults}\n\nexample:\n  prefect-openai-chat simulator --profile "
        f"flaky --port {DEFAULT_PORT} --seed 7\n  then: OpenAI(base_url="
        f"'http://127.0.0.1:{DEFAULT_PORT}/v1', api_key='sk-simulator')"
    )


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the simulator's options to `parser`, in groups as `--help` shows them."""
    _add_server_options(
        parser.add_argument_group("the server: where it listens, who it accepts, how it logs")
    )
    _add_fault_options(parser.add_argument_group("faults: random, scripted, outages"))
    _add_limit_options(parser.add_argument_group("rate limits and the models served"))
    _add_timing_options(
        parser.add_argument_group("timing: how fast answers come, how long hangs last")
    )
    return parser


def _add_server_options(group: Any) -> None:
    group.add_argument(
        "--profile", default="ideal", choices=list(PROFILES), help="Behaviour preset (see below)."
    )
    group.add_argument(
        "--host",
        default="127.0.0.1",
        type=_host,
        help="Address to bind: loopback (127.0.0.1, ::1, localhost; the default 127.0.0.1),"
        " or 0.0.0.0 / :: for every interface, with a warning.",
    )
    group.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"Port to bind, 1 to 65535; 0 picks a free one (default {DEFAULT_PORT}).",
    )
    group.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="Accepted API key; repeat for several (default sk-simulator).",
    )
    group.add_argument(
        "--log-level", default="warning", help="uvicorn log level (default warning)."
    )
    group.add_argument(
        "--request-log",
        metavar="PATH",
        help="Append every chat request (index, time, status, faults, body) to this JSONL file.",
    )
    group.add_argument(
        "--settings-json",
        metavar="JSON",
        help="Any settings as one JSON object (applied after the profile).",
    )


def _port(text: str) -> int:
    """A port number for argparse: 0 to 65535 (0 picks a free port)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give a number from 1 to 65535 (or 0 to pick a free one),"
            f" e.g. {DEFAULT_PORT}"
        )
    return port


def _host(text: str) -> str:
    """A host for argparse: a loopback address, or every interface (0.0.0.0, ::)."""
    from prefect_openai_chat.simulator.server import check_loopback

    if text in ALL_INTERFACES:
        return text
    try:
        return check_loopback(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a loopback address: use 127.0.0.1, ::1 or localhost, or 0.0.0.0"
            " (or ::) to serve every interface, e.g. for a worker in another container"
        ) from None


def host_warning(host: str) -> str | None:
    """The warning to print before serving on `host`: None for a loopback address."""
    return EXPOSED_WARNING.format(host=host) if host in ALL_INTERFACES else None


def _add_fault_options(group: Any) -> None:
    group.add_argument("--seed", type=int, help="Seed of the fault draws and answers (default 0).")
    group.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=RATE",
        help="Per-request probability of a fault, e.g. 503=0.05; repeatable.",
    )
    group.add_argument(
        "--script",
        nargs="*",
        metavar="FAULT",
        help="Faults of the first requests in order ('ok' = none), e.g. --script 503 503 ok.",
    )
    group.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="WINDOW",
        help="Outage START_S:END_S[:refuse|503], or #FROM:TO[:mode] by request index; repeatable.",
    )
    group.add_argument(
        "--reprompt-failure-rate",
        type=float,
        help="Chance a re-prompt gets a faulty JSON answer again.",
    )
    group.add_argument(
        "--error-format",
        choices=["openai", "vllm", "ollama"],
        help="Error body shape (default openai).",
    )


def _add_limit_options(group: Any) -> None:
    group.add_argument("--rpm", type=int, help="Requests per minute per key (default unlimited).")
    group.add_argument("--tpm", type=int, help="Tokens per minute per key (default unlimited).")
    group.add_argument(
        "--time-scale", type=float, help="60 makes a rate-limit minute last one second (default 1)."
    )
    group.add_argument(
        "--retry-after",
        type=float,
        dest="retry_after_s",
        help="retry-after of an injected 429 (default 1).",
    )
    group.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=CONTEXT",
        help="Serve an extra model with that context window; repeatable.",
    )


def _add_timing_options(group: Any) -> None:
    group.add_argument(
        "--ttft", type=float, dest="ttft_s", help="Seconds before the first token (default 0)."
    )
    group.add_argument("--tokens-per-s", type=float, help="Generation speed (default instant).")
    group.add_argument(
        "--hang", type=float, dest="hang_s", help="Longest hang in seconds (default 30)."
    )
    group.add_argument(
        "--stall",
        type=float,
        dest="stall_s",
        help="How long a stalled stream stays silent (default 30).",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `simulator` sub-command on an argparse `subparsers` object."""
    parser = subparsers.add_parser(
        "simulator",
        help="serve an OpenAI-compatible simulator with faults and rate limits",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure_parser(parser)


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (for `python -m prefect_openai_chat.simulator`)."""
    parser = argparse.ArgumentParser(
        prog="python -m prefect_openai_chat.simulator",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure_parser(parser)


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """The settings the parsed options ask for; ValueError with a clear message if wrong."""
    overrides: dict[str, Any] = {}
    for name in (
        "seed", "api_keys", "rpm", "tpm", "time_scale", "ttft_s", "tokens_per_s", "error_format",
        "reprompt_failure_rate", "hang_s", "stall_s", "retry_after_s", "script", "request_log",
    ):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if args.fault:
        overrides["fault_rates"] = dict(_pair(item, "--fault", float) for item in args.fault)
    if args.model:
        overrides["extra_models"] = dict(_pair(item, "--model", int) for item in args.model)
    if args.outage:
        overrides["outages"] = [_outage(item) for item in args.outage]
    if args.settings_json:
        try:
            extra = json.loads(args.settings_json)
        except ValueError as exc:
            raise ValueError(f"--settings-json is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise ValueError("--settings-json must be a JSON object of settings")
        overrides.update(extra)
    return settings_for(args.profile, **overrides)


def _pair(item: str, option: str, kind: Any) -> tuple[str, Any]:
    name, sep, value = item.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), kind(value)
    except ValueError:
        raise ValueError(f"{option} expects NAME=VALUE, got {item!r}") from None


def _outage(item: str) -> OutageWindow:
    by_count = item.startswith("#")
    parts = item.lstrip("#").split(":")
    try:
        mode = parts[2] if len(parts) > 2 else "503"
        low = parts[0] or None
        high = parts[1] if len(parts) > 1 and parts[1] else None
        if by_count:
            return OutageWindow(
                from_request=int(low) if low else None,
                to_request=int(high) if high else None,
                mode=mode,
            )
        return OutageWindow(
            start_s=float(low) if low else None,
            end_s=float(high) if high else None,
            mode=mode,
        )
    except (ValueError, IndexError) as exc:
        raise ValueError(
            f"--outage expects START_S:END_S[:refuse|503] or #FROM:TO[:mode], got {item!r} ({exc})"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Serve in the foreground until Ctrl-C; return the exit code."""
    try:
        settings = settings_from_args(args)
        from prefect_openai_chat.simulator.app import create_app
        from prefect_openai_chat.simulator.server import bind_socket, uvicorn_config

        sock = bind_socket(args.host, args.port, loopback_only=args.host not in ALL_INTERFACES)
    except (ValueError, OSError, OverflowError) as exc:
        print(f"prefect-openai-chat simulator: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from prefect_openai_chat.simulator.runner import READY_PREFIX

    if warning := host_warning(args.host):
        print(warning, file=sys.stderr, flush=True)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(uvicorn_config(create_app(settings), args.log_level))
    print(f"{READY_PREFIX}http://{shown}:{port}/v1", flush=True)
    print(
        f"profile={args.profile} seed={settings.seed} api_key={settings.api_keys[0]} "
        "(Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m prefect_openai_chat.simulator`."""
    return run(build_parser().parse_args(argv))
