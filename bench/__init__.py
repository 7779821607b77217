"""UniAD Bench: the Hydra app (``python -m bench``) and what one job needs."""

from bench.resolvers import register_resolvers

register_resolvers()
