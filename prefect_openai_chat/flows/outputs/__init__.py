"""Where a run's rows go: the checks of the paths (`paths`), one run per output
(`locks`), the formats (`sink`: JSONL; `tables`: Parquet, SQLite; `csv_rows`: CSV), and
the commit of the output and the quarantine as one step (`commit`).

`prefect_openai_chat.flows.sinks` opens them (`open_sink`, `open_outputs`) and
re-exports their public names; the modules import each other directly.
"""
