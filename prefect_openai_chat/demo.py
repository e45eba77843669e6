"""The demo behind `prefect-openai-chat demo`: a flow against the local simulator."""

from __future__ import annotations

from prefect import flow

from prefect_openai_chat.blocks import ChatModel, OpenAICredentials
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tasks import chat_completion


@flow(name="prefect-openai-chat-demo", log_prints=True)
def demo_flow(base_url: str, api_key: str, model: str) -> ChatResult:
    """Send one chat completion through the plugin and return its result."""
    chat_model = ChatModel(
        credentials=OpenAICredentials(base_url=base_url, api_key=api_key), model=model
    )
    messages = [
        {"role": "system", "content": "You are a concise assistant for a data team."},
        {"role": "user", "content": "In two sentences, why do pipelines need retries?"},
    ]
    return chat_completion(chat_model, messages)


def run_demo(profile: str = "flaky", seed: int = 7, model: str = "gpt-4o-mini-2024-07-18") -> int:
    """Start the simulator, run the demo flow, print the answer and its usage."""
    with Simulator(profile=profile, seed=seed) as sim:
        result = demo_flow(sim.base_url, sim.api_key, model)
    usage = result.usage
    print()
    print(f"answer:    {result.content}")
    print(f"model:     {result.model}   request id: {result.request_id}")
    print(f"tokens:    {usage.prompt_tokens} prompt + {usage.completion_tokens} completion")
    cost = "unknown" if result.cost_usd is None else f"${result.cost_usd:.6f}"
    print(f"cost:      {cost}   latency: {result.latency_s:.3f}s   attempts: {result.attempts}")
    return 0
