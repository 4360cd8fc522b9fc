"""Values written into Hydra override strings (``key=value``): one home for Hydra's quoting."""

from __future__ import annotations

import re


def quoted(value: object) -> str:
    """``value`` as one Hydra override value, single-quoted so that any text (a path with spaces or
    quotes, a title) stays one value. In Hydra's quoted values a backslash is literal except in a
    run before a quote or the closing quote: such runs are doubled and each quote escaped."""
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", str(value))
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)
    return f"'{text}'"
