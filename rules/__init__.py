"""The allowed values of config keys, declared beside the class that takes them as keyword arguments.

A reader, method, backbone or logger class states the ranges of its own keys in a class attribute::

    from rules import INT, REAL

    class MyReader(...):
        RULES = {"image_size": INT(32), "jitter": REAL(0, 1)}

A subclass's ``RULES`` add to (and override) its bases'. The job checks every key of a config node
against the rules of the class its ``_target_`` names before anything is built (``bench.validate``).
This package imports neither torch nor the job, so every package can declare rules.
"""

from rules.declared import declared_rules, target_object
from rules.range import BOOL, INT, NAMES, ONE_OF, PROB, REAL, SEED, Rule

__all__ = ["BOOL", "INT", "NAMES", "ONE_OF", "PROB", "REAL", "SEED", "Rule", "declared_rules", "target_object"]
