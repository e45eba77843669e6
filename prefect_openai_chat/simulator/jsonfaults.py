"""Turn a valid JSON answer into the broken answers real models give.

Example:
    >>> import random
    >>> from prefect_openai_chat.simulator.jsonfaults import render_json_fault
    >>> render_json_fault("fenced-json", {"a": 1}, None, random.Random(0))
    '```json\\n{"a": 1}\\n```'
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

_PROSE_BEFORE = (
    "Sure! Here is the extracted data:",
    "Here's the JSON you asked for:",
    "Based on the text, the information is as follows.",
)
_PROSE_AFTER = (
    "Let me know if you need anything else!",
    "I hope this helps.",
    "Note: some values were inferred from context.",
)
_BAD_ENUM = "UNKNOWN_VALUE"


def dumps(value: Any) -> str:
    """Compact-ish JSON as models write it (`", "` and `": "` separators, unicode kept)."""
    return json.dumps(value, ensure_ascii=False)


def render_json_fault(
    fault: str, instance: Any, schema: dict[str, Any] | None, rng: random.Random
) -> str:
    """The answer text of `fault` for a correct `instance` (truncation is done by the caller)."""
    if fault == "fenced-json":
        return f"```json\n{dumps(instance)}\n```"
    if fault == "prose-json":
        before, after = rng.choice(_PROSE_BEFORE), rng.choice(_PROSE_AFTER)
        return f"{before}\n\n{json.dumps(instance, indent=2, ensure_ascii=False)}\n\n{after}"
    if fault == "malformed-json":
        return _malformed(instance, rng)
    if fault == "wrong-types":
        return dumps(wrong_types(instance, schema))
    if fault == "missing-fields":
        return dumps(missing_fields(instance, schema))
    if fault == "lazy":
        return lazy_json(instance)
    return dumps(instance)


def wrong_types(instance: Any, schema: dict[str, Any] | None) -> Any:
    """Break the types of up to two fields; an enum field, when there is one, gets a bad value."""
    if not isinstance(instance, dict) or not instance:
        return [instance]
    broken = dict(instance)
    properties = _properties(schema)
    enum_keys = [k for k in broken if _has_enum(properties.get(k), schema)]
    other_keys = [k for k in broken if k not in enum_keys and broken[k] is not None]
    targets = enum_keys[:1] + other_keys[:1]
    for key in targets:
        broken[key] = _BAD_ENUM if key in enum_keys else _wrong_value(broken[key])
    return broken


def missing_fields(instance: Any, schema: dict[str, Any] | None) -> Any:
    """Leave out about half of the required fields (at least one)."""
    if not isinstance(instance, dict) or not instance:
        return {}
    required = [k for k in (schema or {}).get("required", []) if k in instance] or list(instance)
    drop = set(required[len(required) // 2 :]) or {required[-1]}
    return {k: v for k, v in instance.items() if k not in drop}


def lazy_json(instance: Any) -> str:
    """The first fields, a placeholder value, then `// ... rest of fields` where the rest was."""
    if not isinstance(instance, dict) or len(instance) < 2:
        return '{\n  "result": "...",\n  // ... rest of code\n}'
    keys = list(instance)
    kept = {k: instance[k] for k in keys[: max(1, len(keys) // 2)]}
    last = list(kept)[-1]
    kept[last] = "[truncated]" if isinstance(kept[last], str) else "..."
    text = json.dumps(kept, indent=2, ensure_ascii=False)
    return text[:-2] + ",\n  // ... rest of fields\n}"


def _malformed(instance: Any, rng: random.Random) -> str:
    text = dumps(instance)
    if not isinstance(instance, dict) or not instance:
        return text[:-1] if len(text) > 1 else "{"
    variant = rng.randrange(5)
    if variant == 0:  # trailing comma
        return text[:-1] + ",}"
    if variant == 1:  # single quotes
        return text.replace('"', "'")
    if variant == 2:  # missing closing brace
        return text[:-1]
    if variant == 3:  # unquoted keys
        return re.sub(r'"(\w+)": ', r"\1: ", text)
    # Python literals
    return (
        text.replace("true", "True").replace("false", "False").replace("null", "None")[:-1] + ", }"
    )


def _wrong_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value} units"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, str):
        return len(value) or 12345
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return str(value)
    return "n/a"


def _properties(schema: dict[str, Any] | None) -> dict[str, Any]:
    if not schema:
        return {}
    props = schema.get("properties")
    return props if isinstance(props, dict) else {}


def _has_enum(sub: Any, root: dict[str, Any] | None) -> bool:
    if not isinstance(sub, dict):
        return False
    if "enum" in sub:
        return True
    ref = sub.get("$ref") or next(
        (b.get("$ref") for b in sub.get("anyOf", []) + sub.get("allOf", []) if isinstance(b, dict)),
        None,
    )
    if isinstance(ref, str) and root:
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return isinstance(target, dict) and "enum" in target
    return False
