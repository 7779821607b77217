"""bench.tools.perf runs end to end on a tiny config (figures are not checked: this is not a timed test)."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from bench.tools import measure, perf

TINY = ["profile=smoke", "--steps", "1", "--warmup", "0", "--rounds", "1", "--batch-size", "2",
        "--infer-batches", "1", "--latency-runs", "1"]
KEYS = {"device", "train_images_per_s_cached", "train_images_per_s_uncached", "infer_images_per_s",
        "latency_ms_batch1", "peak_memory_mb", "learnable_params", "gflops", "official_train_images_per_s"}

# A stand-in for a zhiyuanyou/UniAD checkout: the same file layout, constructor and forward contract
# (dict in, dict out, ``from models.initializer import ...``, einops, hard-coded ``.cuda()``), nothing else.
FAKE_OFFICIAL = '''
import torch
from einops import rearrange
from models.initializer import initialize_from_cfg
from torch import nn


class UniAD(nn.Module):
    def __init__(self, inplanes, instrides, feature_size, feature_jitter, neighbor_mask, hidden_dim,
                 pos_embed_type, save_recon, initializer, **kwargs):
        super().__init__()
        assert feature_jitter.scale == 20 and neighbor_mask.mask == [True, True, True] and not save_recon
        self.feature_size = feature_size
        self.input_proj = nn.Linear(inplanes[0], hidden_dim)
        self.output_proj = nn.Linear(hidden_dim, inplanes[0])
        initialize_from_cfg(self, initializer)

    def forward(self, input):
        feature_align = input["feature_align"]
        tokens = rearrange(feature_align, "b c h w -> (h w) b c")
        tokens = tokens + torch.randn(tokens.shape).cuda() * 0.01
        rec = rearrange(self.output_proj(self.input_proj(tokens)), "(h w) b c -> b c h w", h=self.feature_size[0])
        pred = torch.sqrt(torch.sum((rec - feature_align) ** 2, dim=1, keepdim=True))
        return {"feature_rec": rec, "feature_align": feature_align, "pred": pred}
'''


def fake_checkout(root):
    (root / "models" / "reconstructions").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "initializer.py").write_text(textwrap.dedent('''
        def initialize_from_cfg(model, cfg):
            assert cfg == {"method": "xavier_uniform"}
    '''))
    (root / "models" / "reconstructions" / "uniad.py").write_text(FAKE_OFFICIAL)
    return root


def test_perf_writes_the_report_and_skips_an_absent_official_checkout(tmp_path, capsys):
    result = perf.main([*TINY, "--out", str(tmp_path / "out"), "--official", str(tmp_path / "no-such-checkout")])
    saved = json.loads((tmp_path / "out" / "perf.json").read_text())
    assert KEYS <= saved.keys() and saved == json.loads(json.dumps(result))
    assert saved["device"] == "cpu" and saved["official_train_images_per_s"] is None
    assert saved["official_status"].startswith("skipped: no models/reconstructions/uniad.py")
    for key in ("train_images_per_s_cached", "train_images_per_s_uncached", "infer_images_per_s",
                "latency_ms_batch1", "peak_memory_mb", "gflops"):
        assert saved[key] > 0, key
    assert saved["learnable_params"] > 0
    markdown = (tmp_path / "out" / "perf.md").read_text()
    assert "| train images/s, feature cache |" in markdown and "skipped" in markdown
    assert markdown in capsys.readouterr().out


def test_perf_times_an_official_checkout_from_its_path(tmp_path):
    pytest.importorskip("einops")
    import models.uniad  # noqa: F401  (ours, loaded before: it must survive the official import)

    ours = sys.modules["models"]
    cuda = torch.Tensor.cuda
    result = perf.main([*TINY, "--out", str(tmp_path / "out"), "--official", str(fake_checkout(tmp_path / "UniAD"))])
    assert result["official_status"].startswith("measured"), result["official_status"]
    assert result["official_train_images_per_s"] > 0 and result["speedup_vs_official_cached"] > 0
    assert sys.modules["models"] is ours and "models.initializer" not in sys.modules
    assert torch.Tensor.cuda is cuda
    assert result["config"]["precision"] == "fp32" and result["config"]["matmul_precision"] == "fp32"


def test_perf_times_fits_own_train_step(monkeypatch, tmp_path):
    calls = []
    real = perf.make_train_step

    def spy(detector, optimizer, params, trainer_cfg, device):
        calls.append(str(trainer_cfg.precision))
        return real(detector, optimizer, params, trainer_cfg, device)

    monkeypatch.setattr(perf, "make_train_step", spy)
    result = perf.main([*TINY, "trainer.precision=bf16", "--out", str(tmp_path)])
    assert calls == ["bf16", "bf16"]  # cached and uncached phases, both through bench.fit's step
    assert result["config"]["matmul_precision"] == "bf16"


def test_a_model_without_frozen_features_is_measured_without_cache(tmp_path):
    result = perf.main([*TINY, "backbone.frozen=false", "--out", str(tmp_path)])
    assert result["train_images_per_s_cached"] is None and result["train_images_per_s_uncached"] > 0
    assert result["notes"]


def test_other_cpu_use_does_not_count_the_benchmarks_own_work(monkeypatch):
    """Host busy time minus this process's own CPU time, over wall time x CPUs (samples given, so other work on
    the machine running the test cannot move the figure)."""
    samples = iter([(100.0, 10.0, 50.0), (103.0, 11.5, 51.0)])  # (host busy s, own CPU s, monotonic s)
    monkeypatch.setattr(measure.OtherCpuUse, "_sample", staticmethod(lambda: next(samples)))
    monkeypatch.setattr(measure.os, "cpu_count", lambda: 2)
    # 3 busy CPU-seconds on the host in 1 s, 1.5 of them ours: others used 1.5 of 2 CPU-seconds
    assert measure.OtherCpuUse().share() == 0.75


def test_other_cpu_use_reads_this_host():
    import os
    import time

    from bench.tools.measure import OtherCpuUse

    probe = OtherCpuUse()
    time.sleep(0.05)
    share = probe.share()
    if share is None:  # no /proc/stat (not Linux): nothing to measure
        assert not os.path.exists("/proc/stat")
        return
    assert 0.0 <= share <= 1.0


def test_peak_memory_gives_the_phase_peak_and_the_extra_over_what_was_resident():
    """An allocation of 64 MiB inside a phase: its extra is about 64 MiB, its absolute peak above the resident."""
    import os

    from bench.tools.measure import PeakMemory

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("no per-phase reset of the resident high-water mark here (not Linux)")
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    resident = memory.resident_at_reset
    # fresh pages from the kernel (an allocator may reuse memory an earlier test freed but kept resident)
    import mmap

    block = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(block), 4096):  # touch every page
        block[offset] = 1
    block.close()
    phase = memory.phase()
    assert 60 <= phase["extra_mb"] <= 80 and phase["peak_mb"] >= resident + 60
    memory.reset()  # a new phase starts from what is resident now: the freed block is not its peak
    assert memory.phase()["extra_mb"] < 30


def test_time_interleaved_reports_synchronised_and_enqueue_time_per_phase():
    import time

    from bench.tools.measure import PeakMemory, time_interleaved

    calls = {"slow": 0, "fast": 0}

    def slow(i):
        calls["slow"] += 1
        time.sleep(0.02)

    def fast(i):
        calls["fast"] += 1

    cpu = torch.device("cpu")
    out = time_interleaved({"slow": slow, "fast": fast}, steps=4, warmup=1, rounds=2, device=cpu,
                           memory=PeakMemory(cpu), probes=2)
    assert calls == {"slow": 1 + 2 + 4, "fast": 1 + 2 + 4}  # warm-up, enqueue probes, timed steps
    assert out["slow"]["step_ms"] >= 19 and out["slow"]["enqueue_ms"] >= 19  # host-bound: enqueue ~ synchronised
    assert out["fast"]["step_ms"] < 5 and {"peak_mb", "extra_mb", "seconds"} <= out["fast"].keys()
