"""Every profile composes with every dataset, and only data=synthetic carries the generator's settings:
a profile that wrote ``data.generator`` into every dataset's config made reports take real datasets for
generated ones (and average runs on different roots)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_cfg

PROFILES = sorted(p.stem for p in (Path(CONF) / "profile").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (Path(CONF) / "data").glob("*.yaml"))
SYNTHETIC = OmegaConf.load(Path(CONF) / "data" / "synthetic.yaml").generator


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("data", DATASETS)
def test_only_synthetic_data_has_generator_settings(profile, data):
    cfg = compose_cfg([f"profile={profile}", f"data={data}", "data.root=/x"])
    assert cfg.data.name == data and cfg.profile_name == profile
    if data == "synthetic":
        assert set(cfg.data.generator) == set(SYNTHETIC), "a profile may scale the generator, not replace it"
    else:
        assert "generator" not in cfg.data, f"profile={profile} writes data.generator into data={data}"


def test_profiles_scale_the_synthetic_generator():
    assert compose_cfg(["profile=paper"]).data.generator == SYNTHETIC  # the paper's recipe: as declared
    smoke = compose_cfg(["profile=smoke"]).data.generator
    assert smoke.n_train < SYNTHETIC.n_train and smoke.image_size < SYNTHETIC.image_size
    assert compose_cfg(["profile=demo"]).data.generator.n_train == 20
    assert compose_cfg(["profile=smoke", "data.generator.n_train=4"]).data.generator.n_train == 4
