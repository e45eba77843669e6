"""Prefect flows: ETL pipelines composed from the plugin's tasks.

`extract_records(source, output, quarantine, spec=ExtractionSpec(...), chat_model=...,
run=RunOptions(...))`: what to extract in one object, how to run it in another.
"""

from prefect_openai_chat.extraction.batch_api import BatchApiOptions
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.flows.extract_records import extract_records
from prefect_openai_chat.flows.options import RunOptions

__all__ = ["BatchApiOptions", "ExtractionSpec", "RunOptions", "extract_records"]
