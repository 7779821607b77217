"""Prepare the GPU check for a lent machine that has no registry: ``make gpu-bundle [OFFICIAL=<checkout>]``.

``python -m ops.gpu.bundle [--official PATH]`` does the same from the repository root.

* ``.whl/``: a wheel for CPython 3.12 on manylinux x86-64 of each package in ``bundle.txt`` (what the check
  needs beyond the machine's own packages, ``h200_packages.txt``), exactly one version each; a package that
  exists only as an sdist (marked ``build``) is built into a wheel here. Every wheel's dependencies must be in
  the bundle or on the machine, or the bundle is refused, naming them.
* ``.official/``: the files of a zhiyuanyou/UniAD checkout (``OFFICIAL``), for the side-by-side step, with a
  ``PROVENANCE`` file (source, commit); kept from an earlier run when ``OFFICIAL`` is not given.
* prints the sizes (the working tree plus the carried folders must stay under the device's 64 MiB) and the one
  device command: ``bash ops/gpu/check_bare.sh "$OUT" cuda`` with what to carry and its timeout.

Both folders are git-ignored; nothing here is committed. Commands: ops/gpu/README.md.
"""

from __future__ import annotations

import argparse
import email.parser
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from bench.errors import BenchError

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WHEELS = ".whl"
OFFICIAL = ".official"
LIMIT_MIB = 64  # the device's limit on the working tree that travels, carried folders included
PYTHON = "3.12"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
CHECK_BUDGET_S = 360  # check_bare.sh's default overall timeout of the check, seconds
DEVICE_TIMEOUT_S = 450  # the device command's limit: the budget, the install and the copy of $OUT


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_list(path: Path) -> list[str]:
    """Non-comment lines of a package list."""
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def requirements(path: Path = HERE / "bundle.txt") -> list[tuple[str, str, bool]]:
    """(name, version, build from sdist) of each bundled package."""
    out = []
    for line in read_list(path):
        spec, *flags = line.split()
        name, _, version = spec.partition("==")
        if not version:
            raise BenchError(f"{path.name}: {spec!r} needs an exact version (name==version)")
        out.append((name, version, flags == ["build"]))
    return out


def machine_packages(path: Path = HERE / "h200_packages.txt") -> set[str]:
    return {normalize(n) for n in read_list(path)}


def wheel_name(file: Path) -> tuple[str, str]:
    """(normalized distribution name, version) of a wheel file."""
    name, version = file.name.split("-")[:2]
    return normalize(name), version


def wheel_fits(file: Path) -> bool:
    """A pure-Python wheel, or one for CPython 3.12 on manylinux x86-64."""
    *_, python, abi, platform = file.stem.split("-")
    if platform == "any":
        return any(tag.startswith("py3") or tag == "cp312" for tag in python.split("."))
    return "cp312" in python.split(".") and abi in ("cp312", "abi3", "none") and \
        all(p.startswith("manylinux") and p.endswith("x86_64") for p in platform.split("."))


