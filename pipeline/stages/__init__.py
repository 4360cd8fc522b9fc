"""One module per workflow rule, each a thin ``python -m pipeline.stages.<rule>`` entry point over
importable functions: ``prepare`` -> ``compute`` -> ``merge`` -> ``current`` -> ``summarise`` ->
``plot``, and ``verify``. ``build`` makes the model and inputs from a composed config; ``cli`` is
the command-line layer they share."""
