"""Benchmarks of sensweep: derivative methods against the primal floor (`methods`), workflow overhead
(`workflow`). Run by `make bench`; not part of the installed package."""
