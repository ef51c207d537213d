"""The per-site privacy ledger: what this hospital has spent, kept on its own disk.

Why a file: Opacus's accountant lives in memory and restarts at zero in every process,
and Flower may start a fresh ClientApp process per message, so epsilon would silently
reset between rounds and runs. The ledger makes epsilon cumulative across rounds,
restarts and runs.

Rules (each one a privacy property, not a convenience):

* The history only grows. Entries are appended, never edited or removed.
* delta and the accountant are fixed when the ledger is created. A later run asking for
  another value gets :class:`LedgerError`: the ledger states ONE (epsilon, delta)
  guarantee. Pass ``delta=None`` to adopt the ledger's delta.
* The target (the site's lifetime budget) is fixed too. A run may ask for a LOWER
  target, which then applies to that run only; raising it takes an explicit
  :meth:`PrivacyLedger.raise_target`, which is itself recorded in the file.
* A file that does not parse, or whose SHA-256 does not match its content, raises
  :class:`LedgerError` naming the file; it is never reset. (This catches corruption
  and hand edits, not a determined local administrator: the hospital owns its disk.)
* Steps are recorded BEFORE they are taken (see ``client.dp_trainer``): a crash then
  over-counts, which is safe, and never under-counts.
* Writes are atomic (temp file in the same folder, fsync, ``os.replace``) and serialized
  with ``flock`` on the folder; every write re-reads the file first, so two processes
  cannot lose each other's entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from client.accounting import ACCOUNTANTS, Entry, check_entry, epsilon

FORMAT = "fedsynth-privacy-ledger"
VERSION = 1


class LedgerError(ValueError):
    """The ledger file is corrupt, was edited, or a request contradicts it."""


class BudgetExceeded(LedgerError):
    """Recording these steps would take epsilon above the target."""


class PrivacyLedger:
    """One site's cumulative privacy spending, persisted at ``path`` (JSON)."""

    def __init__(self, path: Path, *, target_epsilon: float | None = None, delta: float | None = None, accountant: str | None = None, _read_only: bool = False):
        self.path = Path(path)
        self._read_only = _read_only
        self._eps_cache: tuple[int, float] | None = None
        if self.path.exists():
            self._doc = _read(self.path)
            self._check_request(target_epsilon, delta, accountant)
        elif _read_only:
            raise FileNotFoundError(f"{self.path}: no privacy ledger")
        else:
            if target_epsilon is None or delta is None:
                raise LedgerError(f"{self.path}: a new ledger needs target_epsilon and delta")
            self._doc = _new_doc(float(target_epsilon), float(delta), accountant or "prv")
            with self._locked():
                if self.path.exists():  # another process created it meanwhile
                    self._doc = _read(self.path)
                    self._check_request(target_epsilon, delta, accountant)
                else:
                    _write(self.path, self._doc)
        self._target = min(float(target_epsilon), self._doc["target_epsilon"]) if target_epsilon is not None else self._doc["target_epsilon"]

    @classmethod
    def read_only(cls, path: Path) -> "PrivacyLedger":
        """An existing ledger, for reporting; it refuses to record."""
        return cls(path, _read_only=True)

    # -- what the ledger says ------------------------------------------------------
    @property
    def accountant(self) -> str:
        return str(self._doc["accountant"])

    @property
    def delta(self) -> float:
        return float(self._doc["delta"])

    @property
    def target_epsilon(self) -> float:
        """The budget this instance enforces (a run may have asked for less than the file's)."""
        return self._target

    @property
    def history(self) -> list[Entry]:
        """(noise_multiplier, sample_rate, steps) per recorded round, oldest first."""
        return [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in self._doc["entries"]]

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Copies of the full entries (with time and meta), for reports."""
        return json.loads(json.dumps(self._doc["entries"]))

    def spent_epsilon(self) -> float:
        """Epsilon spent so far at the ledger's delta (recomputed from the history)."""
        n = len(self._doc["entries"])
        if self._eps_cache is None or self._eps_cache[0] != n:
            self._eps_cache = (n, epsilon(self.history, self.delta, self.accountant))
        return self._eps_cache[1]

    def epsilon_after(self, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """Epsilon if these steps were added to the history."""
        return epsilon(self.history + [check_entry(noise_multiplier, sample_rate, steps)], self.delta, self.accountant)

    def would_exceed(self, noise_multiplier: float, sample_rate: float, steps: int) -> bool:
        """True when taking these steps would take epsilon above the target."""
        return self.epsilon_after(noise_multiplier, sample_rate, steps) > self._target

    # -- changing it (append only) --------------------------------------------------
    def record(self, noise_multiplier: float, sample_rate: float, steps: int, meta: Mapping[str, Any] | None = None) -> float:
        """Append one round's steps; returns epsilon after it. Refuses to go over budget."""
        sigma, q, steps = check_entry(noise_multiplier, sample_rate, steps)
        meta = _check_meta(meta or {})
        with self._locked():
            self._reload()
            eps = self.epsilon_after(sigma, q, steps)
            if eps > self._target:
                raise BudgetExceeded(f"{self.path}: recording {steps} steps (sigma={sigma:g}, q={q:g}) would take epsilon to {eps:.3f} > target {self._target:g}")
            entry = {"noise_multiplier": sigma, "sample_rate": q, "steps": steps, "epsilon_after": eps, "time": _now(), "meta": meta}
            doc = {**self._doc, "entries": self._doc["entries"] + [entry]}
            _write(self.path, doc)
            self._doc = doc
            self._eps_cache = (len(doc["entries"]), eps)
        return eps

    def raise_target(self, new_target: float, reason: str) -> None:
        """Raise the lifetime budget: a deliberate act by the site, kept in the file."""
        if not (math.isfinite(new_target) and new_target > self._doc["target_epsilon"]):
            raise LedgerError(f"{self.path}: new target {new_target} must be finite and above {self._doc['target_epsilon']:g}")
        with self._locked():
            self._reload()
            change = {"from": self._doc["target_epsilon"], "to": float(new_target), "time": _now(), "reason": str(reason)}
            doc = {**self._doc, "target_epsilon": float(new_target), "target_changes": self._doc["target_changes"] + [change]}
            _write(self.path, doc)
            self._doc, self._target = doc, float(new_target)

    # -- internals --------------------------------------------------------------------
    def _check_request(self, target_epsilon: float | None, delta: float | None, accountant: str | None) -> None:
        doc = self._doc
        if delta is not None and float(delta) != doc["delta"]:
            raise LedgerError(f"{self.path}: this site's ledger fixes delta={doc['delta']:g}; the run asked for delta={float(delta):g}. Use the ledger's delta (delta=None adopts it)")
        if accountant is not None and accountant != doc["accountant"]:
            raise LedgerError(f"{self.path}: this site's ledger uses the {doc['accountant']!r} accountant; the run asked for {accountant!r}")
        if target_epsilon is not None and float(target_epsilon) > doc["target_epsilon"]:
            raise LedgerError(f"{self.path}: the site's lifetime budget is epsilon={doc['target_epsilon']:g}; the run asked for {float(target_epsilon):g}. Raising it takes PrivacyLedger.raise_target()")

    def _reload(self) -> None:
        """Re-read the file; it must extend what this instance saw, never rewrite it."""
        doc = _read(self.path)
        mine, theirs = self._doc["entries"], doc["entries"]
        if theirs[: len(mine)] != mine or (doc["delta"], doc["accountant"]) != (self._doc["delta"], self._doc["accountant"]):
            raise LedgerError(f"{self.path}: the ledger on disk no longer extends the history this process read (entries removed or edited)")
        self._doc = doc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._read_only:
            raise LedgerError(f"{self.path}: opened read-only")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _new_doc(target_epsilon: float, delta: float, accountant: str) -> dict[str, Any]:
    if accountant not in ACCOUNTANTS:
        raise LedgerError(f"unknown accountant {accountant!r}; use one of {', '.join(ACCOUNTANTS)}")
    if not (0 < delta < 1) or not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise LedgerError(f"need 0 < delta < 1 and a finite target epsilon > 0, got delta={delta}, target={target_epsilon}")
    return {"format": FORMAT, "version": VERSION, "accountant": accountant, "delta": delta, "target_epsilon": target_epsilon, "created": _now(), "target_changes": [], "entries": []}


def _digest(doc: Mapping[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    """Parse and verify a ledger file; any doubt is an error, never a fresh start."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerError(f"{path}: privacy ledger is unreadable or corrupt ({exc}); refusing to continue (it is never reset)") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise LedgerError(f"{path}: not a {FORMAT} v{VERSION} file")
    if doc.get("sha256") != _digest(doc):
        raise LedgerError(f"{path}: privacy ledger checksum mismatch: the file was edited or corrupted; refusing to continue (it is never reset)")
    try:
        for e in doc["entries"]:
            check_entry(e["noise_multiplier"], e["sample_rate"], e["steps"])
        if not (0 < doc["delta"] < 1 and doc["target_epsilon"] > 0 and doc["accountant"] in ACCOUNTANTS):
            raise ValueError("bad delta, target or accountant")
        doc["target_changes"]
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerError(f"{path}: privacy ledger content is invalid ({exc})") from exc
    return {k: v for k, v in doc.items() if k != "sha256"}


def _write(path: Path, doc: Mapping[str, Any]) -> None:
    """Atomic replace: a reader sees the old file or the new one, never half of one."""
    text = json.dumps({**doc, "sha256": _digest(doc)}, indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, (str, int, float, bool))):
            raise LedgerError(f"ledger meta must map str to scalars, got {key!r}: {type(value).__name__}")
        out[key] = value
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
