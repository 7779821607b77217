"""PaDiM and PatchCore: known answers on hand-made features, the coreset against brute
force, complexity counts, and both methods end to end at profile=smoke (unified and separate)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench.job import run
from models.coreset import covering_radius, greedy_coreset
from models.padim import PaDiM
from models.patchcore import PatchCore
from models.smoothing import gaussian_blur
from tests.conftest import ROOT, compose_cfg

STAGES = [4, 6, 8]  # widths of three toy stages 1-3 in one concatenated (B, 18, h, w) map


def _patchcore(**kw):
    args = dict(stage_channels=STAGES, available_stages=[1, 2, 3], feature_size=(5, 5), layers=(2, 3),
                coreset_ratio=1.0, query_chunk=7, bank_chunk=11)
    return PatchCore(**{**args, **kw})


# ---- PatchCore ----------------------------------------------------------------------------------

def test_a_bank_that_holds_the_test_patches_scores_zero():
    torch.manual_seed(0)
    train = torch.randn(3, 18, 5, 5)
    pc = _patchcore()
    pc.fit([train[:2], train[2:]])
    assert pc.bank.shape == (75, 14)
    rec = pc.score(train[1:2])
    amap = pc.anomaly_map(rec, (20, 20))
    assert torch.equal(rec[0], torch.zeros(1, 1, 5, 5))
    assert float(amap.abs().max()) == 0.0 and float(pc.image_scores(rec, amap)[0]) == 0.0
    assert float(pc.score(train[1:2] + 0.5)[0].min()) > 0  # moved patches are not in the bank


def test_patch_scores_are_brute_force_nearest_distances_and_eq7_reweights_the_max():
    torch.manual_seed(1)
    pc = _patchcore(num_neighbors=4)
    pc.fit([torch.randn(2, 18, 5, 5)])
    test = torch.randn(2, 18, 5, 5) * 2
    scores, idx, patches = pc.score(test)
    bank = pc.bank.double().numpy()
    q = patches.double().numpy()  # (2, 25, 14)
    d = np.linalg.norm(q[:, :, None, :] - bank[None, None], axis=-1)  # (2, 25, M)
    np.testing.assert_allclose(scores.flatten(1).numpy(), d.min(-1), rtol=1e-5)
    assert np.array_equal(idx.numpy(), d.argmin(-1))
    # eq. 7 by hand: s* (1 - exp(d(m_test, m*)) / sum_{m in N_b(m*)} exp(d(m_test, m)))
    got = pc.image_scores((scores, idx, patches), None).numpy()
    for b in range(2):
        p = d[b].min(-1).argmax()
        s_star, m_star = d[b, p].min(), d[b, p].argmin()
        support = np.argsort(np.linalg.norm(bank - bank[m_star], axis=1))[:4]
        e = np.exp(np.linalg.norm(q[b, p] - bank[support], axis=1))
        assert support[0] == m_star
        assert got[b] == pytest.approx(s_star * (1 - e[0] / e.sum()), rel=1e-5)


def test_bank_is_a_coreset_of_the_requested_ratio_and_survives_a_checkpoint():
    torch.manual_seed(2)
    pc = _patchcore(coreset_ratio=0.2)
    feats = torch.randn(4, 18, 5, 5)
    stats = pc.fit([feats])
    assert stats == {"train_patches": 100, "bank_size": 20}
    all_patches = pc.patch_features(feats).reshape(-1, 14)
    assert (pc.bank[:, None] - all_patches[None]).norm(dim=2).min(1).values.max() < 1e-6  # training patches
    fresh = _patchcore(coreset_ratio=0.2)
    fresh.load_state_dict(pc.state_dict())
    assert torch.equal(fresh.bank, pc.bank)
    assert fresh.stored_numbers()["stored_numbers"] == 20 * 14


def test_unfitted_methods_refuse_to_score():
    with pytest.raises(RuntimeError, match="fit it first"):
        _patchcore().score(torch.randn(1, 18, 5, 5))
    with pytest.raises(RuntimeError, match="fit it first"):
        PaDiM(STAGES, [1, 2, 3], (5, 5), layers=(1, 2), d=5).score(torch.randn(1, 18, 5, 5))


# ---- coreset ------------------------------------------------------------------------------------

def _brute_force_greedy(x: np.ndarray, k: int, start: int) -> list[int]:
    chosen = [start]
    while len(chosen) < k:
        dist = [min(np.linalg.norm(x[i] - x[c]) for c in chosen) for i in range(len(x))]
        chosen.append(int(np.argmax(dist)))
    return chosen


def test_greedy_coreset_matches_brute_force_and_is_within_twice_the_optimal_radius():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 3))
    xt = torch.from_numpy(x).float()
    for k, start in [(3, 0), (4, 5), (5, 10)]:
        got = greedy_coreset(xt, k, projection_dim=None, start=start).tolist()
        assert got == _brute_force_greedy(x, k, start)
        optimal = min(covering_radius(xt, torch.tensor(c)) for c in itertools.combinations(range(11), k))
        radius = covering_radius(xt, torch.tensor(got))
        assert optimal <= radius <= 2 * optimal + 1e-6


def test_greedy_coreset_on_a_random_projection_picks_distinct_rows():
    x = torch.randn(200, 300)
    index = greedy_coreset(x, 20, projection_dim=16, seed=3)
    assert len(set(index.tolist())) == 20
    with pytest.raises(ValueError, match="coreset size"):
        greedy_coreset(x, 0)


# ---- PaDiM --------------------------------------------------------------------------------------

def test_padim_mahalanobis_matches_a_gaussian_fitted_by_hand():
    torch.manual_seed(3)
    feats = torch.randn(12, 18, 2, 3) * torch.linspace(0.5, 3, 18)[None, :, None, None] + 1.5
    padim = PaDiM(STAGES, [1, 2, 3], (2, 3), layers=(1, 3), d=5, seed=4)
    assert padim.d == 5 and set(padim.channels.tolist()) <= set(range(4)) | set(range(10, 18))
    padim.fit([feats[:5], feats[5:9], feats[9:]])  # three batches, one pass
    test = torch.randn(2, 18, 2, 3) * 2
    got = padim.score(test).numpy()
    ch = padim.channels.numpy()
    for p in range(6):
        i, j = divmod(p, 3)
        x = feats[:, ch, i, j].double().numpy()
        mu, cov = x.mean(0), np.cov(x, rowvar=False) + 0.01 * np.eye(5)
        for b in range(2):
            delta = test[b, ch, i, j].double().numpy() - mu
            assert got[b, 0, i, j] == pytest.approx(np.sqrt(delta @ np.linalg.solve(cov, delta)), rel=1e-4)
    assert padim.stored_numbers()["stored_numbers"] == 6 * (5 + 25)


def test_padim_distance_of_a_known_gaussian_is_the_standardised_offset():
    # samples +-1 on each axis around 2: mean 2, covariance (n/(n-1)) I + 0.01 I
    base = torch.tensor([[1.0, 1.0], [1.0, 3.0], [3.0, 1.0], [3.0, 3.0]])
    feats = base[:, :, None, None].expand(4, 2, 1, 1)
    padim = PaDiM([2], [1], (1, 1), layers=(1,), d=2)
    padim.fit([feats])
    var = 4 / 3 + 0.01
    test = torch.tensor([[2.0, 2.0], [2.0 + 3.0, 2.0], [0.0, 6.0]])[:, :, None, None]
    expected = [0.0, 3 / var**0.5, (4 + 16) ** 0.5 / var**0.5]
    assert padim.score(test).flatten().tolist() == pytest.approx(expected, rel=1e-5)


def test_gaussian_blur_keeps_mass_and_spreads_a_peak():
    amap = torch.zeros(1, 1, 64, 64)
    amap[0, 0, 32, 32] = 1.0
    out = gaussian_blur(amap, 4.0)
    assert float(out.sum()) == pytest.approx(1.0, rel=1e-5)
    assert float(out[0, 0, 32, 32]) == pytest.approx(1 / (2 * np.pi * 16), rel=0.02)
    assert torch.equal(gaussian_blur(amap, 0), amap)


# ---- complexity and the job ---------------------------------------------------------------------

def test_complexity_counts_stored_statistics_not_parameters(tmp_path):
    cfg = compose_cfg(["task=complexity", "model=padim", "backbone=resnet18", "backbone.weights=none"])
    c = run(cfg, tmp_path / "padim")["complexity"]
    assert c["learnable_params"] == 0 and c["stored_numbers"] == 196 * (100 + 100 * 100)
    # Mahalanobis (196 x 100 x 100 MACs) + blur on top of the backbone
    assert c["scoring_gflops"] >= 2 * 196 * 100 * 100 / 1e9 and c["gflops"] > c["backbone_gflops"]
    cfg = compose_cfg(["task=complexity", "model=patchcore", "backbone=resnet18", "backbone.weights=none"])
    c = run(cfg, tmp_path / "patchcore")["complexity"]
    bank = -(-0.1 * 3629 * 196 // 1)
    assert c["bank_size"] == bank and c["bank_dim"] == 128 + 256 and c["stored_numbers"] == bank * 384
    assert c["scoring_gflops"] >= 2 * 196 * bank * 384 / 1e9


def _env(tmp_path):
    return {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["patchcore", "padim"])
def test_end_to_end_unified_and_separate(tmp_path, model):
    common = [sys.executable, "-m", "bench", f"model={model}", "profile=smoke", "backbone.weights=none",
              "data.generator.n_train=4"]
    records = {}
    for mode in ("unified", "separate"):  # separate: the first category the unified run saw
        extra = [f"data.categories=[{sorted(records['unified']['metrics']['per_class'])[0]}]"] if records else []
        run_dir = tmp_path / mode
        proc = subprocess.run([*common, *extra, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=_env(tmp_path),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        records[mode] = json.loads((run_dir / "metrics.json").read_text())
    uni, sep = records["unified"], records["separate"]
    for record in (uni, sep):
        assert record["status"] == "completed"
        assert record["timing"]["fit"] == "one pass, no optimiser" and record["timing"]["epochs_run"] == 0
        assert record["cache"]["used"] is True
        assert record["complexity"]["learnable_params"] == 0 and record["complexity"]["stored_numbers"] > 0
        for values in record["metrics"]["per_class"].values():
            assert set(values) == {"image_auroc", "pixel_auroc"} and all(0 <= v <= 1 for v in values.values())
    assert len(uni["metrics"]["per_class"]) >= 4
    assert list(sep["metrics"]["per_class"]) == sorted(uni["metrics"]["per_class"])[:1]
    if model == "patchcore":  # one bank for all categories holds more patches than one category's
        assert uni["complexity"]["bank_size"] > sep["complexity"]["bank_size"]
    # the saved statistics evaluate again with task=eval, the model rebuilt from the checkpoint's config
    saved = torch.load(tmp_path / "unified" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["config"]["model"]["name"] == model and saved["epoch"] == 0
    run_dir = tmp_path / "eval"
    proc = subprocess.run([*common, "task=eval", f"ckpt={tmp_path / 'unified' / 'last.ckpt'}",
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["metrics"]["mean"] == pytest.approx(uni["metrics"]["mean"])
