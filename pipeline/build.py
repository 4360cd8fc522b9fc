"""From a composed config to the objects a job needs: the model, the inputs, error handling.

``_target_`` imports user code by design (``model._target_=my_pkg.my_fn``): configs are code,
data files are not (see :mod:`pipeline.inputs`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from pipeline.config import ConfigError
from pipeline.derivatives import DerivativeError
from pipeline.inputs import read_x


def _import(key: str, target: str) -> Any:
    hydra_log = logging.getLogger("hydra.utils")  # get_object logs the failure too: say it once, below
    hydra_log.disabled = True
    try:
        return get_object(target)
    except Exception as err:  # ImportError, AttributeError, or whatever the user's module raises
        raise ConfigError(f"invalid {key}._target_={target!r}: cannot import it ({' '.join(str(err).split())}); "
                          "give a dotted path to a function or class importable from this environment") from err
    finally:
        hydra_log.disabled = False


def _check_args(key: str, fn: Callable, args: dict[str, Any], *, skip: int = 0) -> None:
    params = list(inspect.signature(fn).parameters.values())[skip:]
    names = [p.name for p in params]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    for name in args:
        if name not in names and not takes_any:
            raise ConfigError(f"invalid {key}.args.{name}: {getattr(fn, '__qualname__', fn)} takes "
                              f"{', '.join(names) or 'no arguments'}")


def build_model(cfg: DictConfig) -> Callable | torch.nn.Module:
    """Import ``model._target_``: a class is built with ``args`` (after seeding), a function is partial'd."""
    target = _import("model", cfg.model._target_)
    args = OmegaConf.to_container(cfg.model.args, resolve=True)
    if inspect.isclass(target):
        _check_args("model", target.__init__, args, skip=1)
        torch.manual_seed(cfg.seed)  # module initialisation is part of the study's definition
        try:
            return target(**args)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"invalid model.args for {cfg.model._target_}: {err}") from err
    if not callable(target):
        raise ConfigError(f"invalid model._target_={cfg.model._target_!r}: not a function or class")
    _check_args("model", target, args, skip=2)
    if not args:
        return target
    model = functools.partial(target, **args)
    model.__dict__.update(getattr(target, "__dict__", {}))  # keep output_dims, units, ...
    return model


def build_inputs(cfg: DictConfig) -> torch.Tensor:
    """Call ``inputs._target_(**args)``: the batch ``x`` (float64, leading dim = samples).

    With ``inputs_file`` set (the workflow's compute jobs), ``x`` is read from that file instead.
    """
    if cfg.inputs_file is not None:
        return read_x(cfg.inputs_file, key="inputs_file")
    target = _import("inputs", cfg.inputs._target_)
    args = OmegaConf.to_container(cfg.inputs.args, resolve=True)
    _check_args("inputs", target, args)
    return torch.as_tensor(target(**args))


def run_cli(job: Callable[[], object]) -> None:
    """Run a job; a bad config, an unsupported derivative or an I/O error exits 1 with one clear line."""
    try:
        job()
    except (ConfigError, DerivativeError, OSError) as err:
        print(f"sensweep: error: {err}", file=sys.stderr)
        sys.exit(1)
