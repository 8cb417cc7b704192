"""What ``gan-mn fit`` prints: third parties' warnings and notices about what the CLI does
on purpose are silenced here, in one place."""

from __future__ import annotations

import logging
import warnings


class _NoTips(logging.Filter):
    """Lightning's advertisements ("Tip: ... try installing litlogger")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_NO_TIPS = _NoTips()


def quiet_third_parties() -> None:
    """What a plain ``gan-mn fit`` should not print: Lightning's tips, its warnings about
    what this CLI does on purpose, and torch's "No CUDA runtime is found" (from its C++
    extension loader, which Inductor imports)."""
    # Our checkpoints are meant to hold the state after the step; Lightning warns
    # about that for every manual-optimisation module.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    # main(argv) passes args on purpose (tests, other programs): not a mistake
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # Our sampler resumes mid-epoch from Lightning's own batch counter (see
    # GANDataModule.train_dataloader), which Lightning cannot see from the loader.
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
    # One run per directory is ours to enforce (RunLock, run_files); its .lock file
    # alone would trigger this on every fresh run.
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    # Lightning 2.6 on torch >= 2.14, inside Lightning; nothing a user can act on
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
    # "Seed set to N" on stderr before a one-line error; the seed is in config.yaml
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        if _NO_TIPS not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_NO_TIPS)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
