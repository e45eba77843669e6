"""The night's store on disk: a killed night's file is removed by the next night; the run's
key is hashed from the store's keys as they are read, never all held at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from prefect_openai_chat.extraction.batch_api.ledger import run_key
from prefect_openai_chat.extraction.batch_api.store import NightStore, pack
from prefect_openai_chat.flows.batch_api import _keys


def test_a_killed_nights_folder_is_removed_by_the_next_night_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"batch-night-{int(ended.stdout)}-abc"
    dead.mkdir()
    (dead / "night.sqlite").write_bytes(b"x" * 1024)
    live = NightStore(tmp_path)
    try:
        assert not dead.exists()
        other = NightStore(tmp_path)  # this process is alive: its folders stay
        assert live.folder.exists() and other.folder.exists()
        other.close()
        assert not other.folder.exists()
    finally:
        live.close()


def test_the_run_key_is_hashed_from_the_store_s_keys_without_holding_them(tmp_path: Path) -> None:
    store = NightStore(tmp_path)
    count = 60_000
    try:
        keys = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(count)]
        store.add_works([(key, pack(None), n) for n, key in enumerate(keys)])
        expected = run_key("gpt-4o-mini", "http://x", keys)  # a list: sorted here
        del keys
        tracemalloc.start()
        try:
            found = run_key("gpt-4o-mini", "http://x", _keys(store))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        store.close()
    assert found == expected
    # 60,000 keys held at once for sorting took about 10 MB; a page at a time, well under 2
    assert peak < 2_000_000, f"peak {peak} bytes while hashing {count} keys"


def test_keys_given_out_of_order_by_an_iterator_are_refused() -> None:
    with pytest.raises(ValueError, match="out of order"):
        run_key("gpt-4o-mini", "http://x", iter(["b", "a"]))


def test_a_work_s_request_line_is_stored_once_beside_it_not_in_every_save(
    tmp_path: Path,
) -> None:
    """The line (the instructions and the schema of every request, most of a work's bytes)
    is compressed once when it is made; the work is saved at every step without it."""
    from prefect_openai_chat.extraction.batch_api.lines import batch_line
    from prefect_openai_chat.extraction.batch_api.night import Work
    from prefect_openai_chat.extraction.batch_api.store import unpack

    store = NightStore(tmp_path)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "rules " * 400}]}
    work = Work("k1", "Ticket 7", line=batch_line("k1", body, 812))
    store.add_works([("k1", pack(Work("k1", "Ticket 7", status="new")), 0)])
    store.save_works([("k1", pack(work), work.status)])
    store.save_lines([("k1", work.line.data, len(work.line.data), 812)])
    saved = pack(work)
    assert unpack(saved).line is None and len(saved) < 200  # the work alone
    assert list(store.lines("status = 'queued'", ())) == [("k1", work.line.data)]
    assert list(store.sizes("status = 'queued'", ())) == [("k1", len(work.line.data), 812)]
    work.status = "answered"  # a later step saves the work, and leaves its line as it was
    store.save_works([("k1", pack(unpack(saved)), "queued")])
    assert list(store.lines("status = 'queued'", ())) == [("k1", work.line.data)]
    store.close()


def test_a_night_counts_each_line_as_the_api_bills_it_and_each_format_once(
    tmp_path: Path,
) -> None:
    """A line's prompt tokens are `count_request_tokens`' (the response format's schema
    included); the shared format object of the first requests is serialized once, and a
    re-ask's new format object is counted for itself."""
    from prefect_openai_chat.examples.tickets import SupportTicket
    from prefect_openai_chat.extraction.batch_api import BatchApiOptions, BatchNight
    from prefect_openai_chat.extraction.batch_api.ledger import BatchLedger
    from prefect_openai_chat.extraction.options import ExtractionOptions
    from prefect_openai_chat.extraction.partial import subset_model
    from prefect_openai_chat.extraction.prompts import build_partial_request, build_record_request
    from prefect_openai_chat.tokens import count_request_tokens

    model = "gpt-4o-mini"
    store = NightStore(tmp_path)
    ledger = BatchLedger.open(tmp_path / "runs", "run")
    night = BatchNight(
        SupportTicket, model, BatchApiOptions(), ledger, ExtractionOptions(model), store=store
    )
    bodies = []
    for text in ("Ticket 7: refund me", "Ticket 8: the app crashes on start"):
        messages, params = build_record_request(SupportTicket, text, model=model)
        bodies.append({"model": model, "messages": messages, **params})
    assert bodies[0]["response_format"] is bodies[1]["response_format"]  # shared
    fields = subset_model(SupportTicket, ("category",))
    messages, params = build_partial_request(
        fields, "Ticket 7: refund me", {"category": "money"}, "Fix only these fields:", model=model
    )
    bodies.append({"model": model, "messages": messages, **params})
    for body in bodies:
        assert count_request_tokens(body, night._formats) == count_request_tokens(body)
    assert len(night._formats._known) == 2
    store.close()
