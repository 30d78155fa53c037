"""Chunks of one video run on two "hosts" with GNU parallel over SSH.

    make check-batch-remote      # not part of `make check`: starts two sshd, needs root

Two sshd daemons on 127.0.0.1 (ports picked free, a throwaway host key and
client key under the test's tmp folder, nothing system-wide but /run/sshd)
play two machines, host1 and host2, reached through an ssh config file.
`stylize-batch prepare` runs pass 1 and plans the chunks, GNU parallel runs
`stylize-batch chunk WORK I` on both hosts (--sshlogin 1/host1,1/host2; the
paths are the same on both, as on a shared filesystem), `stylize-batch
finish` concatenates. The result must equal a local single run frame for
frame, and parallel's job log must show both hosts.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_batch import BATCH, LOSSLESS, batch, env, raw_frames, run, video_pts  # noqa: F401 (env: fixture)

if not os.environ.get("STYLIZE_REMOTE_TEST"):
    pytest.skip("set STYLIZE_REMOTE_TEST=1 (make check-batch-remote)", allow_module_level=True)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    for tool in (SSHD, shutil.which("ssh"), shutil.which("parallel"), shutil.which("ssh-keygen")):
        if not tool or not os.path.exists(tool):
            pytest.skip("needs openssh-server, openssh-client and parallel (tools/install_deps.sh)")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here")
    d = tmp_path_factory.mktemp("ssh")
    os.chmod(d, 0o700)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host_key"])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "client_key"])
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    os.makedirs("/run/sshd", exist_ok=True)
    procs, cfg = [], []
    for name in ("host1", "host2"):
        port = free_port()
        procs.append(subprocess.Popen(
            [SSHD, "-D", "-e", "-f", "/dev/null", "-p", str(port), "-h", str(d / "host_key"),
             "-o", "ListenAddress=127.0.0.1", "-o", f"AuthorizedKeysFile={d / 'authorized_keys'}",
             "-o", "PermitRootLogin=prohibit-password", "-o", "PasswordAuthentication=no",
             "-o", "StrictModes=no", "-o", "UsePAM=no", "-o", f"PidFile={d / name}.pid"],
            stdout=subprocess.DEVNULL, stderr=open(d / f"{name}.log", "w")))
        cfg.append(f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {os.environ.get('USER', 'root')}\n"
                   f"  IdentityFile {d / 'client_key'}\n  StrictHostKeyChecking no\n"
                   f"  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n")
    (d / "ssh_config").write_text("".join(cfg))
    ssh = f"ssh -F {d / 'ssh_config'}"
    try:
        for name in ("host1", "host2"):
            for _ in range(50):
                if subprocess.run(ssh.split() + [name, "true"], capture_output=True).returncode == 0:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"cannot ssh to {name}:\n{(d / f'{name}.log').read_text()}")
        yield ssh
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def test_chunks_over_ssh_with_gnu_parallel(env, hosts, tmp_path):
    out = tmp_path / "out"
    work = run([sys.executable, BATCH, "prepare", "-m", env["m1"], "-o", out, env["long"], "--window", "2",
                "--chunk-seconds", "1", "--threads", "1", *LOSSLESS]).stdout.strip()
    n = int((Path(work) / "chunks").read_text())
    assert n == 4
    joblog = tmp_path / "joblog"
    run(["parallel", "--ssh", hosts, "--sshlogin", "1/host1,1/host2", "--joblog", joblog,
         "--halt", "now,fail=1", f"{BATCH} chunk {work} {{}}", ":::", *map(str, range(n))])
    used = {line.split("\t")[1] for line in joblog.read_text().splitlines()[1:]}
    assert used == {"host1", "host2"}, joblog.read_text()
    run([sys.executable, BATCH, "finish", work])

    single = tmp_path / "single"
    batch("-m", env["m1"], "-o", single, env["long"], "--window", "2", *LOSSLESS)
    a, b = single / "long_m1.mp4", out / "long_m1.mp4"
    assert raw_frames(a) == raw_frames(b)
    assert video_pts(a) == video_pts(b) and len(video_pts(b)) == 100
