"""`prefect-openai-chat extract`: a night on your own file, from the command line.

The same `extract_records` flow as the deployment, with a progress bar and the summary
table. Every misuse found before the first call (a schema that does not import, a
missing source, an output of an unknown kind, a ChatModel block that is not saved) is
one line on stderr and exit code 2.

Example:
    >>> from prefect_openai_chat.extract_command import default_quarantine
    >>> default_quarantine("out/tickets.csv")
    'out/tickets.quarantine.jsonl'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import PurePosixPath
from typing import Any

EXAMPLES = """examples:
  # offline: the simulator in another terminal, blocks that call it
  prefect-openai-chat simulator --profile flaky --port 18787
  prefect-openai-chat setup --simulator

  # the 300 sample tickets of the package into a CSV file
  prefect-openai-chat extract prefect_openai_chat/data/tickets.jsonl \\
      --schema prefect_openai_chat.examples.tickets:SupportTicket \\
      --prompt 'Subject: {subject}\\n\\n{body}' --key-field ticket_id \\
      --output out/tickets.csv

  # your own CSV and schema (a module on PYTHONPATH), quarantine where you want it
  PYTHONPATH=. prefect-openai-chat extract invoices.csv --schema my_schemas:Invoice \\
      --prompt '{text}' --output out/invoices.parquet --quarantine out/bad.jsonl

  # half price through the Batch API, or four shards on the flow's task runner
  prefect-openai-chat extract tickets.jsonl ... --via batch
  prefect-openai-chat extract tickets.jsonl ... --shards 4

