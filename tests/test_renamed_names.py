"""The names before "batch" meant only the OpenAI Batch API still import, with a warning."""

from __future__ import annotations

import importlib
import inspect

import pytest


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        ("prefect_openai_chat", "BatchReport", "ChunkReport"),
        ("prefect_openai_chat.results", "BatchReport", "ChunkReport"),
        ("prefect_openai_chat.extraction.batch_api", "BatchOptions", "BatchApiOptions"),
    ],
)
def test_an_old_class_name_warns_and_is_the_new_class(module: str, old: str, new: str) -> None:
    imported = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{old} is now {new}"):
        value = getattr(imported, old)
    assert value is getattr(imported, new)


@pytest.mark.parametrize("old", ["extract_batch", "aextract_batch"])
def test_the_old_task_names_warn_and_still_take_the_flat_keywords(old: str) -> None:
    import prefect_openai_chat
    from prefect_openai_chat import tasks

    with pytest.warns(DeprecationWarning, match=f"{old} is now a?extract_chunk"):
        task = getattr(prefect_openai_chat, old)
    with pytest.warns(DeprecationWarning):
        assert getattr(tasks, old) is task
    assert task.name == old and "prompt" in inspect.signature(task.fn).parameters
