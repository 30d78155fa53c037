"""The C API contract tests (tests/test_api.c), in the release and the
ASan/UBSan builds."""


def test_api_contract(any_build, tmp_path):
    proc = any_build.run("test_api", tmp_path, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout
