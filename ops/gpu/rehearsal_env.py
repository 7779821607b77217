"""An interpreter environment like the lent GPU machine's: ``python -m ops.gpu.rehearsal_env DIR``.

A venv at DIR (no pip of its own, no packages installed) whose site-packages link to the distributions of the
running interpreter's environment that the lent machine has too (``h200_packages.txt``: torch, timm, the
scientific stack, pytest, pip, ...), plus what those need here (this environment's versions may need more than
the machine's: huggingface-hub's HTTP client, say), and to nothing else: not this project's install, never a
package of the GPU bundle (hydra, omegaconf, antlr4, the lite0 weights), which the machine lacks. The rehearsal
(``rehearsal.sh``) runs the bare GPU check with it, so a package missing from the bundle fails there as
it would on the machine. Links, not copies: building it takes a second.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from ops.gpu.bundle import machine_packages, normalize, requirements

MAX_DEPTH = 6  # deeper than any namespace package shared by a kept and a left-out distribution


def with_dependencies(site: Path, names: set, never: set) -> set:
    """``names`` and, transitively, the distributions of ``site`` they require (no extras), but ``never``."""
    from packaging.requirements import Requirement

    dists = {normalize(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=[str(site)])}
    out, frontier = set(names) - never, list(set(names) - never)
    while frontier:
        for line in dists[frontier.pop()].requires or []:
            req = Requirement(line)
            name = normalize(req.name)
            if (req.marker is None or req.marker.evaluate({"extra": ""})) and name in dists \
                    and name not in out and name not in never:
                out.add(name)
                frontier.append(name)
    return out


def owners_by_prefix(site: Path) -> tuple[dict[tuple, set], set]:
    """{path prefix under ``site``: names of the distributions owning a file below it}, and all names."""
    owners: dict[tuple, set] = defaultdict(set)
    names = set()
    for dist in importlib.metadata.distributions(path=[str(site)]):
        name = normalize(dist.metadata["Name"])
        names.add(name)
        for file in dist.files or []:
            parts = Path(file).parts
            if not parts or parts[0] == ".." or "__pycache__" in parts:
                continue
            for depth in range(1, min(len(parts), MAX_DEPTH) + 1):
                owners[parts[:depth]].add(name)
    return owners, names


def link_tree(source: Path, target: Path, owners: dict[tuple, set], keep: set, prefix: tuple = ()) -> int:
    """Link each entry of ``source`` owned only by kept distributions; recurse into mixed folders."""
    linked = 0
    for entry in sorted((source.joinpath(*prefix)).iterdir()):
        key = (*prefix, entry.name)
        who = owners.get(key, set())
        if not who or not (who & keep):
            continue
        if who <= keep or len(key) >= MAX_DEPTH or not entry.is_dir():
            (target.joinpath(*key)).symlink_to(entry)
            linked += 1
        else:  # a namespace folder shared with a left-out distribution (google/, nvidia/, hydra_plugins/)
            (target.joinpath(*key)).mkdir()
            linked += link_tree(source, target, owners, keep, key)
    return linked


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def build(env: Path, source: Path | None = None, keep: set | None = None) -> dict:
    """The environment at ``env``; returns the kept and the left-out distribution names."""
    source = source or site_packages(Path(sys.executable))
    keep_all = keep if keep is not None else machine_packages()
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", "--clear",
                    str(env)], check=True)
    target = site_packages(env / "bin" / "python")
    owners, names = owners_by_prefix(source)
    bundled = {normalize(name) for name, _, _ in requirements()}
    kept = with_dependencies(source, names & keep_all, bundled)
    n = link_tree(source, target, owners, kept)
    return {"site": str(target), "kept": sorted(kept), "left_out": sorted(names - kept), "links": n}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ops.gpu.rehearsal_env", description=__doc__.split("\n\n")[0])
    parser.add_argument("env", help="folder of the environment (replaced)")
    args = parser.parse_args(argv)
    result = build(Path(args.env))
    print(f"rehearsal env {args.env}: {len(result['kept'])} distributions of the lent machine linked "
          f"({result['links']} entries); left out: {', '.join(result['left_out'])}")
    return result


if __name__ == "__main__":
    main()
