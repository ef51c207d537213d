"""The kernel is compiled with 512-bit vectors on AVX-512 CPUs, and only when it is safe to."""

from __future__ import annotations

import os
import subprocess
import sys

import llvmlite.binding as llvm

from privacy_audit.nn_compile import FEATURES_ENV, prefer_wide_vectors


def _host_has_avx512() -> bool:
    llvm.initialize_native_target()
    return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


def test_a_users_setting_is_kept() -> None:
    env = {FEATURES_ENV: "+sse2"}
    assert prefer_wide_vectors(env) is False
    assert env == {FEATURES_ENV: "+sse2"}


def test_a_fresh_process_compiles_with_the_preference_dropped() -> None:
    """In a new interpreter, numba picks the setting up (only on AVX-512 hosts), and a
    compiled function still runs."""
    code = (
        "from privacy_audit.nn_compile import prefer_wide_vectors\n"
        "done = prefer_wide_vectors()\n"
        "import numba, numpy as np\n"
        "from numba.core import config\n"
        "f = numba.njit(lambda x: (x * x).sum())\n"
        "assert f(np.arange(64, dtype=np.float32)) == 85344.0\n"
        "print(done, (config.CPU_FEATURES or '').endswith(',-prefer-256-bit'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != FEATURES_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    expected = str(_host_has_avx512())
    assert out.stdout.split() == [expected, expected]


def test_the_suite_runs_the_shipped_configuration() -> None:
    """conftest set it before numba was imported, as the CLI does."""
    assert os.environ.get(FEATURES_ENV, "").endswith(",-prefer-256-bit") == _host_has_avx512()
