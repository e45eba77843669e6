"""Prefect flows: ETL pipelines composed from the plugin's tasks."""

from prefect_openai_chat.flows.extract_records import extract_records

__all__ = ["extract_records"]
