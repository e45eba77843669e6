"""`prefect-openai-chat setup`: from environment variables to saved blocks in one command."""

from __future__ import annotations

import os

from pydantic import SecretStr

TEMPORARY_SERVER_WARNING = (
    "PREFECT_API_URL is not set, so Prefect would start a temporary server for this"
    " command alone and throw it away afterwards, with the blocks saved in it."
    " Start a server (`prefect server start`, in its own terminal), point every shell at it"
    " (`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`), then run this again"
    " (or pass --allow-temporary-server to save them there anyway, e.g. to try the command)."
)


def temporary_server_warning() -> str | None:
    """A warning when commands would talk to a throwaway ephemeral server, else None."""
    from prefect.settings import PREFECT_API_URL

    return None if PREFECT_API_URL.value() else TEMPORARY_SERVER_WARNING


def required_key() -> str:
    """OPENAI_API_KEY; ValueError saying what to do when it is not set."""
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ValueError("OPENAI_API_KEY is not set; export it first (it is stored as a secret)")
    return key


def save_blocks(credentials_name: str, chat_model_name: str, model: str) -> tuple[str, str]:
    """Register the block types, then save the credentials and a ChatModel that uses them.

    Raises:
        ValueError: when OPENAI_API_KEY is not set.
    """
    from prefect_openai_chat.blocks import ChatModel, OpenAICredentials

    key = required_key()
    for block in (OpenAICredentials, ChatModel):
        block.register_type_and_schema()
    credentials = OpenAICredentials(
        api_key=SecretStr(key),
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        organization=os.environ.get("OPENAI_ORG_ID") or None,
        project=os.environ.get("OPENAI_PROJECT_ID") or None,
    )
    credentials.save(credentials_name, overwrite=True)
    ChatModel(credentials=credentials, model=model).save(chat_model_name, overwrite=True)
    return credentials_name, chat_model_name
