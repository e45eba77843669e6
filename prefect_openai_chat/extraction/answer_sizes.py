"""How much completion room a re-send after a cut answer (`finish_reason="length"`) gets.

Sized from what complete answers to the same schema needed, not doubled blindly.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

MIN_COMPLETION_ROOM = 16  # below this a budget-capped attempt cannot hold an answer
ANSWER_MARGIN = 1.25  # room for a re-send after a cut answer: the longest answer seen, + 25%


def room_needed(used: int, largest: int | None, growth: float, first: bool) -> int:
    """Completion room for a re-send after an answer cut at `used` tokens.

    The first re-send of a record is sized from what complete answers to the same schema
    needed (`largest`, the longest one seen), with a quarter more; without such an
    answer, and for a re-send cut again, the last limit grows by `growth`.

    Example:
        >>> room_needed(60, 110, 2.0, first=True), room_needed(60, None, 2.0, first=True)
        (138, 120)
        >>> room_needed(138, 110, 2.0, first=False)
        276
    """
    if largest is not None and first:
        return max(used + MIN_COMPLETION_ROOM, math.ceil(largest * ANSWER_MARGIN))
    return math.ceil(used * growth)


class AnswerSizes:
    """The longest complete answer (completion tokens) seen per schema, for `room_needed`.

    Process-wide and bounded: the `maxsize` schemas used last (their classes are held).

    Example:
        >>> sizes = AnswerSizes()
        >>> sizes.seen(int, 80); sizes.seen(int, 60); sizes.largest(int)
        80
    """

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._sizes: OrderedDict[type, int] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, schema: type, tokens: int) -> None:
        if tokens <= 0:
            return
        with self._lock:
            self._sizes[schema] = max(tokens, self._sizes.get(schema, 0))
            self._sizes.move_to_end(schema)
            while len(self._sizes) > self.maxsize:
                self._sizes.popitem(last=False)

    def largest(self, schema: type) -> int | None:
        with self._lock:
            return self._sizes.get(schema)

    def clear(self) -> None:
        with self._lock:
            self._sizes.clear()


ANSWER_SIZES = AnswerSizes()
