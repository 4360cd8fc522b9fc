"""From a composed config to the objects a job needs: the model, the inputs, error handling.

``_target_`` imports user code by design (``model._target_=my_pkg.my_fn``): configs are code,
data files are not (see :mod:`pipeline.inputs`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import pickle
from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from pipeline.derivatives.routine import parse_bind_path
from pipeline.errors import ConfigError, clipped
from pipeline.inputs import InputTree, input_tree, read_x
from pipeline.paths import in_workflow
from pipeline.storage.read import reading

log = logging.getLogger("sensweep.build")


def _import(key: str, target: str) -> Any:
    hydra_log = logging.getLogger("hydra.utils")  # get_object logs the failure too: say it once, below
    hydra_log.disabled = True
    try:
        return get_object(target)
    except Exception as err:  # ImportError, AttributeError, or whatever the user's module raises
        raise ConfigError(
            f"invalid {key}._target_={target!r}: cannot import it ({' '.join(str(err).split())}); "
            "give a dotted path to a function or class importable from this environment"
        ) from err
    finally:
        hydra_log.disabled = False


def _check_args(key: str, fn: Callable, args: dict[str, Any], *, skip: int = 0) -> None:
    params = list(inspect.signature(fn).parameters.values())[skip:]
    names = [p.name for p in params]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    for name in args:
        if name not in names and not takes_any:
            raise ConfigError(
                f"invalid {key}.args.{name}: {getattr(fn, '__qualname__', fn)} takes "
                f"{', '.join(names) or 'no arguments'}"
            )


def _is_factory(fn: Callable, args: dict[str, Any]) -> bool:
    """A function whose required parameters ``args`` all fill builds the model (``load(checkpoint)``);
    a model function still needs ``x`` and the swept parameters."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return bool(args) and all(name in args for name in required)


def _built(cfg: DictConfig, build: Callable[..., Any], args: dict[str, Any]) -> Any:
    torch.manual_seed(cfg.seed)  # module initialisation is part of the study's definition
    try:
        return build(**args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid model.args for {cfg.model._target_}: {err}") from err


def load_weights(module: torch.nn.Module, path: str) -> None:
    """Load a state dict (``torch.load(weights_only=True)``, or safetensors) into ``module``, strictly.

    A relative ``path`` is relative to the workflow folder, as data files are.
    """
    file = in_workflow(path)
    if not file.is_file():
        raise ConfigError(f"invalid model.weights={path!r}: no such file (looked for {file})")
    try:
        if file.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError as err:
                raise ConfigError(
                    f"invalid model.weights={path!r}: reading .safetensors needs the safetensors package "
                    "(pip install safetensors), or save the state dict with torch.save"
                ) from err
            state = load_file(file)
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"invalid model.weights={path!r}: cannot read a state dict from it ({clipped(str(err))}); "
            "save one with torch.save(model.state_dict(), path)"
        ) from err
    if not isinstance(state, dict):
        raise ConfigError(f"invalid model.weights={path!r}: holds a {type(state).__name__}, not a state dict")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (module: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"missing keys: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}" if missing else "",
            f"unexpected keys: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}"
            if unexpected
            else "",
            f"shapes differ: {', '.join(wrong[:5])}" if wrong else "",
        ]
        raise ConfigError(
            f"invalid model.weights={path!r} for {type(module).__name__}: "
            + "; ".join(filter(None, problems))
            + f"; the module's keys are {', '.join(list(expected)[:8])}{' ...' if len(expected) > 8 else ''}"
        )
    module.load_state_dict(state)


def build_model(cfg: DictConfig) -> Callable | torch.nn.Module:
    """Import ``model._target_``: a class, or a factory function, is built with ``args`` (after
    seeding; then ``model.weights`` loaded); a model function is partial'd with ``args``."""
    target = _import("model", cfg.model._target_)
    args = OmegaConf.to_container(cfg.model.args, resolve=True)
    weights = cfg.model.get("weights")
    if inspect.isclass(target) or (callable(target) and _is_factory(target, args)):
        if inspect.isclass(target):
            _check_args("model", target.__init__, args, skip=1)
        else:
            _check_args("model", target, args)
        model = _built(cfg, target, args)
        if isinstance(model, torch.nn.Module):
            if weights:
                load_weights(model, weights)
                log.info("model %s: weights loaded from %s", cfg.model._target_, weights)
            elif any(True for _ in model.parameters()):
                log.info(
                    "model %s: its weights are the seeded initialisation (seed=%d); set model.weights to "
                    "load trained ones",
                    cfg.model._target_,
                    cfg.seed,
                )
        elif weights:
            raise ConfigError(f"invalid model.weights={weights!r}: {cfg.model._target_} did not build an nn.Module")
        if not callable(model):
            raise ConfigError(
                f"invalid model._target_={cfg.model._target_!r}: built a {type(model).__name__}, not a model"
            )
        return _with_fixed(cfg, model)
    if not callable(target):
        raise ConfigError(f"invalid model._target_={cfg.model._target_!r}: not a function or class")
    if weights:
        raise ConfigError(f"invalid model.weights={weights!r}: {cfg.model._target_} is a function, not an nn.Module")
    _check_args("model", target, args, skip=2)
    return _with_fixed(cfg, _bound(target, args))


