"""Speed of `count_message_tokens` next to bare tiktoken encoding of the same text.

Realistic conversations are built from the sample support tickets: a system
prompt with extraction instructions, a few user tickets, assistant JSON answers
and a correction, a few KB each. The same run times, in alternating rounds:

* plugin: `count_message_tokens(messages, model)` for every conversation;
* bare:   `len(enc.encode_ordinary(text))` for every string of every message, with
  the same `tiktoken.Encoding` object (`get_encoding("o200k_base")`, built offline:
  tiktoken itself cannot download its files here). This is the fastest bare way to
  encode that text, so it is the strict baseline;
* bare `enc.encode(text)` (what most code calls; it also scans for special tokens),
  for information.

Throughput is in KB of message text per CPU second of this process (all sides are
single-threaded, and CPU time is far less disturbed than wall time by other load on
a shared machine); medians over the rounds.
Target: plugin / bare encode_ordinary >= 0.90.

Run: python benchmarks/bench_tokens.py [--rounds 21] [--conversations 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from _common import MODEL, median, rounds, tickets, verdict

from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS, TICKET_PROMPT
from prefect_openai_chat.tokens import count_message_tokens, get_encoding

TARGET = 0.90


def conversations(count: int) -> list[list[dict[str, Any]]]:
    """`count` conversations of 5 to 9 messages, from consecutive sample tickets."""
    pool = tickets(max(count * 3, 300), seed=11)
    result = []
    for n in range(count):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": TICKET_INSTRUCTIONS * 2},
        ]
        for turn in range(2 + n % 3):
            ticket = pool[(n * 3 + turn) % len(pool)]
            messages.append({"role": "user", "content": TICKET_PROMPT.format(**ticket)})
            answer = {"ticket_id": ticket["ticket_id"], "channel": ticket["channel"]}
            answer["summary"] = ticket["body"][:160]
            messages.append({"role": "assistant", "content": json.dumps(answer)})
        messages.append(
            {
                "role": "user",
                "name": "reviewer",
                "content": "Your answer was not valid: currency is required when amount is set."
                " Return the complete JSON object again, corrected.",
            }
        )
        result.append(messages)
    return result


def texts_of(conversation: list[dict[str, Any]]) -> list[str]:
    """Every string the API tokenizes in a conversation (roles, names, contents)."""
    return [v for m in conversation for v in m.values() if isinstance(v, str)]


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    """CPU seconds of this process spent in `fn` (robust to other load on the machine)."""
    start = time.process_time()
    total = fn()
    return time.process_time() - start, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="alternating rounds (medians)")
    parser.add_argument("--conversations", type=int, default=1000)
    args = parser.parse_args()

    convs = conversations(args.conversations)
    texts = [texts_of(c) for c in convs]
    enc = get_encoding("o200k_base")
    kb = sum(len(t.encode()) for ts in texts for t in ts) / 1024
    sizes = sorted(sum(len(t.encode()) for t in ts) for ts in texts)

    def plugin() -> int:
        return sum(count_message_tokens(c, MODEL) for c in convs)

    def bare_ordinary() -> int:
        encode = enc.encode_ordinary
        return sum(len(encode(t)) for ts in texts for t in ts)

    def bare_encode() -> int:
        encode = enc.encode
        return sum(len(encode(t)) for ts in texts for t in ts)

    # Warm up (and check that both sides see the same text: the plugin adds only overhead).
    plugin_tokens, bare_tokens = plugin(), bare_ordinary()
    overhead = sum(3 + 3 * len(c) + sum("name" in m for m in c) for c in convs)
    expected = bare_tokens + overhead
    bare_encode()

    variants: dict[str, Callable[[], int]] = {
        "plugin": plugin,
        "bare_ordinary": bare_ordinary,
        "bare_encode": bare_encode,
    }
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    for rnd in range(args.rounds):
        order = list(variants) if rnd % 2 == 0 else list(reversed(variants))
        for name in order:
            elapsed, _ = timed(variants[name])
            speeds[name].append(kb / elapsed)
    med = {k: median(v) for k, v in speeds.items()}
    ratio = med["plugin"] / med["bare_ordinary"]

    print(
        f"{len(convs)} conversations, {sum(len(c) for c in convs)} messages,"
        f" {kb:.0f} KB of text (median {sizes[len(sizes) // 2] / 1024:.1f} KB, max"
        f" {sizes[-1] / 1024:.1f} KB per conversation), model {MODEL}, {args.rounds} rounds"
    )
    print(
        f"tokens: plugin {plugin_tokens}, bare {bare_tokens} + message overhead {overhead}"
        f" = {expected} ({'same' if expected == plugin_tokens else 'DIFFERENT'})"
    )
    print("throughput in KB of text per CPU second:")
    print(
        f"count_message_tokens:        {med['plugin']:8.1f} KB/s  rounds {rounds(speeds['plugin'])}"
    )
    print(
        f"bare enc.encode_ordinary:    {med['bare_ordinary']:8.1f} KB/s"
        f"  rounds {rounds(speeds['bare_ordinary'])}"
    )
    print(
        f"bare enc.encode (info):      {med['bare_encode']:8.1f} KB/s"
        f"  rounds {rounds(speeds['bare_encode'])}"
    )
    print(f"ratio plugin / bare encode_ordinary: {ratio:.3f} (target >= {TARGET:.2f})")
    print(f"ratio plugin / bare encode (info):   {med['plugin'] / med['bare_encode']:.3f}")
    verdict("token counting speed", ratio >= TARGET, f"ratio {ratio:.3f}, target >= {TARGET:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
