"""Models a user might write that cannot run under vmap: each must fail with one clear message."""

import torch


def calls_item(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Reads the parameter as a Python number."""
    return x * C.item()


def branches_on_value(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Python control flow on a tensor's value."""
    if C > 0:
        return C * x
    return -C * x


def mutates_input(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Changes its input in place."""
    x.mul_(C)
    return x


class NoForward(torch.autograd.Function):
    """Doubles its input; has a backward but no jvp rule (an op without forward-mode AD)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(c):
        return c * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class Opaque(torch.autograd.Function):
    """sin, with neither a jvp nor a backward: no autodiff goes through it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(c):
        return torch.sin(c)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass


class ForwardOnly(Opaque):
    """sin with a jvp and no reverse rule (an op without backward)."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx, dc):
        (c,) = ctx.saved_tensors
        return torch.cos(c) * dc

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("no reverse rule")


def log_model(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """y = log(C x): NaN where x < 0, while dy/dC = 1/C stays finite."""
    return torch.log(C * x)