def _bound(fn: Callable, kwargs: dict[str, Any]) -> Callable:
    """``fn`` with ``kwargs`` given, keeping its attributes (``output_dims``, ``units``, ...)."""
    if not kwargs:
        return fn
    bound = functools.partial(fn, **kwargs)
    bound.__dict__.update(getattr(fn, "__dict__", {}))
    return bound


def _with_fixed(cfg: DictConfig, model: Callable | torch.nn.Module) -> Callable | torch.nn.Module:
    """``model`` with ``sweep.fixed`` applied: a module's bound elements set, a function's arguments given."""
    if not cfg.sweep.fixed:
        return model
    if isinstance(model, torch.nn.Module):
        _hold_fixed(cfg, model)
        return model
    return _bound(model, _fixed_arguments(cfg, model))


def swept_bind(cfg: DictConfig) -> dict[str, str] | None:
    """``model.bind`` without the parameters held fixed (:func:`build_model` set those in the module)."""
    bind = {k: v for k, v in (cfg.model.bind or {}).items() if k not in cfg.sweep.fixed}
    return bind or None


def _fixed_arguments(cfg: DictConfig, fn: Callable) -> dict[str, torch.Tensor]:
    """``sweep.fixed`` as a model function's keyword arguments: 0-d tensors, as a swept parameter
    arrives (a function written for tensors keeps working); float64, which a 0-d tensor never
    imposes on the run's dtype (type promotion), so every dtype and device sees the same value."""
    if not cfg.sweep.fixed:
        return {}
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in cfg.sweep.fixed:
        if name not in params and not takes_any:
            raise ConfigError(
                f"invalid sweep.fixed.{name}: {cfg.model._target_} has no argument {name} "
                f"(it takes {', '.join(params)})"
            )
    return {name: torch.tensor(float(v), dtype=torch.float64) for name, v in cfg.sweep.fixed.items()}


def _hold_fixed(cfg: DictConfig, module: torch.nn.Module) -> None:
    """Set each ``sweep.fixed`` parameter's bound element (``model.bind``) of a module built here."""
    for name, value in cfg.sweep.fixed.items():
        path = (cfg.model.bind or {}).get(name)
        if path is None:
            raise ConfigError(
                f"invalid sweep.fixed.{name}: {cfg.model._target_} is a module, so a fixed parameter is set "
                f"through its bound element: add it to model.bind, e.g. model.bind.{name}='layer.bias[0]'"
            )
        tensor_name, index = parse_bind_path(str(path))
        tensors = dict([*module.named_parameters(), *module.named_buffers()])
        if tensor_name not in tensors or any(isinstance(i, slice) for i in index):
            raise ConfigError(
                f"invalid model.bind.{name}={path!r} of fixed parameter {name}: one element of one of the "
                f"module's tensors ({', '.join(list(tensors)[:8])})"
            )
        with torch.no_grad():
            tensors[tensor_name][index] = float(value)


def build_inputs(cfg: DictConfig) -> InputTree:
    """Call ``inputs._target_(**args)``: the batch ``x`` (leading dim = samples; a tensor, or a dict
    or tuple of them; floats as float64).

    With ``inputs_file`` set (the workflow's compute jobs), ``x`` is read from that file instead.
    """
    if cfg.inputs_file is not None:  # written by pipeline.stages.prepare: unreadable means corrupt, moved aside
        with reading([cfg.inputs_file], "inputs file"):
            return read_x(cfg.inputs_file, key="inputs_file")
    target = _import("inputs", cfg.inputs._target_)
    args = OmegaConf.to_container(cfg.inputs.args, resolve=True)
    _check_args("inputs", target, args)
    try:
        return input_tree(target(**args))
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"invalid inputs.args={args!r}: {cfg.inputs._target_} fails on them "
            f"({clipped(str(err).splitlines()[0], 200)}); "
            "check each argument's type"
        ) from err
