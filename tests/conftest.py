"""Shared pytest fixtures: where the build, the tools and ../shared are.

Tests run with /usr/bin/python3 (Debian's, which has torch and numpy):
    make check            # or: STYLIZE_BUILD=$PWD/build /usr/bin/python3 -m pytest tests
The C programs under test come in two builds: release ($BUILD/bin) and
AddressSanitizer+UBSan ($BUILD/asan/bin). Tests that take the `any_build`
fixture run against both.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
BUILD = Path(os.environ.get("STYLIZE_BUILD", REPO / "build"))

sys.path.insert(0, str(TOOLS))


def _cpu_words():
    """Every word of /proc/cpuinfo (flags, vendor): what the CPU offers."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(f.read().split())
    except OSError:
        return set()


CPU_WORDS = _cpu_words()
# bf16 arithmetic the engine's dnnl backend can use (AVX512-BF16 or AMX-BF16)
CPU_HAS_BF16 = "avx512_bf16" in CPU_WORDS or "amx_bf16" in CPU_WORDS

# ASan: fail on leaks too; UBSan: abort with a stack on the first report.
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:halt_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


class Build:
    """One build of the C programs (release or sanitizers)."""

    def __init__(self, name, root):
        self.name = name
        self.root = root

    def bin(self, prog):
        sub = "tests" if prog.startswith("test_") else "bin"
        path = self.root / sub / prog
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make lib tools sanitize` first")
        return path

    def run(self, prog, *args, timeout=600, check=False, **kw):
        env = dict(os.environ)
        env.update(SAN_ENV)
        env.update(kw.pop("env", {}))
        cmd = [str(self.bin(prog))] + [str(a) for a in args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
        return proc


RELEASE = Build("release", BUILD)
ASAN = Build("asan", BUILD / "asan")


@pytest.fixture(scope="session")
def release():
    return RELEASE


@pytest.fixture(scope="session", params=[RELEASE, ASAN], ids=lambda b: b.name)
def any_build(request):
    return request.param


@pytest.fixture(scope="session")
def shared():
    if not (SHARED / "README.md").exists():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory):
    return tmp_path_factory.mktemp("session")
