"""Units written the CF way (UDUNITS products of powers: ``m s-1``), and those of derivatives.

A unit string that is a product of ``name`` or ``name<power>`` terms (``m``, ``s-1``, ``kg m2``) is
combined term by term: ``dy/dC`` of ``y`` in ``m`` and ``C`` in ``s-1`` is in ``m s``. Anything
else (a ``/``, parentheses, a scale factor) is kept as written, in parentheses.
"""

from __future__ import annotations

import re

TERM = re.compile(r"^([A-Za-z_%][A-Za-z_%]*)(-?\d+)?$")


def _terms(units: str) -> dict[str, int] | None:
    """``{"m": 1, "s": -1}`` for ``"m s-1"``; ``None`` where the string is not a plain product."""
    if units.strip() in ("", "1"):
        return {}
    terms: dict[str, int] = {}
    for part in units.split():
        match = TERM.match(part)
        if match is None:
            return None
        terms[match[1]] = terms.get(match[1], 0) + int(match[2] or 1)
    return terms


def _text(terms: dict[str, int]) -> str:
    shown = [name if power == 1 else f"{name}{power}" for name, power in terms.items() if power]
    return " ".join(shown) or "1"


def power(units: str, exponent: int) -> str:
    """``units`` raised to ``exponent``: ``power("m s-1", 2) == "m2 s-2"``."""
    terms = _terms(units)
    if terms is None:
        return f"({units}){exponent}" if exponent != 1 else units
    return _text({name: p * exponent for name, p in terms.items()})


def ratio(numerator: str, denominator: str) -> str:
    """The units of ``numerator / denominator``: ``ratio("m", "s-1") == "m s"``."""
    top, bottom = _terms(numerator), _terms(denominator)
    if top is None or bottom is None:
        return f"({numerator})/({denominator})"
    combined = dict(top)
    for name, p in bottom.items():
        combined[name] = combined.get(name, 0) - p
    return _text(combined)
