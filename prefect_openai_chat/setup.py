"""`prefect-openai-chat setup`: from environment variables to saved blocks in one command.

Two roads: the real API (`OPENAI_API_KEY`, and `OPENAI_BASE_URL` for an OpenAI-compatible
server), or offline with `--simulator`: blocks that point at a simulator served by
`prefect-openai-chat simulator`, so the tour and the deployment guide run with no key and
no network.

Example:
    >>> simulator_base_url(None)
    'http://127.0.0.1:18787/v1'
    >>> simulator_base_url("http://simulator:18787")
    'http://simulator:18787/v1'
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request

from pydantic import SecretStr

from prefect_openai_chat.simulator.cli import DEFAULT_PORT

SIMULATOR_KEY = "sk-simulator"  # the simulator's default key (`--api-key` changes it)
SIMULATOR_URL = f"http://127.0.0.1:{DEFAULT_PORT}/v1"
SIMULATOR_COMMAND = f"prefect-openai-chat simulator --profile flaky --port {DEFAULT_PORT}"
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
    """OPENAI_API_KEY; ValueError saying what to do when it is not set (the offline road too)."""
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ValueError(
            "OPENAI_API_KEY is not set; export it first (it is stored as a secret), or, with"
            " no key and no network, save blocks that call the bundled simulator:"
            f" `prefect-openai-chat setup --simulator`, with `{SIMULATOR_COMMAND}` running"
            " in another terminal"
        )
    return key


def simulator_base_url(url: str | None) -> str:
    """The simulator's API base URL: the default one, or `url` with `/v1` added if missing."""
    if not url:
        return SIMULATOR_URL
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def simulator_answers(base_url: str, api_key: str = SIMULATOR_KEY, timeout_s: float = 2.0) -> bool:
    """Whether a simulator (any OpenAI-compatible server) answers `GET /models` there."""
    request = urllib.request.Request(
        f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_block_name(name: str) -> str:
    """A block name Prefect accepts (lowercase letters, digits, dashes), else InvalidInputError.

    >>> check_block_name("nightly-chat-model")
    'nightly-chat-model'
    """
    from prefect_openai_chat.errors import InvalidInputError

    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise InvalidInputError(
            f"block name {name!r}: use lowercase letters, digits and dashes only,"
            " e.g. nightly-chat-model"
        )
    return name


def save_blocks(
    credentials_name: str,
    chat_model_name: str,
    model: str,
    simulator_url: str | None = None,
) -> tuple[str, str]:
    """Register the block types, then save the credentials and a ChatModel that uses them.

    With `simulator_url`, the credentials call the simulator there with its key
    (`sk-simulator`), whatever OPENAI_API_KEY says.

    Raises:
        ValueError: when OPENAI_API_KEY is not set (and no simulator is asked for).
    """
    from prefect_openai_chat.blocks import ChatModel, OpenAICredentials

    for name in (credentials_name, chat_model_name):
        check_block_name(name)
    base_url: str | None
    if simulator_url is not None:
        key, base_url = SIMULATOR_KEY, simulator_base_url(simulator_url)
        organization = project = None
    else:
        key, base_url = required_key(), os.environ.get("OPENAI_BASE_URL") or None
        organization = os.environ.get("OPENAI_ORG_ID") or None
        project = os.environ.get("OPENAI_PROJECT_ID") or None
    for block in (OpenAICredentials, ChatModel):
        block.register_type_and_schema()
    credentials = OpenAICredentials(
        api_key=SecretStr(key), base_url=base_url, organization=organization, project=project
    )
    credentials.save(credentials_name, overwrite=True)
    ChatModel(credentials=credentials, model=model).save(chat_model_name, overwrite=True)
    return credentials_name, chat_model_name
