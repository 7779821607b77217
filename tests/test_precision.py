"""trainer.precision / eval.precision (README, Performance): each precision trains, fp32 is bit-stable on CPU,
the precision is recorded, and the fp32 flags really turn TF32 off."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench import precision
from bench.build import build_detector, learnable_parameters
from bench.errors import BenchError
from bench.fit import fit, make_train_step
from bench.job import run
from tests.conftest import compose_cfg

SMOKE = ["profile=smoke", "logger=none", "cache.disk=false"]


def _train(mode: str, tmp_path, steps: int = 3) -> tuple[list[float], dict]:
    """A few smoke-size train steps of fit's own step at ``mode``; (losses, final state)."""
    cfg = compose_cfg([*SMOKE, f"trainer.precision={mode}"])
    torch.manual_seed(0)
    detector = build_detector(cfg)
    params = learnable_parameters(detector)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    step = make_train_step(detector, optimizer, params, cfg.trainer, torch.device("cpu"))
    channels = detector.reconstruction.channel_reduction.in_features
    h, w = detector.reconstruction.feature_size
    x = torch.randn(4, channels, h, w, generator=torch.Generator().manual_seed(1))
    detector.train()
    losses = [float(step("features", x)) for _ in range(steps)]
    return losses, {k: v.clone() for k, v in detector.reconstruction.state_dict().items()}


@pytest.mark.parametrize("mode", precision.PRECISIONS)
def test_each_precision_trains_with_fp32_parameters_and_loss(mode, tmp_path):
    losses, state = _train(mode, tmp_path, steps=6)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert all(v.dtype == torch.float32 for v in state.values())


class _OpDtypes(TorchDispatchMode):
    """Records (op name, dtypes of its tensor inputs) of every op that reaches the kernels (after autocast)."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor))
        self.ops.append((func.overloadpacket.__name__, dtypes))
        return func(*args, **(kwargs or {}))

    def dtypes(self, name: str) -> set:
        return {d for op, ds in self.ops if op == name for d in ds}

    def input_dtypes(self, name: str) -> set:
        """Dtypes of the first tensor argument (a LayerNorm's input, not its fp32 weight)."""
        return {ds[0] for op, ds in self.ops if op == name and ds}


def _bf16_forward_backward(overrides: list[str]) -> _OpDtypes:
    """One bf16 training forward and backward of the smoke UniAD (CPU dropout path), its ops recorded."""
    cfg = compose_cfg([*SMOKE, "trainer.precision=bf16", *overrides])
    detector = build_detector(cfg).train()
    channels = detector.reconstruction.channel_reduction.in_features
    h, w = detector.reconstruction.feature_size
    x = torch.randn(2, channels, h, w)
    with _OpDtypes() as record:
        with precision.autocast("bf16", torch.device("cpu")):
            rec = detector.reconstruct(x)
        detector.loss(x, rec.float()).backward()
    return record


def test_bf16_keeps_the_stream_and_attention_scores_fp32_and_runs_the_rest_in_bf16():
    record = _bf16_forward_backward(["arch.fp32_scores=true"])  # the demo profile's setting
    assert record.dtypes("baddbmm") == {torch.float32}  # q k^T with the neighbor mask, in fp32
    assert record.dtypes("_softmax") == {torch.float32}
    assert record.input_dtypes("native_layer_norm") == {torch.float32}  # the residual stream
    assert record.dtypes("bmm") >= {torch.bfloat16}  # the weighted sum (and its gradients)
    assert record.dtypes("addmm") == {torch.float32, torch.bfloat16}  # channel reduction, q/k fp32; FFN bf16
    assert torch.bfloat16 in record.dtypes("mm")


def test_plain_bf16_runs_matmuls_attention_and_stream_in_bf16():
    record = _bf16_forward_backward([])  # arch.fp32_scores=false, the default outside the demo profile
    assert record.dtypes("baddbmm") == {torch.bfloat16}
    assert record.dtypes("_softmax") == {torch.bfloat16}
    assert record.input_dtypes("native_layer_norm") == {torch.bfloat16}
    assert record.dtypes("addmm") == {torch.bfloat16}
    assert record.dtypes("bmm") == {torch.bfloat16}


def test_fp32_training_is_bit_stable_across_two_runs(tmp_path):
    losses_a, state_a = _train("fp32", tmp_path)
    losses_b, state_b = _train("fp32", tmp_path)
    assert losses_a == losses_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_fp32_turns_tf32_off_and_tf32_turns_it_on_for_cuda():
    try:
        assert precision.configure("tf32", torch.device("cuda")) == "tf32"
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert precision.configure("fp32", torch.device("cuda")) == "fp32"
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
        assert precision.configure("tf32", torch.device("cpu")) == "fp32"  # no TF32 on CPU
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        precision.configure("fp32", torch.device("cpu"))


def test_unknown_precision_is_refused_in_one_line(tmp_path):
    cfg = compose_cfg([*SMOKE, "trainer.precision=fp16"])
    with pytest.raises(BenchError, match="precision='fp16' is unknown; choose one of fp32, tf32, bf16"):
        fit(build_detector(cfg), None, cfg.trainer, run_dir=tmp_path, device=torch.device("cpu"), seed=0,
            features=torch.zeros(2, 1, 1, 1))


def test_config_defaults_paper_fp32_and_eval_follows_training():
    paper = compose_cfg(["profile=paper"])
    assert paper.trainer.precision == "fp32" and paper.eval.precision == "fp32"
    cfg = compose_cfg(["trainer.precision=bf16"])
    assert cfg.eval.precision == "bf16"
    assert compose_cfg(["trainer.precision=bf16", "eval.precision=fp32"]).eval.precision == "fp32"


@pytest.mark.slow
def test_precision_is_recorded_in_the_run_record(tmp_paths):
    record = run(compose_cfg([*SMOKE, "trainer.precision=bf16", "eval.precision=fp32"]), tmp_paths / "run")
    assert record["status"] == "completed"
    assert record["config"]["trainer"]["precision"] == "bf16" and record["config"]["eval"]["precision"] == "fp32"
    assert record["env"]["precision"] == "bf16" and record["env"]["eval_precision"] == "fp32"
    assert 0 <= record["metrics"]["mean"]["image_auroc"] <= 1


@pytest.mark.slow
def test_compile_trains_on_cpu():
    """trainer.compile=true through inductor on CPU, under bf16 autocast (compiling takes a minute or more)."""
    cfg = compose_cfg([*SMOKE, "trainer.compile=true", "trainer.precision=bf16"])
    torch.manual_seed(0)
    detector = build_detector(cfg)
    params = learnable_parameters(detector)
    step = make_train_step(detector, torch.optim.AdamW(params, lr=1e-3), params, cfg.trainer, torch.device("cpu"))
    rec = detector.reconstruction
    x = torch.randn(4, rec.channel_reduction.in_features, *rec.feature_size)
    detector.train()
    losses = [float(step("features", x)) for _ in range(5)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
