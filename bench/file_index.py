"""Content digests of dataset files, remembered cheaply: ``FileIndex``.

The feature cache must notice an image replaced by another of the same size and modification time
(``cp -p``, ``rsync -t``), so it keys on a sha256 of each file's content. Hashing every image on every
job would re-read the whole dataset, so each digest is stored in an index beside the feature cache,
``<cache_root>/files/<digest of the dataset folder>.json``, under the file's stat signature
(size, mtime_ns, ctime_ns, inode, device). The signature cannot be forged by a copy: the kernel sets
ctime to "now" on every content or metadata change (``cp -p`` and ``touch -d`` included) and a renamed
replacement (``rsync``) has a new inode, so a changed file always misses and is hashed again; an
unchanged one costs a ``stat``. An entry also says whether the file was decoded completely (the
readability check before training), so that check too runs once per file version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
_UNSAVED: set[str] = set()  # index folders already warned about in this process (bench.feature_cache does the same)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _signature(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class FileIndex:
    """``{path: {"sig": stat signature, "sha256": ..., "decoded": bool}}`` of one dataset folder.

    ``index_dir=None`` keeps it in memory (every digest is computed). Saving is atomic; two jobs that
    save at once lose nothing that matters (the loser's new digests are recomputed next time).
    """

    def __init__(self, index_dir: str | os.PathLike | None, folder: str | os.PathLike | None):
        self.path = None
        if index_dir is not None and folder is not None:
            name = hashlib.sha256(os.path.abspath(os.path.expanduser(folder)).encode()).hexdigest()[:16]
            self.path = Path(index_dir) / f"{name}.json"
        self.entries: dict[str, dict] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                log.warning(f"file index {self.path} is unreadable; hashing the dataset files again")

    @classmethod
    def for_dataset(cls, index_dir: str | os.PathLike | None, dataset) -> FileIndex:
        """The index of ``dataset``'s folder (its ``root``, ``data.protocol.AnomalyDataset``)."""
        return cls(index_dir, dataset.root)

    def digest(self, path: str, *, check: Callable[[str], str] | None = None) -> str:
        """sha256 of ``path``'s content, from the index when the file is unchanged.

        ``check`` (e.g. ``data.transforms.check_image``) decodes the file and returns its sha256; with it
        the entry must also have been decoded, else the file is checked now.
        """
        key = os.path.abspath(path)
        sig = _signature(key)
        entry = self.entries.get(key)
        if entry and entry.get("sig") == sig and (check is None or entry.get("decoded")):
            return entry["sha256"]
        sha = check(path) if check is not None else sha256_file(path)
        self.entries[key] = {"sig": sig, "sha256": sha, "decoded": check is not None}
        self.dirty = True
        return sha

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(self.entries, f)
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.dirty = False
        except OSError as exc:  # only a speed-up: a read-only cache still gives correct digests
            if str(self.path.parent) not in _UNSAVED:  # once per folder: a job saves its index several times
                _UNSAVED.add(str(self.path.parent))
                log.warning(f"could not save the file index {self.path}: {exc} (files are hashed again next time)")
