"""Reading model files strictly: the one place a state dict is loaded into a model.

espnet loads model files with ``strict=False``, so a file of another attention type, a
trainer checkpoint (``checkpoint.pth``: model, optimizer and reporter states) or a model
with a layer more or less decodes with random weights and exit status 0. Here every
key must match, a trainer checkpoint is recognised and its model part taken (said in the
log), and a file that is not a PyTorch checkpoint, or is truncated, is an error naming
its path.
"""

import logging
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import torch

PathLike = Union[str, Path]


class ModelFileError(ValueError):
    """A model file that cannot be loaded into the model: the message names the file."""


def _first(keys, count=3) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:count])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > count else "")


def read_checkpoint(path: PathLike, map_location="cpu"):
    """``torch.load`` of ``path`` with errors that name it (missing, not a checkpoint,
    truncated). The file is the user's own training output, as for espnet's loader."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # pickle, zip and storage errors of a damaged file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelFileError(
            f"{path}: not a readable PyTorch checkpoint (corrupt, truncated or another "
            f"format; {type(error).__name__}: {first_line[:200]})"
        ) from error


def is_trainer_checkpoint(state) -> bool:
    """espnet's ``checkpoint.pth``: the model's state under "model" beside the optimizers'."""
    return isinstance(state, Mapping) and "model" in state and "optimizers" in state


def model_state(path: PathLike, map_location="cpu") -> Dict[str, torch.Tensor]:
    """The model state dict stored in ``path``: a model file (``*.pth`` written by the
    trainer's averaging, ``<n>epoch.pth``, a packed ``model.pth``) or the model part of a
    trainer checkpoint."""
    state = read_checkpoint(path, map_location)
    if is_trainer_checkpoint(state):
        logging.warning(f"{path} is a trainer checkpoint (model, optimizer and reporter "
                        "states): loading its model part")
        state = state["model"]
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ModelFileError(f"{path}: not a model state dict (a mapping of parameter "
                             f"names to tensors; found {type(state).__name__})")
    return dict(state)


def load_model_state(model: torch.nn.Module, path: PathLike, config: Optional[PathLike] = None,
                     map_location="cpu"):
    """Load ``path`` into ``model`` with every key and shape matching, or raise
    ModelFileError naming the file, the config the model was built from and the first
    missing, unexpected and mis-shaped keys."""
    state = model_state(path, map_location)
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    misshaped = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    if missing or unexpected or misshaped:
        built = f" built from {config}" if config else ""
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys of the model missing from the file ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        if misshaped:
            parts.append(f"{len(misshaped)} keys of another shape ({_first(misshaped)})")
        raise ModelFileError(
            f"{path} does not fit the model{built}: " + "; ".join(parts) + ". Use the "
            "config.yaml of the experiment that wrote this file (another attention type, "
            "layer count or size gives these differences)"
        )
    model.load_state_dict(state, strict=True)
