"""The C API contract tests (tests/test_api.c), in the release and the
ASan/UBSan builds; and how the library picks its SIMD code."""
import platform
import re
import subprocess

import pytest

from conftest import RELEASE


def test_api_contract(any_build, tmp_path):
    proc = any_build.run("test_api", tmp_path, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout


def test_simd_clones_are_picked_by_cpu_features():
    """GCC resolves a target_clones("arch=CPU") clone by CPU *model*: the
    oneDNN backend's passes once had skylake-avx512 and haswell clones, so
    every other CPU (AMD EPYC, Sapphire Rapids) ran their SSE2 build at half
    the speed of a live twin's frame. Only feature levels (x86-64-v3/v4),
    which the resolver checks by CPU features, may appear."""
    if platform.machine() != "x86_64":
        pytest.skip("clones are x86-64 only")
    lib = RELEASE.root / "lib" / "libstylize.a"
    if not lib.exists():
        pytest.fail(f"{lib} is missing: run `make lib` first")
    syms = subprocess.run(["nm", str(lib)], capture_output=True, text=True, check=True).stdout
    clones = set(re.findall(r"\.(arch_\w+)$", syms, re.M))
    assert clones == {"arch_x86_64_v3", "arch_x86_64_v4"}, clones
