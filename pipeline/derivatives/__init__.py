"""Derivatives of a routine over a batch of parameter points.

``routine`` turns a function or module into ``f(x, theta)``; ``methods`` computes dy/dC
(forward mode: ``vmap`` of ``jvp``; reverse, loops and differences as references and fallbacks),
in chunks that ``chunking`` sizes to a memory budget and ``heap`` keeps cheap; ``fallback``
moves down a ladder of methods when one cannot run the model; ``structure`` checks the results
against the model's own differences; ``compiled``, ``zerotensor`` and ``opcost`` make forward mode fast.
"""
