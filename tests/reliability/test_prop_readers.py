"""Properties of the source readers (`flows/sources.py`), on generated JSONL and CSV bytes:
they never raise (a CSV header that cannot name columns is the one run-level refusal),
yield exactly one item per non-blank record, agree with `count_records`, and read what
`csv.writer` wrote, or `csv.reader(strict=True)` reads, to the same fields."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_support import OBJECTS

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.source_lines import SourceItem
from prefect_openai_chat.flows.sources import count_records, read_records

FOLDER = Path(tempfile.mkdtemp(prefix="prop-readers-"))
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
# Pieces that stress a CSV reader: quotes, commas, line endings, blanks; and worse ones
# (a lone carriage return, bytes that are not UTF-8) in some of the files.
CLEAN_CSV = [b'"', b",", b"\n", b"\r\n", b" ", b'""', b"a", b"\xc3\xa9", b"\xef\xbb\xbf"]
CSV_BYTES = st.lists(st.sampled_from(CLEAN_CSV), max_size=40) | st.lists(
    st.sampled_from([*CLEAN_CSV, b"\r", b"\xe9"]), max_size=40
)
JSON_PIECES = st.sampled_from(
    [b"{", b"}", b"[", b"]", b'"', b":", b",", b"1", b"\\ud83d", b"\\", b" ", b"\xe9", b"NaN"]
)


def _write(data: bytes, suffix: str) -> Path:
    path = FOLDER / f"in{suffix}"
    path.write_bytes(data)
    return path


def _check(items: list[SourceItem], path: Path) -> None:
    """Invariants of every reading: one item a record, lines rising, the count agreeing."""
    lines = [item.line for item in items]
    assert lines == sorted(set(lines))
    for item in items:
        assert (item.record is None) != (item.error is None), item
    assert count_records(path) == len(items)


def _jsonl_line(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["object", "pieces", "deep", "blank"]))
    if kind == "object":
        return json.dumps(draw(OBJECTS), ensure_ascii=draw(st.booleans())).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([10, 63, 64, 65, 500, 5000]))
        return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "blank":
        return draw(st.sampled_from([b"", b" ", b"\t\r"]))
    return b"".join(draw(st.lists(JSON_PIECES, max_size=12)))


@st.composite
def jsonl_files(draw: Any) -> list[bytes]:
    return [_jsonl_line(draw) for _ in range(draw(st.integers(0, 6)))]


@settings(max_examples=300)
@given(jsonl_files(), st.sampled_from([b"\n", b"\r\n"]))
def test_jsonl_gives_one_item_per_non_blank_line(lines: list[bytes], end: bytes) -> None:
    path = _write(b"".join(line + end for line in lines), ".jsonl")
    items = list(read_records(path))

    _check(items, path)
    assert [i.line for i in items] == [n for n, line in enumerate(lines, 1) if line.strip()]
    for item, line in zip(items, [line for line in lines if line.strip()], strict=True):
        if item.record is not None:
            assert item.record == json.loads(line)
            json.dumps(item.record).encode("utf-8")  # JSON data, no lone surrogate


@settings(max_examples=200)
@given(
    st.integers(1, 4).flatmap(
        lambda width: st.lists(st.lists(TEXT, min_size=width, max_size=width), max_size=6)
    ),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    st.sampled_from(["\n", "\r\n"]),
)
def test_csv_reads_back_what_csv_writer_wrote(
    rows: list[list[str]], quoting: int, end: str
) -> None:
    width = len(rows[0]) if rows else 1
    header = [f"c{n}" for n in range(width)]
    out = io.StringIO()
    writer = csv.writer(out, quoting=quoting, lineterminator=end)
    writer.writerows([header, *rows])
    path = _write(out.getvalue().encode("utf-8"), ".csv")

    items = list(read_records(path))

    _check(items, path)
    expected = [dict(zip(header, row, strict=True)) for row in rows if any(f.strip() for f in row)]
    assert [item.record for item in items] == expected


@settings(max_examples=300)
@given(CSV_BYTES)
def test_csv_bytes_never_break_the_reader(pieces: list[bytes]) -> None:
    data = b"h1,h2\n" + b"".join(pieces)
    path = _write(data, ".csv")
    try:
        items = list(read_records(path))
    except InvalidInputError as exc:  # only the header may refuse the file
        assert "the CSV header" in str(exc)
        return

    _check(items, path)
    text = data.decode("utf-8", errors="replace")
    if "\r" in text.replace("\r\n", "") or "\ufffd" in text:
        return  # csv takes a lone \r as a line end (this reader keeps it as data)
    try:
        expected = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True)][1:]
    except csv.Error:
        assert any(item.error for item in items)  # what strict csv refuses is quarantined
        return
    rows = [r for r in expected if any(f.strip() for f in r)]
    assert len(items) == len(rows)
    for item, row in zip(items, rows, strict=True):
        if len(row) == 2:
            assert item.record == {"h1": row[0], "h2": row[1]}
        else:
            assert item.error is not None and "fields, the header has 2" in item.error
