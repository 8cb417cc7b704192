"""One place classes every setting of a run; the resume check, compare's pooling and the
label all ask it."""

from __future__ import annotations

import pytest

from gan_mn.runs import (
    LABEL,
    LOCATED,
    NO_EFFECT,
    NOT_SETTINGS,
    affects_results,
    frozen,
    setting_class,
)

# each setting's class, stated once
CLASSES = {
    "seed_everything": "defining",
    "model.lr_g": "defining",
    "model.g_norm": "defining",
    "model.norm_kwargs.mn.num_components": "defining",
    "model.norm_kwargs.mn.em_iters": "defining",
    "data.dataset": "defining",
    "data.batch_size": "defining",
    "data.per_batch_file": "defining",
    "model.label": "label",
    "model.norm_kwargs.mn.kernels": "no effect",
    "model.norm_kwargs.mn.fused": "no effect",
    "model.cuda_graph": "no effect",
    "model.sample_every_n_steps": "no effect",
    "model.num_grid_samples": "no effect",
    "data.download": "no effect",
    "data.num_workers": "no effect",
    "data.root": "located",
    "data.seed": "not a setting",
    "model.image_size": "not a setting",
    "ckpt_path": "not a setting",
    "overwrite": "not a setting",
    "trainer.max_steps": "schedule",
    "metrics.every_n_steps": "schedule",
    "mn_diagnostics": "schedule",
}


@pytest.mark.parametrize(("key", "kind"), sorted(CLASSES.items()))
def test_every_setting_is_in_its_class(key: str, kind: str) -> None:
    assert setting_class(key) == kind
    assert frozen(key) == (kind in ("defining", "label"))
    assert affects_results(key) == (kind in ("defining", "located"))


def test_no_setting_is_classed_twice() -> None:
    named = [LABEL, *NO_EFFECT, *LOCATED, *NOT_SETTINGS]
    assert len(named) == len(set(named)), sorted(k for k in named if named.count(k) > 1)


def test_a_resume_may_change_the_kernels_and_the_report_pools_them() -> None:
    """The kernel choice was frozen to the resume check but cosmetic to the report."""
    from gan_mn.cli.rundir import resume_changes
    from gan_mn.run_log import _settings

    saved = {"model": {"norm_kwargs": {"mn": {"kernels": "inductor"}}}}
    asked = {"model": {"norm_kwargs": {"mn": {"kernels": "eager"}}}}
    assert list(resume_changes(saved, asked)) == ["model.norm_kwargs.mn.kernels"]
    assert _settings(saved) == _settings(asked)


def test_the_study_groups_are_named_as_their_settings_label_them() -> None:
    """``gan-mn study`` names each group; the name is the label its settings derive."""
    from inspect import signature

    import yaml

    from gan_mn.cli.study import CONFIGS, GROUPS
    from gan_mn.labels import default_label
    from gan_mn.training import GAN

    defaults = {n: p.default for n, p in signature(GAN).parameters.items()}
    for group, (config, options) in GROUPS.items():
        model = {**defaults, **(yaml.safe_load((CONFIGS / config).read_text()).get("model") or {})}
        given = dict(zip(options[::2], options[1::2], strict=True))
        for key, value in given.items():
            model[key.removeprefix("--model.")] = yaml.safe_load(value)
        assert default_label(model["g_norm"], model["d_norm"], model["norm_kwargs"],
                             model["arch"], model["num_classes"]) == group
