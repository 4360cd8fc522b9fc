"""What a torch error inside a derivative pass says about the model: read in one place.

torch tells why a model cannot run under ``vmap``/``jvp`` only in its messages, so the markers
below are the one place those messages are read. :func:`diagnose` gives the error's
:class:`~pipeline.errors.Kind`, what the model does and where; :func:`translate_error` turns that
into a :class:`~pipeline.errors.DerivativeError` for a method the user named, and
:func:`describe` into one clause of ``auto``'s warning.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import RANDOMNESS, DerivativeError, Kind, clipped

UNBATCHABLE = {
    ".item()": "calls .item() or uses a tensor in Python control flow (if/while on a value)",
    "data-dependent control flow": "uses a tensor in Python control flow (if/while on a value)",
    "data pointer": "calls .numpy() or reads a tensor's data outside torch",
    "in-place operation": "changes a tensor in place that the transform captured (e.g. x.mul_() on the inputs)",
    "inplace arithmetic": "changes a tensor in place that is not batched (e.g. out += C * x on a preallocated out)",
    "Batching rule not implemented": "uses an op that torch.func.vmap has no batching rule for",
}
"""Markers of torch errors that mean "this model cannot run under vmap/jvp", and what the model does."""

NO_FORWARD_RULE = ("forward AD", "forward mode AD", "forward-mode AD", "jvp function", "setup_context")
"""Markers of torch errors that mean an op (or an autograd.Function) has no forward-mode rule."""

RANDOMNESS_MARKER = "randomness"
"""vmap's error for random numbers drawn inside the transform (``randomness='error'``)."""


@dataclass(frozen=True)
class Diagnosis:
    """What an error in a derivative pass means: its kind, what the model does, where, torch's words."""

    kind: Kind
    what: str
    where: str
    torch: str


def model_frame(err: BaseException) -> str:
    """``file:line (function)`` of the innermost traceback frame outside torch and sensweep, if any."""
    tb, found = err.__traceback__, ""
    while tb is not None:
        code = tb.tb_frame.f_code
        if not any(part in code.co_filename for part in ("/torch/", "/pipeline/", "<frozen", "/functorch/")):
            found = f"{code.co_filename}:{tb.tb_lineno} ({code.co_name})"
        tb = tb.tb_next
    return found


def _read(text: str) -> tuple[Kind, str]:
    if RANDOMNESS_MARKER in text:
        return Kind.RANDOMNESS, "draws random numbers inside the batched pass"
    if any(marker in text for marker in NO_FORWARD_RULE):
        return Kind.NO_FORWARD_RULE, "an op or autograd.Function of the model has no forward-mode rule"
    for marker, what in UNBATCHABLE.items():
        if marker in text:
            return Kind.UNBATCHABLE, f"the model {what}"
    return Kind.OTHER, ""


def diagnose(err: BaseException) -> Diagnosis:
    """The kind of ``err`` (a :class:`DerivativeError` keeps its own), read from the torch error behind it."""
    cause = err.__cause__ if isinstance(err, DerivativeError) and err.__cause__ is not None else err
    text = str(cause).strip()
    kind, what = _read(text)
    if isinstance(err, DerivativeError) and err.kind is not Kind.OTHER:
        kind = err.kind
    return Diagnosis(kind, what, model_frame(cause), text.splitlines()[0] if text else type(cause).__name__)


def translate_error(err: BaseException, method: str) -> DerivativeError | None:
    """A :class:`DerivativeError` for torch errors a user can act on, else ``None``."""
    found = diagnose(err)
    at = f" at {found.where}" if found.where else ""
    if found.kind is Kind.RANDOMNESS:
        return DerivativeError(
            f"the model draws random numbers inside the batched pass (e.g. dropout in training mode); {RANDOMNESS}",
            Kind.RANDOMNESS,
        )
    if found.kind is Kind.NO_FORWARD_RULE:
        return DerivativeError(
            f"method={method} failed: an op of the model has no forward-mode AD rule "
            f"({found.torch}){at}; use method=reverse for this model",
            Kind.NO_FORWARD_RULE,
        )
    if found.kind is Kind.UNBATCHABLE:
        return DerivativeError(
            f"method={method} cannot batch this model over the parameter values: {found.what}{at} "
            f"(torch: {clipped(found.torch)}); rewrite that line with tensor ops (torch.where instead of if, no "
            ".item()/.numpy(), out-of-place ops), or use method=loop, which runs one point at a time",
            Kind.UNBATCHABLE,
        )
    return None


def describe(method: str, err: BaseException) -> str:
    """``<method> failed at file:line: <what the model does> (torch: <its message>)``."""
    found = diagnose(err)
    at = f" at {found.where}" if found.where else ""
    return f"{method} failed{at}: {found.what or 'torch error'} (torch: {clipped(found.torch, 120)})"
