"""The rules a class declares (its ``RULES`` and its bases'), found from a config node's ``_target_``."""

from __future__ import annotations

import importlib
import inspect

from rules.range import Rule


def target_object(path: str):
    """The class or function that ``path`` ("package.module.Name") names: imported, never called.

    Raises ``ImportError`` (or ``AttributeError``) naming what is missing.
    """
    module_path, _, name = str(path).rpartition(".")
    if not module_path:
        raise ImportError(f"{path!r} is not a dotted path package.module.Name")
    return getattr(importlib.import_module(module_path), name)


def declared_rules(obj) -> dict[str, Rule]:
    """``obj.RULES`` merged over those of its bases (a subclass's entry replaces its base's).

    Keys are relative to the config node ("fj_prob", "generator.seed").
    """
    owners = inspect.getmro(obj) if inspect.isclass(obj) else (obj,)
    merged: dict[str, Rule] = {}
    for owner in reversed(owners):
        merged.update(vars(owner).get("RULES", {}) if inspect.isclass(owner) else getattr(owner, "RULES", {}))
    return merged
