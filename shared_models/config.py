"""The one run configuration that flows CLI -> Flower run-config -> server -> clients.

Every key name lives here: a field ``foo_bar`` is the Flower key ``foo-bar`` in
``[tool.flwr.app.config]``, in ``--run-config`` overrides and in the ConfigRecord
that each train message carries. A test checks that pyproject.toml declares exactly
these defaults, so the two can never drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping

Scalar = int | float | bool | str


@dataclass(frozen=True)
class RunConfig:
    """All knobs of one federated DP-GAN run (scalars only: Flower records need them)."""

    # federation
    num_server_rounds: int = 3
    hospitals: int = 3
    seed: int = 0
    # data, as the simulation sees it (a real hospital names its own folder in node-config)
    data: str = "demo"
    partition: str = "iid"
    holdout_fraction: float = 0.2
    image_size: int = 32
    num_classes: int = 6  # 0 = unconditional GAN
    # models
    latent_dim: int = 64
    g_width: int = 32  # 3x cheaper than 64 on CPU; G is the cost of a DP round
    d_width: int = 16  # the DP noise norm grows with sqrt(#D parameters)
    # DP-SGD on the discriminator
    epsilon: float = 10.0
    delta: float = 0.0  # 0 = automatic: below 1/n_local at each site
    noise_multiplier: float = 0.0  # 0 = derive from epsilon and the planned rounds
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    batch_size: int = 64  # expected (Poisson) batch size; sample rate q = batch_size / n_local
    d_steps_per_round: int = 100  # private D steps per site per round
    d_steps_per_g_step: int = 5  # G moves only after D has averaged several noisy steps
    lr_g: float = 5e-5  # slow G: it must not run away from the public warm start on a noisy D
    lr_d: float = 2e-4
    ema_decay: float = 0.0  # 0 = no EMA of G
    clip_fake_term: bool = True  # clip D's fake-sample gradients per sample too (separately; no privacy cost)
    d_trainable: str = "head"  # "head": sites train only D's head + class projection; its features stay public
    # public warm start (server side, no privacy cost): "none", "phantoms" or a folder path
    warm_start: str = "phantoms"
    warm_start_steps: int = 1000  # ~100 s at G32/D16 on one core; 600 was too few
    # runtime and where things are written
    device: str = "auto"
    out_dir: str = "runs/latest"  # the server's run directory (checkpoints, grids, round log)
    ledger_dir: str = ""  # sites' privacy ledgers; "" = ~/.fedsynth/ledger (node-config may override)

    @classmethod
    def keys(cls) -> list[str]:
        """The Flower key names, in declaration order."""
        return [to_key(f.name) for f in fields(cls)]

    def to_flower(self) -> dict[str, Scalar]:
        """Flat kebab-case mapping, ready for a ConfigRecord or ``--run-config``."""
        return {to_key(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_flower(cls, values: Mapping[str, Any], *, strict: bool = True) -> "RunConfig":
        """Build from a run-config or ConfigRecord; unknown keys are an error when strict."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                if strict:
                    raise ValueError(f"unknown run-config key {key!r}; known: {', '.join(cls.keys())}")
                continue
            kwargs[name] = _coerce(known[name], value)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed (validated like any other)."""
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        if self.image_size not in (32, 64):
            raise ValueError(f"image-size must be 32 or 64, got {self.image_size}")
        if self.hospitals < 1 or self.num_server_rounds < 1:
            raise ValueError("hospitals and num-server-rounds must be >= 1")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"delta must be in [0, 1), got {self.delta}")
        if self.batch_size < 1 or self.d_steps_per_round < 1 or self.d_steps_per_g_step < 1:
            raise ValueError("batch-size, d-steps-per-round and d-steps-per-g-step must be >= 1")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout-fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.d_trainable not in ("all", "head"):
            raise ValueError(f"d-trainable must be 'all' or 'head', got {self.d_trainable!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")


def to_key(name: str) -> str:
    """Dataclass field name -> Flower key name."""
    return name.replace("_", "-")


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """TOML and the CLI give ints where floats are meant (epsilon = 10): normalise."""
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "float":
        return float(value)
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{to_key(field.name)} must be an integer, got {value}")
        return int(value)
    if kind == "bool":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes")
        return bool(value)
    return str(value)


def resolve_device(name: str) -> str:
    """``auto`` means CUDA when present, else CPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
