"""`prefect-openai-chat setup`: from environment variables to saved blocks in one command."""

from __future__ import annotations

import os

from pydantic import SecretStr


def save_blocks(credentials_name: str, chat_model_name: str, model: str) -> tuple[str, str]:
    """Register the block types, then save the credentials and a ChatModel that uses them.

    Raises:
        ValueError: when OPENAI_API_KEY is not set.
    """
    from prefect_openai_chat.blocks import ChatModel, OpenAICredentials

    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ValueError("OPENAI_API_KEY is not set; export it first (it is stored as a secret)")
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
