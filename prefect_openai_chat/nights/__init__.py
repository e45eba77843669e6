"""The nights in a picture: the figures of a flow's last runs, charted.

`read_nights` reads them back from the runs' summary artifacts through the Prefect API,
`render` / `markdown` / `page` draw them (matplotlib, the `charts` extra), and the
`nights_chart` flow publishes the chart as a Markdown artifact on its own flow run.
`prefect-openai-chat nights` runs that flow and writes the chart to a file.
"""

from prefect_openai_chat.nights.figures import FIGURES, Night, read_nights

__all__ = ["FIGURES", "Night", "read_nights"]
