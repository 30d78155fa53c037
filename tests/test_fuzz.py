"""Fuzzing regressions: every input the model-loader fuzzer
(tests/fuzz/fuzz_model.c, `make fuzz`) ever broke the library with is kept in
tests/fuzz/regressions/ and replayed here through stylize-image (release and
ASan/UBSan builds, both backends, a 4x4 frame) and through the fuzz target
itself when it is built (`make fuzz-build`; `make check` builds it for its
60-second smoke run). Each file must be refused with a message or stylize the
frame; no sanitizer report, no crash.

The statistics file reader's target (tests/fuzz/fuzz_stats.c, `make
fuzz-stats`) likewise: its findings in tests/fuzz/stats-regressions/ are
replayed, and its seed generator's valid files must be accepted and its
damaged ones refused."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import BUILD, REPO, SAN_ENV

REGRESSIONS = sorted((REPO / "tests" / "fuzz" / "regressions").glob("*"))
FUZZ_BIN = BUILD / "fuzz" / "fuzz_model"
STATS_REGRESSIONS = sorted((REPO / "tests" / "fuzz" / "stats-regressions").glob("*"))
FUZZ_STATS_BIN = BUILD / "fuzz" / "fuzz_stats"


@pytest.fixture(scope="module")
def png4(tmp_path_factory):
    from PIL import Image
    path = tmp_path_factory.mktemp("fuzz") / "in.png"
    Image.fromarray((np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)).save(path)
    return path


def test_regressions_exist():
    assert REGRESSIONS, "tests/fuzz/regressions is empty"


@pytest.mark.parametrize("backend", ["ref", "dnnl"])
@pytest.mark.parametrize("case", REGRESSIONS, ids=lambda p: p.name)
def test_regression_replays(any_build, png4, tmp_path, case, backend):
    proc = any_build.run("stylize-image", "-m", case, "--backend", backend, "--threads", "1",
                         png4, tmp_path / "out.png", timeout=60)
    if proc.returncode == 0:
        assert (tmp_path / "out.png").stat().st_size > 0
        return
    if backend == "dnnl" and "not built into" in proc.stderr:
        pytest.skip("no dnnl backend in this build")
    # Refused: one clear line naming the model, and no sanitizer report.
    assert proc.returncode == 1, proc.stderr
    assert f"model '{case}'" in proc.stderr, proc.stderr
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr


def test_fuzz_target_replays_regressions():
    if not FUZZ_BIN.exists():
        pytest.skip(f"{FUZZ_BIN} not built (make fuzz-build; needs clang)")
    env = dict(os.environ, **SAN_ENV)
    # Given files, libFuzzer runs each once and exits.
    proc = subprocess.run([str(FUZZ_BIN), *map(str, REGRESSIONS)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("Executed ") == len(REGRESSIONS), proc.stderr[-3000:]


def test_seed_corpus(tmp_path, release):
    """The seed generator's files fit -max_len, and its valid models load."""
    subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "fuzz" / "make_corpus.py"), str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) >= 40
    for f in files:
        assert f.stat().st_size <= 65536, f
        if f.name.startswith(("valid-", "compact-valid-")):
            release.run("stylize-image", "-m", f, "--info", check=True, timeout=30)
        elif f.name.startswith("compact-"):  # damaged descriptions: refused, with a message
            proc = release.run("stylize-image", "-m", f, "--info", timeout=30)
            assert proc.returncode != 0 and "model '" in proc.stderr, (f.name, proc.stderr)


def test_stats_fuzz_target_replays_regressions():
    if not FUZZ_STATS_BIN.exists():
        pytest.skip(f"{FUZZ_STATS_BIN} not built (make fuzz-build; needs clang)")
    if not STATS_REGRESSIONS:
        pytest.skip("tests/fuzz/stats-regressions holds no findings yet")
    env = dict(os.environ, **SAN_ENV)
    proc = subprocess.run([str(FUZZ_STATS_BIN), *map(str, STATS_REGRESSIONS)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("Executed ") == len(STATS_REGRESSIONS), proc.stderr[-3000:]


def test_stats_seed_corpus(tmp_path):
    """The statistics seeds fit -max_len; the fuzz target accepts valid-* and refuses bad-* with a message."""
    subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "fuzz" / "make_stats_corpus.py"), str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    files = sorted(tmp_path.glob("*.stats"))
    assert len(files) >= 30 and all(f.stat().st_size <= 65536 for f in files)
    if not FUZZ_STATS_BIN.exists():
        pytest.skip(f"{FUZZ_STATS_BIN} not built (make fuzz-build; needs clang)")
    env = dict(os.environ, STYLIZE_FUZZ_REPORT="1", **SAN_ENV)
    for f in files:
        proc = subprocess.run([str(FUZZ_STATS_BIN), str(f)], capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        verdict = [line for line in proc.stderr.splitlines() if line.startswith(("accepted", "refused: "))]
        # one verdict; libFuzzer may run an input twice (seen once, 2026-11-30): the same one twice
        assert verdict and len(set(verdict)) == 1, proc.stderr[-3000:]
        if f.name.startswith("valid-"):
            assert verdict[0] == "accepted", (f.name, verdict)
        else:
            assert f.name.startswith("bad-") and verdict[0].startswith("refused: ") and len(verdict[0]) > 20, \
                (f.name, verdict)
