#!/usr/bin/env python3
"""A throwaway one-node SLURM cluster with accounting, on loopback only, for ``tests/slurm``.

    python tests/slurm/cluster.py [--keep] -- COMMAND [ARGS...]

installs Debian's SLURM, munge and MariaDB packages when absent, writes every config, state, spool,
log and socket into a fresh temp dir, starts munged, mariadbd, slurmdbd, slurmctld and slurmd by hand
(each a child of this process, its pid kept), waits for the node to be idle, runs COMMAND with
``SLURM_CONF`` and ``UNIAD_SLURM_PARTITION`` exported, then cancels what is left in the queue and stops
exactly the daemons it started, also when COMMAND or a start fails. The exit status is COMMAND's.

When the cluster cannot be had (not root, no apt-get, the install fails, a daemon dies or never gets
ready), it prints ``slurm tests: SKIPPED (reason)`` and exits 0 without running COMMAND.

Every socket is on 127.0.0.1 or a unix socket: the daemons run with
``CommunicationParameters=NoCtldInAddrAny,NoInAddrAny`` and addresses pinned to 127.0.0.1, MariaDB with
``bind-address=127.0.0.1``. Only needs the standard library (run it with any python3).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server"]
PROGRAMS = ["slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "sinfo", "scontrol", "munged", "mungekey",
            "mariadbd", "mariadb-install-db", "mariadb"]
PARTITION = "test"
CLUSTER = "uniadtest"
LOOPBACK = "127.0.0.1"
DB_USER, DB_PASS, DB_NAME = "slurm", "slurm-test-only", "slurm_acct_db"


class Skip(Exception):
    """The cluster cannot be had here; the message says why."""


def log(msg: str) -> None:
    print(f"[slurm-cluster] {msg}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def with_sbin_path(env: dict) -> dict:
    parts = env.get("PATH", "").split(os.pathsep)
    for extra in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if extra not in parts:
            parts.append(extra)
    return {**env, "PATH": os.pathsep.join(p for p in parts if p)}


def missing_programs() -> list[str]:
    path = with_sbin_path(dict(os.environ))["PATH"]
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


def ensure_packages() -> None:
    missing = missing_programs()
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise Skip(f"{', '.join(missing)} not installed and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    log(f"installing {' '.join(PACKAGES)} (missing: {', '.join(missing)})")
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # stale package lists: update once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Skip(f"apt-get install failed: {tail[0]}")
    still = missing_programs()
    if still:
        raise Skip(f"installed the packages but {', '.join(still)} is still missing")


class Cluster:
    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="uniad-slurm-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.ports = {}
        for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb"):
            port = free_port()
            while port in self.ports.values():
                port = free_port()
            self.ports[name] = port
        self.munge_socket = self.dir / "munge" / "munge.socket.2"
        self.db_socket = self.dir / "run" / "mariadb.sock"
        self.conf = self.dir / "etc" / "slurm.conf"
        self.env = with_sbin_path({**os.environ, "SLURM_CONF": str(self.conf)})
        self.failed = False

    # -- helpers -------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        out = open(self.path("log", f"{name}.stdout"), "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=self.env, cwd=self.dir, start_new_session=True)
        out.close()
        self.procs.append((name, proc))
        log(f"started {name} (pid {proc.pid})")
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise Skip(f"{name} exited with status {proc.returncode} while starting; see {self.log_tail(name)}")

    def log_tail(self, name: str) -> str:
        files = [p for p in self.path("log").glob(f"{name}*") if p.stat().st_size]
        lines = []
        for f in files:
            lines += [f"{f.name}: {line}" for line in f.read_text(errors="replace").strip().splitlines()[-3:]]
        return " | ".join(lines) if lines else f"{self.path('log')} (no log)"

    def wait_for(self, what: str, ready, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.3)
        raise Skip(f"{what} not ready after {timeout:.0f} s")

    def quiet(self, argv: list[str], timeout: float = 20, input: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, input=input)

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        for sub in ("etc", "munge", "state", "spool", "log", "run", "db"):
            self.path(sub).mkdir(mode=0o755)
        self.path("munge").chmod(0o755)  # the socket's folder must be world-executable
        self.start_munge()
        self.start_mariadb()
        self.write_slurm_conf()
        self.start_slurmdbd()
        self.start_slurm()

    def start_munge(self) -> None:
        key = self.path("munge", "munge.key")
        result = self.quiet(["mungekey", "-c", "-k", str(key)])
        if result.returncode != 0:
            raise Skip(f"mungekey failed: {result.stderr.strip()}")
        key.chmod(0o400)
        self.spawn("munged", ["munged", "-F", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                              f"--log-file={self.path('log', 'munged.log')}",
                              f"--pid-file={self.path('run', 'munged.pid')}",
                              f"--seed-file={self.path('munge', 'munged.seed')}"])

        def munge_works() -> bool:
            cred = self.quiet(["munge", "-n", "-S", str(self.munge_socket)])
            return cred.returncode == 0 and self.quiet(["unmunge", "-S", str(self.munge_socket)],
                                                          input=cred.stdout).returncode == 0

        self.wait_for("munged", munge_works, 20)

    def start_mariadb(self) -> None:
        datadir = self.path("db")
        result = self.quiet(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                             "--auth-root-authentication-method=socket", "--skip-test-db"], timeout=120)
        if result.returncode != 0:
            raise Skip(f"mariadb-install-db failed: {(result.stderr or result.stdout).strip()[-300:]}")
        self.spawn("mariadbd", [
            "mariadbd", "--no-defaults", f"--datadir={datadir}", "--user=root",
            f"--socket={self.db_socket}", f"--port={self.ports['mariadb']}", f"--bind-address={LOOPBACK}",
            "--skip-name-resolve", f"--pid-file={self.path('run', 'mariadbd.pid')}",
            f"--log-error={self.path('log', 'mariadbd.log')}", "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M", "--performance-schema=OFF", "--skip-log-bin",
        ])
        sql = ["mariadb", "--no-defaults", "-S", str(self.db_socket), "-u", "root"]
        self.wait_for("mariadbd", lambda: self.quiet([*sql, "-e", "SELECT 1"]).returncode == 0, 60)
        grant = (f"CREATE USER '{DB_USER}'@'{LOOPBACK}' IDENTIFIED BY '{DB_PASS}'; "
                 f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'{LOOPBACK}'; FLUSH PRIVILEGES;")
        result = self.quiet([*sql, "-e", grant])
        if result.returncode != 0:
            raise Skip(f"could not create the accounting database user: {result.stderr.strip()}")

    def write_slurm_conf(self) -> None:
        cpus = os.cpu_count() or 1
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        real_mem = max(1024, min(mem_mb - 512, 8192))  # jobs ask for 1 GB each; leave the host room
        auth = f"socket={self.munge_socket}"
        d = self.dir
        self.conf.write_text(f"""\
