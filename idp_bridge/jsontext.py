"""JSON and display text from untrusted senders: bounded nesting, no line-breaking characters."""

from __future__ import annotations

import json
import re
from typing import Any

# Far deeper than any invite, org or IdP event needs, far shallower than the interpreter's recursion limit
# (json.loads, json.dumps, pydantic and our own walks all recurse per level).
MAX_DEPTH = 64

# Unicode category Cc (C0, DEL, C1 with NEL) and the line and paragraph separators (Zl, Zp): each can end a
# mail header line or break a page title.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class TooDeep(ValueError):
    """JSON nested deeper than MAX_DEPTH."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"nested more than {max_depth} levels deep")
        self.max_depth = max_depth


def loads(raw: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads that refuses nesting beyond max_depth with TooDeep (a ValueError), never RecursionError."""
    try:
        value = json.loads(raw)
    except RecursionError:
        # The C parser gives up near the interpreter's recursion limit; the bound below is the one we promise.
        raise TooDeep(max_depth) from None
    if too_deep(value, max_depth):
        raise TooDeep(max_depth)
    return value


def too_deep(value: Any, max_depth: int = MAX_DEPTH) -> bool:
    """Whether parsed JSON nests objects or arrays more than max_depth levels (walked level by level, no recursion)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > max_depth:
            return True
        # One list comprehension per level: about half the time of a per-item stack on a 10,000-row bulk body.
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, _CONTAINERS)]
        depth += 1
    return False


_CONTAINERS = (dict, list)


def control_character(text: str) -> str | None:
    """The first control or line/paragraph-separator character in text, as U+XXXX, or None."""
    found = CONTROL.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
