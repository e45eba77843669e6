"""`class_cache` drops a class's entry with the class: schemas made per run do not pile up."""

from __future__ import annotations

import gc
import threading
import time
import weakref

from pydantic import BaseModel, create_model

from prefect_openai_chat.extraction.class_cache import class_cache


def collect_until(cache: weakref.WeakKeyDictionary[type, object], size: int) -> None:
    """Collect until `cache` holds `size` entries, for at most 5 s.

    `gc.collect()` does nothing while another thread's collection is under way (CPython
    returns 0 at once), and a test process has threads of its own: one call may not do.
    """
    deadline = time.monotonic() + 5.0
    while len(cache) > size and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)


def test_an_entry_goes_with_its_class() -> None:
    @class_cache
    def field_names(model: type[BaseModel]) -> tuple[str, ...]:
        return tuple(model.model_fields)

    rows = [create_model(f"Row{n}", a=(int, ...)) for n in range(3)]
    assert field_names(rows[0]) == ("a",) and field_names(rows[0]) is field_names(rows[0])
    for row in rows:
        field_names(row)
    assert len(field_names.cache) == 3
    kept = rows[1]
    del rows, row
    collect_until(field_names.cache, 1)
    assert list(field_names.cache) == [kept]


def test_threads_asking_for_one_class_get_one_value() -> None:
    @class_cache
    def build(model: type[BaseModel]) -> object:
        time.sleep(0.01)  # the threads overlap while building
        return object()

    row = create_model("Row", a=(int, ...))
    values: list[object] = []
    threads = [threading.Thread(target=lambda: values.append(build(row))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(values) == 4 and len({id(value) for value in values}) == 1
    assert list(build.cache) == [row]