# Written by tests/slurm/cluster.py: a one-node test cluster on loopback; deleted after the run.
ClusterName={CLUSTER}
SlurmctldHost={self.node}({LOOPBACK})
SlurmctldPort={self.ports['slurmctld']}
SlurmdPort={self.ports['slurmd']}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo={auth},cred_expire=10
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
EnforcePartLimits=ALL
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost={LOOPBACK}
AccountingStoragePort={self.ports['slurmdbd']}
AccountingStoragePass={self.munge_socket}
NodeName={self.node} NodeAddr={LOOPBACK} NodeHostname={self.node} CPUs={cpus} RealMemory={real_mem} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        dbd = self.path("etc", "slurmdbd.conf")
        dbd.write_text(f"""\
# Written by tests/slurm/cluster.py.
AuthType=auth/munge
AuthInfo={auth}
DbdHost={self.node}
DbdAddr={LOOPBACK}
DbdPort={self.ports['slurmdbd']}
CommunicationParameters=NoInAddrAny
SlurmUser=root
LogFile={d}/log/slurmdbd.log
PidFile={d}/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost={LOOPBACK}
StoragePort={self.ports['mariadb']}
StorageUser={DB_USER}
StoragePass={DB_PASS}
StorageLoc={DB_NAME}
""")
        dbd.chmod(0o600)  # slurmdbd refuses a readable one

    def start_slurmdbd(self) -> None:
        self.spawn("slurmdbd", ["slurmdbd", "-D"])
        self.wait_for("slurmdbd", lambda: port_open(self.ports["slurmdbd"]), 60)

    def start_slurm(self) -> None:
        self.spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self.wait_for("slurmctld", lambda: self.quiet(["scontrol", "ping"]).stdout.count("UP") > 0, 60)
        self.spawn("slurmd", ["slurmd", "-D", "-N", self.node])

        def node_idle() -> bool:
            out = self.quiet(["sinfo", "-h", "-N", "-o", "%T"]).stdout.split()
            return bool(out) and all(state.rstrip("*") == "idle" for state in out)

        self.wait_for("node idle in sinfo", node_idle, 60)

        def accounting_up() -> bool:  # the cluster registers itself with slurmdbd; sacct must answer
            return self.quiet(["sacct", "-n", "-X", "-a"]).returncode == 0

        self.wait_for("sacct (accounting)", accounting_up, 30)
        log(f"cluster up: partition {PARTITION}, node {self.node}, SLURM_CONF={self.conf}")

    # -- stop ----------------------------------------------------------------------------------
    def cancel_jobs(self) -> None:
        if not any(name == "slurmctld" and proc.poll() is None for name, proc in self.procs):
            return
        try:
            ids = self.quiet(["squeue", "-h", "-o", "%i"]).stdout.split()
            if not ids:
                return
            log(f"cancelling {len(ids)} job(s) left in the queue")
            self.quiet(["scancel", "--full", *ids])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.quiet(["squeue", "-h", "-o", "%i"]).stdout.split():
                time.sleep(1)
        except (OSError, subprocess.SubprocessError) as exc:
            log(f"could not cancel the queue: {exc}")

    def stop(self) -> None:
        self.cancel_jobs()
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    log(f"{name} (pid {proc.pid}) ignored SIGTERM; killing it")
                    proc.kill()
                    proc.wait(timeout=10)
            log(f"stopped {name} (pid {proc.pid}, status {proc.returncode})")
        if self.keep or self.failed:
            log(f"kept {self.dir} (configs and daemon logs)")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, daemon logs)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] to run on the cluster")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")

    # SIGTERM/SIGHUP (e.g. the caller is stopped) still go through the finally below
    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    cluster = None
    try:
        if os.geteuid() != 0:
            raise Skip("not root: the test cluster's daemons (slurmd, munged) need root")
        ensure_packages()
        cluster = Cluster(keep=args.keep)
        t0 = time.monotonic()
        cluster.start()
        log(f"started in {time.monotonic() - t0:.1f} s")
    except Skip as reason:
        if cluster is not None:
            cluster.failed = True
            cluster.stop()
        print(f"slurm tests: SKIPPED ({reason})", flush=True)
        return 0
    except BaseException:
        if cluster is not None:
            cluster.failed = True
            cluster.stop()
        raise

    env = {**cluster.env, "UNIAD_SLURM_PARTITION": PARTITION}
    rc = 1
    try:
        rc = subprocess.run(command, env=env).returncode
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        cluster.failed = rc != 0
        cluster.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
