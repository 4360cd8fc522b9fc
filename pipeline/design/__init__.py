"""Parameter designs: sampled designs over distributions (``sampling``, ``distributions``), grid
sweeps from a config (``sweep``), and the DGSM bounds a design's derivatives give (``bounds``).

The names a user needs are here: ``pipeline.design.sobol(...)``, ``pipeline.design.uniform(...)``.

>>> d = sobol({"C": uniform(0.5, 1.5), "K": loguniform(0.1, 10)}, n=8, seed=0)
>>> d.table.shape, bool((d.table[:, 0] >= 0.5).all() and (d.table[:, 1] <= 10).all())
((8, 2), True)
"""

from pipeline.design.distributions import Distribution, lognormal, loguniform, normal, parse, truncnormal, uniform
from pipeline.design.sampling import Design, lhs, points, random, saltelli, sobol

__all__ = [
    "Design",
    "Distribution",
    "lhs",
    "lognormal",
    "loguniform",
    "normal",
    "parse",
    "points",
    "random",
    "saltelli",
    "sobol",
    "truncnormal",
    "uniform",
]
