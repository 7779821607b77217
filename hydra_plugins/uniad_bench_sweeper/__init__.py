"""The sweeper of every sweep (conf/config.yaml sets ``hydra.sweeper._target_`` to it), which runs a table's
rows under ``hydra/sweeper=table`` (set by ``conf/experiment/*.yaml``).

Before its first job it says where the sweep stands (``bench.sweep_plan``: the job count, the profile and
its epochs, the sweep dir, a time estimate) and refuses a sweep dir that holds another profile's records.
Without a table (a plain ``-m`` sweep) it is Hydra's BasicSweeper.

Each experiment file declares its table once under ``hydra.sweeper.table`` (rows with their overrides,
paper numbers, labels; see ``reports/declaration.py``). This sweeper is Hydra's BasicSweeper whose
cartesian product (``hydra.sweeper.params``, e.g. the seeds, and any sweep on the command line) is
taken once per row, the row's overrides first: job = row overrides + one combination. The jobs go to
whatever launcher is configured (basic, ``hydra/launcher=local`` or ``slurm``), as before.

``hydra.sweeper.select=[9,1]`` runs only those rows (by id); ``select=[]`` is an error (it would run
nothing and exit 0). A command-line override of a key that the
rows set is refused: every row would become the same run.

(Hydra loads sweepers only from the ``hydra_plugins`` namespace package, hence this folder. No
``from __future__ import annotations``: Hydra imports plugins outside sys.modules, which breaks
dataclasses with string annotations.)
"""


import logging
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf


@dataclass
class TableSweeperConf:
    _target_: str = "hydra_plugins.uniad_bench_sweeper.TableSweeper"
    max_batch_size: Any = None
    params: Any = None  # {key: "a,b,c"} swept for every row (the seeds)
    table: Any = None  # the table declaration (conf/experiment/*.yaml)
    select: Any = None  # row ids to run; null = all rows that have overrides


ConfigStore.instance().store(group="hydra/sweeper", name="table", node=TableSweeperConf, provider="uniad_bench")


def override_key(override: str) -> str:
    """``+model.nma=true`` -> ``model.nma``."""
    return override.split("=", 1)[0].lstrip("+~")


def table_rows(table: Any, select: Any = None) -> list[tuple[str, list[str]]]:
    """``[(row id, [override, ...]), ...]`` of the rows to run, in the table's order.

    Rows without overrides (numbers the paper has and we do not run) are skipped.
    """
    if table is None:
        raise CompactHydraException("error: hydra/sweeper=table needs hydra.sweeper.table (see conf/experiment/)")
    table = OmegaConf.to_container(table, resolve=False) if OmegaConf.is_config(table) else table
    rows = [(str(r["id"]), [str(o) for o in r.get("overrides") or []]) for r in table.get("rows") or []]
    rows = [(i, o) for i, o in rows if o]
    if select is not None:
        select = OmegaConf.to_container(select) if OmegaConf.is_config(select) else select
        wanted = [str(s) for s in (select if isinstance(select, list | tuple) else [select])]
        ids = [i for i, _ in rows]
        if not wanted:
            raise CompactHydraException(
                f"error: hydra.sweeper.select=[] selects no row of table {table.get('key')}: give row ids "
                f"({', '.join(ids)}) or drop it to run every row"
            )
        unknown = [s for s in wanted if s not in ids]
        if unknown:
            raise CompactHydraException(
                f"error: hydra.sweeper.select: no row {', '.join(unknown)} in table {table.get('key')}; "
                f"its rows are {', '.join(ids)}"
            )
        rows = [(i, o) for i, o in rows if i in wanted]
    return rows


def expand(rows: list[tuple[str, list[str]]], combos: list[list[str]]) -> list[list[str]]:
    """Every row's overrides followed by every combination of the other overrides (rows outermost)."""
    row_keys = {override_key(o) for _, overrides in rows for o in overrides}
    clash = sorted({override_key(o) for combo in combos for o in combo} & row_keys)
    if clash:
        raise CompactHydraException(
            f"error: {', '.join(clash)} is set by the table's rows; drop it from the command line "
            "(hydra.sweeper.select=[id,...] runs some rows only)"
        )
    return [[*overrides, *combo] for _, overrides in rows for combo in combos]


class TableSweeper(BasicSweeper):
    """BasicSweeper over ``rows x params`` (over ``params`` alone without a table): see the module docstring."""

    def __init__(self, max_batch_size: Any = None, params: Any = None, table: Any = None, select: Any = None):
        super().__init__(max_batch_size=max_batch_size, params=dict(params or {}))
        self.table, self.select = table, select

    def jobs(self, overrides: list[Override]) -> list[list[str]]:
        combos = BasicSweeper.split_arguments(overrides, None)[0]
        return combos if self.table is None else expand(table_rows(self.table, self.select), combos)

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        from bench.errors import BenchError
        from bench.sweep_plan import start

        jobs = self.jobs(overrides)
        if not self.config.get("verbose"):  # the jobs' own "job k/N" lines replace Hydra's "#k : ..." lines
            logging.getLogger("hydra").setLevel(logging.WARNING)
        try:
            print(start(self.config, jobs), flush=True)
        except BenchError as exc:  # one line, no traceback (Hydra prints a CompactHydraException's message)
            raise CompactHydraException(f"error: {exc}") from None
        if max_batch_size is None:
            return [jobs]
        return [jobs[i : i + max_batch_size] for i in range(0, len(jobs), max_batch_size)]

