"""G+D as one prefixed state dict, and checkpoints on disk.

Flower's strategies expect exactly one ArrayRecord per reply, so G and D travel
together as ``g.*`` and ``d.*`` keys. Checkpoints are safetensors (no pickle, so a
checkpoint from another site cannot run code when loaded), written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

G_PREFIX, D_PREFIX = "g.", "d."


def unwrap(module: nn.Module) -> nn.Module:
    """Opacus wraps D in a GradSampleModule; the shared weights are the inner module's."""
    return getattr(module, "_module", module)


def pack(g: nn.Module, d: nn.Module) -> dict[str, torch.Tensor]:
    """One flat state dict holding both networks (detached CPU copies)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, net in ((G_PREFIX, g), (D_PREFIX, d)):
        for key, value in unwrap(net).state_dict().items():
            out[prefix + key] = value.detach().cpu().clone()
    return out


def unpack(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a packed state dict back into (G state, D state)."""
    g = {k[len(G_PREFIX):]: v for k, v in state.items() if k.startswith(G_PREFIX)}
    d = {k[len(D_PREFIX):]: v for k, v in state.items() if k.startswith(D_PREFIX)}
    extra = set(state) - {G_PREFIX + k for k in g} - {D_PREFIX + k for k in d}
    if extra or not g or not d:
        raise ValueError(f"not a packed G+D state dict (unexpected keys: {sorted(extra)[:5]})")
    return g, d


def load_packed(g: nn.Module, d: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a packed state into G and D (through any Opacus wrapper), casting dtypes."""
    g_sd, d_sd = unpack(state)
    for net, sd in ((g, g_sd), (d, d_sd)):
        target = unwrap(net)
        own = target.state_dict()
        target.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in sd.items()})


def save_checkpoint(path: Path, state: dict[str, torch.Tensor], meta: dict[str, object]) -> None:
    """Atomic safetensors write; ``meta`` (JSON-able) rides in the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        tensors = {k: v.contiguous() for k, v in state.items()}
        save_file(tensors, tmp, metadata={"fedsynth": json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Read a checkpoint written by :func:`save_checkpoint`: (packed state, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("fedsynth", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise ValueError(f"{path}: not a readable fedsynth checkpoint ({exc})") from exc
    return state, meta
