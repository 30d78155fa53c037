"""`make install` honours PREFIX and DESTDIR, and a program builds against the
installed library through pkg-config (static and shared) and runs."""
import os
import subprocess

from conftest import REPO, BUILD

PROGRAM = r"""
#include <stdio.h>
#include <stylize.h>
int main(int argc, char **argv) {
    char err[512];
    stylize_ctx *ctx;
    printf("%s\n", stylize_version());
    if (stylize_create(argv[1], NULL, &ctx, err, sizeof(err)) == 0) return 1;
    printf("%s\n", err);
    return 0;
}
"""


def test_install_and_link(tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/opt/sty", f"BUILD={BUILD}"],
                   cwd=REPO, check=True, capture_output=True)
    prefix = dest / "opt/sty"
    for f in ["include/stylize.h", "lib/libstylize.a", "lib/libstylize.so.0", "lib/libstylize.so",
              "lib/pkgconfig/stylize.pc", "bin/stylize-image"]:
        assert (prefix / f).exists(), f
    # every shipped model, and the licence text the BSD-3 ones must travel with
    shipped = {p.name for p in (REPO / "models").iterdir() if p.suffix in (".safetensors", ".txt")}
    assert {p.name for p in (prefix / "share/stylize/models").iterdir()} == shipped
    pc = (prefix / "lib/pkgconfig/stylize.pc").read_text()
    assert "prefix=/opt/sty" in pc
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"), PKG_CONFIG_SYSROOT_DIR=str(dest))
    for static in (False, True):
        flags = subprocess.run(["pkg-config", "--cflags", "--libs"] + (["--static"] if static else []) + ["stylize"],
                               env=env, check=True, capture_output=True, text=True).stdout.split()
        exe = tmp_path / ("prog_static" if static else "prog_shared")
        libs = [f for f in flags if not f.startswith("-I")]
        if static:  # link the archive itself
            libs = [str(prefix / "lib/libstylize.a")] + [f for f in libs if f not in ("-lstylize",) and not f.startswith("-L")]
        subprocess.run(["cc", str(src), "-o", str(exe)] + [f for f in flags if f.startswith("-I")] + libs,
                       check=True, capture_output=True, text=True)
        run_env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
        out = subprocess.run([str(exe), str(tmp_path / "missing.safetensors")], env=run_env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "missing.safetensors" in out.stdout and "No such file" in out.stdout