def fetch(name: str, version: str, build: bool, dest: Path) -> Path:
    """The wheel of ``name==version`` in ``dest`` (downloaded, or built from its sdist when ``build``)."""
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = [p for p in dest.glob("*.whl") if wheel_name(p) == (normalize(name), version)]
    if not found:
        pip = [sys.executable, "-m", "pip"]
        if build:  # an sdist-only release: a pure-Python wheel built here
            cmd = [*pip, "wheel", "-q", "--no-deps", "--no-binary", name, "-w", str(dest), f"{name}=={version}"]
        else:
            cmd = [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON,
                   "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(dest),
                   f"{name}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            tail = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln][-3:]
            raise BenchError(f"gpu-bundle: no wheel of {name}=={version} ({'; '.join(tail)})")
        found = [p for p in dest.glob("*.whl") if wheel_name(p) == (normalize(name), version)]
    if len(found) != 1:
        raise BenchError(f"gpu-bundle: expected one {pattern} in {dest}, found {[p.name for p in found]}")
    if not wheel_fits(found[0]):
        raise BenchError(f"gpu-bundle: {found[0].name} is not for CPython {PYTHON} on manylinux x86-64")
    return found[0]


def dependencies(wheel: Path) -> list[str]:
    """Names of the distributions ``wheel`` requires on CPython 3.12, Linux x86-64 (no extras)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(z.read(meta).decode())
    env = {"python_version": PYTHON, "python_full_version": f"{PYTHON}.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    out = []
    for line in message.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.append(normalize(req.name))
    return out


def missing_dependencies(wheels: list[Path], machine: set[str]) -> dict[str, list[str]]:
    """{wheel file: its dependencies neither in the bundle nor on the machine}."""
    bundled = {wheel_name(w)[0] for w in wheels}
    missing = {w.name: [d for d in dependencies(w) if d not in bundled and d not in machine] for w in wheels}
    return {k: v for k, v in missing.items() if v}


def build_wheels(dest: Path, reqs: list[tuple[str, str, bool]], machine: set[str]) -> list[Path]:
    dest.mkdir(exist_ok=True)
    wheels = [fetch(name, version, build, dest) for name, version, build in reqs]
    for stale in set(dest.glob("*.whl")) - set(wheels):  # one version of each, nothing else: pip installs them all
        stale.unlink()
    missing = missing_dependencies(wheels, machine)
    if missing:
        raise BenchError("gpu-bundle: dependencies neither bundled nor on the machine: "
                         + "; ".join(f"{w} needs {', '.join(d)}" for w, d in missing.items())
                         + " (add them to ops/gpu/bundle.txt)")
    return wheels


def copy_official(source: Path, dest: Path) -> None:
    """The checkout's files (its git-tracked files when it is a git work tree, without ``.git``) into ``dest``."""
    from bench.tools.official import OFFICIAL_FILE

    source = source.expanduser().resolve()
    if not (source / OFFICIAL_FILE).is_file():
        raise BenchError(f"gpu-bundle: no {OFFICIAL_FILE} under {source}: OFFICIAL= takes a zhiyuanyou/UniAD checkout")
    listed = subprocess.run(["git", "-C", str(source), "ls-files", "-z"], capture_output=True, text=True)
    files = [f for f in listed.stdout.split("\0") if f] if listed.returncode == 0 else \
        [str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() and ".git" not in p.parts]
    if dest.exists():
        shutil.rmtree(dest)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target)
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True)
    remote = subprocess.run(["git", "-C", str(source), "remote", "get-url", "origin"], capture_output=True, text=True)
    (dest / "PROVENANCE").write_text(
        f"source: {source}\ncommit: {commit.stdout.strip() or 'unknown'}\n"
        f"remote: {remote.stdout.strip() or 'unknown'}\nfiles: {len(files)}\n")


def size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def travelling_tree_bytes(root: Path) -> int | None:
    """Bytes of the working tree that travels (tracked and untracked-not-ignored files), or None outside git."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode:
        return None
    return sum((root / f).stat().st_size for f in listed.stdout.split("\0") if f and (root / f).is_file())


def device_command(carry: list[str]) -> str:
    return (f'command:   bash ops/gpu/check_bare.sh "$OUT" cuda\n'
            f"carry:     {carry}\n"
            f"timeout_s: {DEVICE_TIMEOUT_S}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ops.gpu.bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", metavar="PATH", help="a zhiyuanyou/UniAD checkout to carry as .official/")
    parser.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.root)
    try:
        wheels = build_wheels(root / WHEELS, requirements(), machine_packages())
        if args.official:
            copy_official(Path(args.official), root / OFFICIAL)
    except BenchError as exc:
        raise SystemExit(str(exc)) from None
    carry = [WHEELS] + ([OFFICIAL] if (root / OFFICIAL).is_dir() else [])
    sizes = {w.name: size_bytes(w) for w in wheels}
    official = size_bytes(root / OFFICIAL) if (root / OFFICIAL).is_dir() else 0
    tree = travelling_tree_bytes(root)
    total = sum(sizes.values()) + official + (tree or 0)
    print("gpu-bundle: .whl/ (CPython 3.12, manylinux x86-64):")
    for name, size in sizes.items():
        print(f"  {size / 2**20:7.2f} MiB  {name}")
    print(f"  {official / 2**20:7.2f} MiB  .official/" + ("" if official else " (absent: give OFFICIAL=<checkout>)"))
    print(f"  {(tree or 0) / 2**20:7.2f} MiB  the working tree that travels")
    print(f"  {total / 2**20:7.2f} MiB  in all (the device takes at most {LIMIT_MIB} MiB)")
    if total > LIMIT_MIB * 2**20:
        raise SystemExit(f"gpu-bundle: {total / 2**20:.1f} MiB would travel, over the device's {LIMIT_MIB} MiB")
    print("\nThe device command (the device tool's `run`; one full check, at most 6 minutes of it):\n"
          + device_command(carry))
    return {"wheels": sizes, "official_bytes": official, "tree_bytes": tree, "total_bytes": total, "carry": carry}


if __name__ == "__main__":
    main()
