"""The rule vocabulary: a number in a range (``INT``, ``REAL``), a flag (``BOOL``), a choice (``ONE_OF``),
a list of names (``NAMES``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """The allowed values of one key: a number in a range, a boolean, or one of some choices.

    ``kind`` is ``int``, ``real``, ``bool``, ``choice`` or ``names`` (a list of strings, each passing ``check``,
    which says why a name is refused or returns None); ``low``/``high`` bound a number (``open_low``
    / ``open_high`` exclude the bound), ``null`` allows None, ``items`` applies the rule to each entry
    of a list (of ``length`` entries when given; ``ordered``: in non-decreasing order, as ``[low, high]``).
    ``multiple_of`` is a number the value must divide by, or the name of a sibling key holding it
    (``"nhead"``: the same node's ``nhead``; checked by ``bench.validate``, which sees the node).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple = ()
    null: bool = False
    items: bool = False
    length: int | None = None
    ordered: bool = False
    multiple_of: int | str | None = None
    check: Callable[[object], str | None] | None = None

    def allowed(self) -> str:
        """The allowed values in words, for an error message ("an integer >= 1")."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "names":
            text = "a list of one or more names, e.g. [bottle]"
        elif self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text = (f"{noun} in {'(' if self.open_low else '['}{_num(self.low)}, "
                        f"{_num(self.high)}{')' if self.open_high else ']'}")
            elif self.low is not None:
                text = f"{noun} {'>' if self.open_low else '>='} {_num(self.low)}"
            elif self.high is not None:
                text = f"{noun} {'<' if self.open_high else '<='} {_num(self.high)}"
            else:
                text = f"{noun} (finite)"
            if self.multiple_of is not None:
                text += f", a multiple of {self.multiple_of}"
        if self.items:
            text = f"a list of {self.length or 'one or more'} values, each {text}"
            if self.ordered:
                text += ", as [low, high] with low <= high"
        return text + (", or null" if self.null else "")

    def ok(self, value) -> bool:
        """Whether ``value`` is allowed (a sibling ``multiple_of`` is not checked here)."""
        if value is None:
            return self.null
        if self.kind == "names":
            return isinstance(value, list | tuple) and bool(value) and self.refused(value) is None
        if self.items:
            if not isinstance(value, list | tuple) or not value or (self.length and len(value) != self.length):
                return False
            single = Rule(self.kind, self.low, self.high, self.open_low, self.open_high, self.choices,
                          multiple_of=self.multiple_of)
            in_order = not self.ordered or all(a <= b for a, b in zip(value, value[1:], strict=False))
            return all(single.ok(v) for v in value) and in_order
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return isinstance(value, str | int) and not isinstance(value, bool) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False  # true, "3" and [1] are not numbers
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False  # 2.7 is not an integer
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return False
        return not (isinstance(self.multiple_of, int) and value % self.multiple_of)


    def refused(self, value) -> str | None:
        """The first name of ``value`` that ``check`` refuses and why (``"'a/b' is a path, ..."``), or None."""
        if self.check is None or not isinstance(value, list | tuple):
            return None
        for item in value:
            reason = self.check(item)
            if reason:
                return f"{item!r} {reason}"
        return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def INT(low=None, high=None, **kw) -> Rule:  # noqa: N802
    """An integer in [low, high] (either bound may be None; ``open_low``/``open_high`` exclude it)."""
    return Rule("int", low, high, **kw)


def REAL(low=None, high=None, **kw) -> Rule:  # noqa: N802
    """A finite number in [low, high] (either bound may be None; ``open_low``/``open_high`` exclude it)."""
    return Rule("real", low, high, **kw)


BOOL = Rule("bool")


def ONE_OF(*choices, **kw) -> Rule:  # noqa: N802
    """One of ``choices`` (strings or integers)."""
    return Rule("choice", choices=choices, **kw)


def NAMES(check: Callable[[object], str | None], **kw) -> Rule:  # noqa: N802
    """A list of one or more names, each accepted by ``check`` (None) or refused with its reason."""
    return Rule("names", check=check, **kw)


PROB = REAL(0, 1)
SEED = INT(0, 2**32 - 1)  # numpy's seed range; torch and Python accept it too
