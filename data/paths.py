"""Where a dataset may lead: category names that stay plain folder names, and files that stay in the root.

Every reader takes its categories from somewhere it does not control (folder names, a split CSV's
``object`` column, JSON file names) and its files from paths others wrote (``../``, absolute paths,
symlinks). Categories become folder and row names of the run (saved maps, records, tables), so a name
that is a path or the tables' ``mean`` row is refused; a file that resolves outside ``data.root`` is
refused unless ``data.follow_links=true`` (a root of symlinks to a dataset elsewhere, deliberately).
Each error names the file, line or JSON key that gave the name or the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from data.errors import DatasetError

RESERVED = ("mean",)  # the name of the mean row in records and tables


def category_problem(name) -> str | None:
    """Why ``name`` cannot be a category, or None: a category is a plain folder name of the dataset
    root (never a path: maps and records are written under it) and not a reserved row name."""
    if not isinstance(name, str) or not name.strip():
        return "is not a folder name"
    if name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0")):
        return "is a path, not a category folder name: give the name of a subfolder of data.root"
    if name.startswith("."):
        return "is a hidden folder, not a category: rename it"
    if name in RESERVED:
        return "collides with the mean row of the tables and records: rename the category folder"
    return None


def check_category(name, where: str | os.PathLike) -> str:
    """``name`` if it is a plain category name, else ``DatasetError`` naming ``where`` (the folder, the
    split file and line, the JSON file that gave it)."""
    problem = category_problem(name)
    if problem:
        raise DatasetError(f"{where}: category {name!r} {problem}")
    return name


class RootGuard:
    """Refuses files that resolve outside a dataset root (``check``), unless ``follow_links``.

    The root and every path are compared resolved (symlinks followed, ``..`` applied); folders already
    resolved are remembered, so checking the files of one folder costs one ``lstat`` each.
    """

    def __init__(self, root: str | os.PathLike, follow_links: bool = False):
        self.root = os.path.realpath(Path(root).expanduser())
        self.follow_links = bool(follow_links)
        self._resolved: dict[str, str] = {}

    def resolve(self, path: str | os.PathLike) -> str:
        """``path`` with every symlink and ``..`` resolved."""
        head, tail = os.path.split(os.fspath(path))
        if not head or tail in ("", ".", ".."):
            return os.path.realpath(path)
        if head not in self._resolved:
            self._resolved[head] = os.path.realpath(head)
        joined = os.path.join(self._resolved[head], tail)
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    def inside(self, path: str | os.PathLike) -> bool:
        resolved = self.resolve(path)
        return resolved == self.root or resolved.startswith(self.root.rstrip(os.sep) + os.sep)

    def check(self, path: str | os.PathLike, named_by: str | os.PathLike | None = None) -> Path:
        """``path`` as a ``Path``; ``DatasetError`` naming ``named_by`` (the file and line or key that gave
        the path; None: the path is a folder's entry) when it resolves outside the root."""
        if self.follow_links or self.inside(path):
            return Path(path)
        where = f"{named_by}: " if named_by is not None else ""
        raise DatasetError(f"{where}{path} resolves to {self.resolve(path)}, outside data.root {self.root}: "
                           "keep the dataset's files inside its root, or set data.follow_links=true")

    def check_all(self, paths: list[Path], named_by: str | os.PathLike | None = None) -> list[Path]:
        for path in paths:
            self.check(path, named_by)
        return paths
