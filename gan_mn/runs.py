"""What a run is: the one place that classes its settings and names it. The resume check
(:mod:`gan_mn.cli.rundir`), the report's pooling of seeds (:mod:`gan_mn.run_log`) and
the labels and run names (:mod:`gan_mn.labels`) all ask here.

Settings are the dotted keys of a run's ``config.yaml`` (``model.lr_g``,
``model.norm_kwargs.mn.num_components``). Each is in exactly one class:

- **defining**: the model, its data and the seed (``model.*``, ``data.*``,
  ``seed_everything``): seeds of one group share them, and a resume cannot change them;
- **label**: ``model.label``, the group a run belongs to: a resume cannot change it, and
  the report groups by it;
- **no effect**: options under ``model.`` or ``data.`` that change no result (schedules
  of sample grids, the kernels that compute MN, the captured step, data loading): a
  resume may change them and the report ignores them;
- **located**: where the data is (``data.root``): a resume may point elsewhere (the
  images are checked by content), and the report compares it, resolved;
- **not settings**: how a command was started, or values linked to others;
- everything else (``trainer.*``, ``metrics.*``, ``checkpoint.*``, ...) is **schedule**:
  it may change on resume, where the change is recorded.

Imports nothing heavy: ``compare`` uses it without torch.
"""

from __future__ import annotations

DEFINING = ("seed_everything", "model.", "data.")  # prefixes
LABEL = "model.label"
NO_EFFECT = ("model.sample_every_n_steps", "model.num_grid_samples", "model.cuda_graph",
             "data.download", "data.num_workers")
# norm options that choose how a layer computes, not what (model.norm_kwargs.<kind>.<option>)
NO_EFFECT_NORM_OPTIONS = ("kernels", "fused")
LOCATED = ("data.root",)
# how a command was started (ckpt_path, config, ...), or linked to another setting
# (data.seed follows seed_everything, model.image_size follows data.image_size,
# data.num_classes follows model.num_classes)
NOT_SETTINGS = ("ckpt_path", "config", "weights_only", "overwrite", "data.seed",
                "model.image_size", "data.num_classes")


def setting_class(key: str) -> str:
    """``defining``, ``label``, ``no effect``, ``located``, ``not a setting`` or
    ``schedule``."""
    if key in NOT_SETTINGS:
        return "not a setting"
    if key == LABEL:
        return "label"
    if key in LOCATED:
        return "located"
    parts = key.split(".")
    if key in NO_EFFECT or (key.startswith("model.norm_kwargs.") and len(parts) == 4
                            and parts[3] in NO_EFFECT_NORM_OPTIONS):
        return "no effect"
    if key.startswith(DEFINING):
        return "defining"
    return "schedule"


def frozen(key: str) -> bool:
    """Whether a resume must keep this setting."""
    return setting_class(key) in ("defining", "label")


def affects_results(key: str) -> bool:
    """Whether two seeds of one group must agree on this setting (compare's pooling)."""
    return setting_class(key) in ("defining", "located")


def flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """Nested config dicts -> ``{"model.lr_g": 0.0002, ...}`` (class_path dicts stay whole)."""
    if isinstance(tree, dict) and tree and "class_path" not in tree:
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}
