"""The job's configuration: structured configs (``schema``), the checks types cannot express
(``validate``), study files composed with Hydra (``studies``) and the generated reference.

Import the module you need: this package imports nothing itself, so the torch-free and
Hydra-free parts (``yamltext``, ``sizes``) stay cheap.
"""
