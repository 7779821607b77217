"""Follow the config through one job: ``python ops/config_walk.py [OVERRIDE ...]``.

A reading aid for refactoring (issue of the ground floor): how many of the suite's functions a newcomer
must visit to follow ``cfg`` from ``bench.job.run``. A smoke job (``profile=smoke``, four training images,
one epoch, unless overridden) runs in a scratch folder three times: ``fit``, then the same command again
(skipped as completed), then ``task=eval`` from its checkpoint. For each it prints

- stays: calls of the suite's own functions (not tests, not libraries) that receive the config: the
  composed ``DictConfig`` or a node of it, or an object holding one (the resolved job) as an argument;
- functions and files: how many distinct ones those stays are in;
- returns: stays whose function hands a config (or an object holding one) back to its caller;
- resolutions: calls of ``OmegaConf.to_container(resolve=True)``, ``to_object`` or ``resolve`` on a whole
  config (a root node) from the suite's code, and the places (functions) that make them;
- the first ten functions visited, in order.

Numbers depend on the overrides, never on timing: two runs of one checkout print the same walk.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

from omegaconf import Container
from smoke_capture import TINY  # the same tiny smoke job the capture sweeps (ops/ is on the path: run by path)

ROOT = Path(__file__).resolve().parent.parent
OWN = tuple(str(ROOT / p) + os.sep for p in ("bench", "record", "metrics", "rules", "reports", "models", "data"))
RESOLVING = {"to_container", "to_object", "resolve"}


def _holds_config(value, depth: int = 0) -> bool:
    if isinstance(value, Container):
        return True
    if depth == 0 and dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_holds_config(getattr(value, f.name, None), 1) for f in dataclasses.fields(value))
    if depth == 0 and hasattr(value, "__dict__") and not isinstance(value, type):
        return any(_holds_config(v, 1) for v in vars(value).values())
    return False


def _is_root(frame) -> bool:
    """Whether the OmegaConf call in ``frame`` was given a whole config (a node without a parent)."""
    node = frame.f_locals.get("cfg")
    return isinstance(node, Container) and node._get_parent() is None


class Walk:
    """A profiler hook counting the stays, returns and resolutions of one job."""

    def __init__(self):
        self.stays: list[tuple[str, str]] = []
        self.returns = 0
        self.resolutions: list[str] = []
        self._carrying: set[int] = set()

    def __call__(self, frame, event, arg):
        code = frame.f_code
        if code.co_filename.endswith("omegaconf.py"):
            caller = frame.f_back
            if (event == "call" and code.co_name in RESOLVING and caller is not None
                    and caller.f_code.co_filename.startswith(OWN) and _is_root(frame)
                    and frame.f_locals.get("resolve", True)):
                self.resolutions.append(f"{os.path.relpath(caller.f_code.co_filename, ROOT)}: "
                                        f"{caller.f_code.co_qualname}")
            return
        if not code.co_filename.startswith(OWN):
            return
        if event == "call":
            n_args = code.co_argcount + code.co_kwonlyargcount
            args = [frame.f_locals.get(name) for name in code.co_varnames[:n_args]]
            if any(_holds_config(a) for a in args):
                self._carrying.add(id(frame))
                self.stays.append((os.path.relpath(code.co_filename, ROOT), code.co_qualname))
        elif event == "return" and id(frame) in self._carrying:
            self._carrying.discard(id(frame))
            if _holds_config(arg):
                self.returns += 1

    def summary(self, title: str) -> str:
        functions = Counter(self.stays)
        files = {f for f, _ in self.stays}
        places = "".join(f"\n    resolved in {p}" for p in sorted(set(self.resolutions)))
        first = "\n".join(f"    {i + 1}. {f}: {q}" for i, (f, q) in enumerate(list(functions)[:10]))
        return (f"{title}: {len(self.stays)} stays in {len(functions)} functions in {len(files)} files, "
                f"{self.returns} returns, {len(self.resolutions)} resolutions of the whole config in "
                f"{len(set(self.resolutions))} places{places}\n{first}")


def walk(overrides: list[str], run_dir: Path) -> Walk:
    from hydra import compose, initialize_config_dir

    from bench.job import run

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    hook = Walk()
    sys.setprofile(hook)
    try:
        run(cfg, run_dir)
    finally:
        sys.setprofile(None)
    return hook


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    overrides = TINY + argv
    scratch = Path(tempfile.mkdtemp(prefix="config-walk-"))
    os.environ["UNIAD_BENCH_DATA"] = str(scratch / "datasets")
    os.environ["UNIAD_BENCH_CACHE"] = str(scratch / "cache")
    fit_dir = scratch / "fit"
    print(walk(overrides, fit_dir).summary("fit"))
    print(walk(overrides, fit_dir).summary("skip (the same command again)"))
    ckpt = next(fit_dir.rglob("*.ckpt"))
    print(walk(overrides + ["task=eval", f"ckpt={ckpt}"], scratch / "eval").summary("eval (from the checkpoint)"))


if __name__ == "__main__":
    main(sys.argv[1:])
