"""The roles of chat messages, as the Chat Completions API knows them: one list for all.

Example:
    >>> from prefect_openai_chat.tokens.roles import INSTRUCTION_ROLES, ROLES
    >>> sorted(INSTRUCTION_ROLES), "tool" in ROLES
    (['developer', 'system'], True)
"""

from __future__ import annotations

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Messages that instruct the model: kept when a conversation is cut, joined by the
# extraction's own instructions.
INSTRUCTION_ROLES = frozenset({"system", "developer"})
# Messages that answer an assistant's tool (or legacy function) call.
RESULT_ROLES = frozenset({"tool", "function"})
