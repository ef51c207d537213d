"""How numba compiles the NN-SSIM kernel: 512-bit vectors where the CPU has them.

Why: the search's stage-1 loop is bound by instruction throughput, and LLVM, left to
itself, uses 256-bit vectors even on AVX-512 CPUs (the "prefer-256-bit" tuning, chosen
for older parts that slow their clock on wide vectors). On this project's 2-core Xeon
(AVX-512), dropping that preference made the search use about 1.2x less CPU (300 x 10k,
3 alternating pairs of processes: 5.15/4.42, 5.11/4.16, 5.08/4.22 CPU-s) with the same
answers; the float32 error margin does not depend on the vector width.

numba reads its target features once per process, from ``NUMBA_CPU_FEATURES``, when it
is first imported, so this must run before anything imports numba: the entry points
(the CLI, the site audit, the benchmark, the tests) call it first. A value the user has
set is kept; on CPUs without AVX-512 nothing changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

FEATURES_ENV = "NUMBA_CPU_FEATURES"


def prefer_wide_vectors(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set NUMBA_CPU_FEATURES to the host's features minus "prefer-256-bit" on AVX-512
    CPUs. Returns whether it did (False: already set, numba already imported, or no
    AVX-512)."""
    env = os.environ if environ is None else environ
    if FEATURES_ENV in env or "numba" in sys.modules:
        return False
    import llvmlite.binding as llvm  # numba's own LLVM binding; importing it does not import numba

    llvm.initialize_native_target()
    features = llvm.get_host_cpu_features().flatten()
    if "+avx512f" not in features.split(","):
        return False
    env[FEATURES_ENV] = features + ",-prefer-256-bit"
    return True
