"""Dinomaly's decoder, grouping, anomaly map and hard-mining loss against the official code's tensors."""

from __future__ import annotations

import pytest
import torch

from models.dinomaly import DinomalyDecoder, anomaly_map, hard_mining_cosine_loss, official_key
from tests.conftest import SHARED

REFERENCE = SHARED / "reference" / "dinomaly_official_reference.pt"
CASES = {"linear": ("linear", 0), "softmax": ("softmax", 0), "softmax_nma3": ("softmax", 3)}


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"{REFERENCE} is absent (../shared not beside the checkout)")
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_official_outputs_loss_and_gradients(case):
    ref = torch.load(REFERENCE, weights_only=True)
    cfg, expected = ref["config"], ref["cases"][case]
    attention, neighbor_size = CASES[case]
    assert expected.get("mask_neighbor_size", 0) == neighbor_size
    model = DinomalyDecoder(cfg["dim"], cfg["heads"], cfg["decoder_blocks"], cfg["mlp_ratio"], attention,
                            neighbor_size, 0.2, cfg["fuse_groups"], 1 + cfg["register_tokens"]).eval()
    # every official tensor is used exactly once
    assert sorted(official_key(k) for k in model.state_dict()) == sorted(expected["state_dict"])
    model.load_state_dict({k: expected["state_dict"][official_key(k)] for k in model.state_dict()})

    en, de = model.forward_tokens(ref["en_list"])
    for ours, theirs in ((en, expected["en"]), (de, expected["de"])):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        amap = anomaly_map(en, de, (32, 32))
    torch.testing.assert_close(amap, expected["anomaly_map_32"], rtol=1e-5, atol=1e-5)

    loss = hard_mining_cosine_loss(en, de, p=0.9, factor=0.1)
    torch.testing.assert_close(loss, expected["loss_hm_p0.9_f0.1"], rtol=1e-5, atol=1e-6)
    loss.backward()
    grads = expected["grads_hm_p0.9_f0.1"]
    assert sorted(official_key(k) for k, _ in model.named_parameters()) == sorted(grads)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads[official_key(name)], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"{REFERENCE} is absent (../shared not beside the checkout)")
def test_hard_mining_changes_the_gradient_not_the_loss():
    """Without the hook (p = 0) the loss is the same and the gradients differ: the reference checks the hook."""
    ref = torch.load(REFERENCE, weights_only=True)
    cfg, expected = ref["config"], ref["cases"]["linear"]
    model = DinomalyDecoder(cfg["dim"], cfg["heads"], cfg["decoder_blocks"], cfg["mlp_ratio"], "linear", 0, 0.2,
                            cfg["fuse_groups"], 1 + cfg["register_tokens"]).eval()
    model.load_state_dict({k: expected["state_dict"][official_key(k)] for k in model.state_dict()})
    loss = hard_mining_cosine_loss(*model.forward_tokens(ref["en_list"]), p=0.0, factor=0.1)
    torch.testing.assert_close(loss, expected["loss_hm_p0.9_f0.1"], rtol=1e-5, atol=1e-6)
    loss.backward()
    grad = model.blocks[7].mlp.fc2.weight.grad
    assert not torch.allclose(grad, expected["grads_hm_p0.9_f0.1"]["decoder.7.mlp.fc2.weight"], rtol=1e-3, atol=0)