The prompt is a str.format template over each record's fields; `\\n` in it is a newline.
Records answered before (same content, schema, prompt, model) come from the record
ledger, for free; --ledger PATH (or --ledger off) chooses another one."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register `extract` on the CLI's subparsers."""
    parser = commands.add_parser(
        "extract",
        help="extract a schema from every record of your JSONL or CSV file (extract-records)",
        description="Run the extract-records flow (the one the deployment runs) over SOURCE,"
        " a .jsonl or .csv file or an fsspec URL: valid rows to --output (.jsonl, .csv,"
        " .parquet, .sqlite), every other record with its reason to --quarantine.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="a .jsonl or .csv file, or a URL")
    parser.add_argument(
        "--schema", required=True, metavar="MODULE:MODEL", help="the pydantic model to extract"
    )
    parser.add_argument(
        "--prompt", required=True, help="str.format template over a record's fields"
    )
    parser.add_argument(
        "--output", required=True, help="where valid rows go: .jsonl, .csv, .parquet, .sqlite"
    )
    parser.add_argument(
        "--quarantine",
        help="where the other records go, with the reason (default: OUTPUT's name with"
        " .quarantine.jsonl)",
    )
    parser.add_argument(
        "--model",
        default="nightly-chat-model",
        metavar="BLOCK",
        help="the saved ChatModel block to call (default: nightly-chat-model, as `setup` saves it)",
    )
    parser.add_argument("--key-field", help="the field that identifies a record (else its line)")
    parser.add_argument("--instructions", help="what to extract, in words")
    parser.add_argument(
        "--via",
        choices=["online", "batch"],
        default="online",
        help="online (answers now, the default) or batch: the Batch API, half the price",
    )
    parser.add_argument(
        "--batch-poll",
        type=float,
        default=30.0,
        metavar="S",
        help="with --via batch: seconds between two looks at a running batch (default 30)",
    )
    parser.add_argument(
        "--shards", type=int, default=1, metavar="N", help="split the source into N shards"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="most calls in flight (default 16)"
    )
    parser.add_argument(
        "--ledger",
        metavar="PATH|off",
        help="the record ledger: a SQLite path, a postgresql:// URL, or off (default: the"
        " one under PREFECT_HOME, shared by every run)",
    )
    parser.set_defaults(handler=run)
    return parser  # type: ignore[no-any-return]


def default_quarantine(output: str) -> str:
    """The quarantine beside `output`: its name with `.quarantine.jsonl`."""
    path = PurePosixPath(output)
    return str(path.with_name(f"{path.stem}.quarantine.jsonl"))


def _ledger(value: str | None) -> bool | str:
    if value is None:
        return True
    return False if value.lower() in ("off", "false", "no", "none") else value


def flow_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments of `extract_records` for these options (the one place that maps the
    command line onto the flow); `ExtractionSpec` and `RunOptions` refuse bad ones."""
    from prefect_openai_chat.extraction.spec import ExtractionSpec
    from prefect_openai_chat.flows.options import RunOptions

    via = args.via
    return {
        "source": args.source,
        "output": args.output,
        "quarantine": args.quarantine or default_quarantine(args.output),
        "chat_model": args.model,
        "spec": ExtractionSpec(
            schema=args.schema,
            prompt=args.prompt.replace("\\n", "\n"),
            instructions=args.instructions,
            key_field=args.key_field,
        ),
        "run": RunOptions(
            via=via,
            batch_api={"poll_interval_s": args.batch_poll} if via == "batch" else None,
            shards=args.shards,
            concurrency=args.concurrency,
            cache=_ledger(args.ledger),
        ),
    }


def check_arguments(arguments: dict[str, Any]) -> int | None:
    """The run's own pre-flight (`preflight`: the source, the outputs, the ledger, the
    prompt against the records), before any Prefect API or call. Returns how many records
    the source holds."""
    from prefect_openai_chat.flows.checks import preflight
    from prefect_openai_chat.flows.sources import count_records

    checked = preflight(
        arguments["source"],
        arguments["output"],
        arguments["quarantine"],
        arguments["spec"],
        arguments["run"],
    )
    return count_records(checked.source)


def check_model_block(name: str) -> None:
    """InvalidInputError when no ChatModel block of that name is saved."""
    from prefect_openai_chat.blocks import ChatModel
    from prefect_openai_chat.errors import InvalidInputError

    try:
        ChatModel.load(name)
    except ValueError as exc:
        raise InvalidInputError(
            f"no ChatModel block named {name!r} on the Prefect API ({exc}); save one with"
            " `prefect-openai-chat setup` (or `prefect-openai-chat setup --simulator`,"
            " offline), or name a saved one with --model"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Check the options, run the flow with a progress bar, print the summary table."""
    from prefect_openai_chat.demo import prefect_session, quiet_prefect_environment

    quiet_prefect_environment()  # before Prefect starts a server
    arguments = flow_arguments(args)
    total = check_arguments(arguments)
    with prefect_session():
        check_model_block(args.model)
        summary = _run_with_progress(arguments, total)
    _print(summary, arguments)
    if summary["records"] and not summary["valid"]:
        print(
            f"extract: nothing was extracted, all {summary['records']} records are in the"
            f" quarantine {summary['quarantine']} with their reasons",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_with_progress(arguments: dict[str, Any], total: int | None) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from prefect_openai_chat.flows import extract_records
    from prefect_openai_chat.flows.summary import progress_listener

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("records", total=total)

        def moved(done: int, run_total: int | None) -> None:
            bar.update(task, completed=done, total=run_total or total)

        with progress_listener(moved):
            summary: dict[str, Any] = extract_records(**arguments)
        bar.update(task, completed=summary["records"], total=summary["records"])
    return summary


def _print(summary: dict[str, Any], arguments: dict[str, Any]) -> None:
    from rich.console import Console

    from prefect_openai_chat.demo import ledger_note, prefect_api, summary_table

    console = Console()
    console.print(summary_table(summary, "prefect-openai-chat extract: extract-records"))
    console.print(f"Prefect API:  {prefect_api()}")
    note = ledger_note(
        summary,
        str(arguments["run"].cache)
        if isinstance(arguments["run"].cache, str)
        else "under PREFECT_HOME",
        "--ledger off (or a new --ledger PATH) calls again",
    )
    if note:
        console.print(note)
    console.print(f"valid rows:   {summary['output']}")
    console.print(f"quarantine:   {summary['quarantine']}")
