"""``python -m pipeline.config > docs/reference/config.md``: the configuration reference."""

from pipeline.config.reference import reference_markdown

print(reference_markdown(), end="")
