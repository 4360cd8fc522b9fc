"""File names of the plots the workflow writes: :mod:`pipeline.plot` writes them and the Snakefile
lists them as outputs. This module imports nothing, so the Snakefile loads without torch or
matplotlib (a caption ``report/<name>.rst`` goes with each)."""

PLOTS = ("derivative_vs_param.png", "derivative_heatmap.png", "output_vs_param.png")
"""Written by :func:`pipeline.plot.plot_study` for a grid sweep."""

DESIGN_PLOTS = ("derivatives_at_points.png", "parameter_ranking.png", "output_at_points.png", "bounds_along_output.png")
"""Written by :func:`pipeline.plot.plot_design` for a sampled design (dim ``point``)."""

AGREEMENT_PLOT = "method_agreement.png"
"""Written by :func:`pipeline.plot.plot_agreement` (the verify rule), beside the others."""
