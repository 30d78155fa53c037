"""The two-pass statistics file API (tests/test_stats_file.c: round trip,
time-base rescaling, centred window, scene cuts, refusals, a killed writer),
in the release and the ASan/UBSan builds, on small models written here:
A, B (A's shape with other weights) and C (another shape)."""
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "fuzz"))
import make_corpus  # noqa: E402  (numpy-only model writer)


def test_stats_file_api(any_build, tmp_path):
    models = []
    for name, widths, seed in (("a", (8, 16, 32), 1), ("b", (8, 16, 32), 2), ("c", (8, 8, 16), 3)):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(make_corpus.encode(make_corpus.model(widths, 1, 9, 9, seed=seed)))
        models.append(path)
    proc = any_build.run("test_stats_file", tmp_path, *models, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout and "FAIL" not in proc.stderr, proc.stderr
