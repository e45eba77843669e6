"""Example schemas and data for the demo, the deployments and the docs.

Example:
    >>> from prefect_openai_chat.examples import SupportTicket
    >>> sorted(SupportTicket.model_json_schema()["required"])
    ['category', 'customer_name', 'email', 'priority', 'product', 'summary']
"""

from prefect_openai_chat.examples.tickets import (
    SCHEMA_FOR_KIND,
    TICKET_INSTRUCTIONS,
    TICKET_PROMPT,
    BugReport,
    RefundRequest,
    ShippingIssue,
    SupportTicket,
    TicketTriage,
    sample_tickets_path,
)

__all__ = [
    "SCHEMA_FOR_KIND",
    "TICKET_INSTRUCTIONS",
    "TICKET_PROMPT",
    "BugReport",
    "RefundRequest",
    "ShippingIssue",
    "SupportTicket",
    "TicketTriage",
    "sample_tickets_path",
]
