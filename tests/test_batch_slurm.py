"""Chunks of one video as a Slurm job array on a single-node cluster on localhost.

    make check-batch-remote      # with the GNU parallel test; this one also runs in `make check`

The test brings up its own cluster and stops it afterwards: munged (a
throwaway key, its own socket), slurmctld and slurmd (a generated slurm.conf,
ports picked free, state, spool, logs and pid files all under the test's tmp
folder; nothing system-wide), as root, in the foreground of their own
processes. `stylize-batch prepare` runs pass 1 and plans the chunks, the
chunks run as the job array of docs/BATCH.md (`sbatch --array ... --wrap
"stylize-batch chunk WORK $SLURM_ARRAY_TASK_ID"`), `stylize-batch finish`
runs as a job that depends on the array (afterok), and the result must equal
a local single run frame for frame and pts for pts. It skips, saying why,
when it is not root, Slurm or munge are missing (apt-get install slurm-wlm
munge), or the daemons cannot start here. About 30 s on 2 busy cores.
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

TOOLS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue")


def which(tool):
    return shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.path.exists(p)),
                                      None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=15):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node cluster; yields the environment for Slurm's commands."""
    missing = [t for t in TOOLS if not which(t)]
    if missing:
        pytest.skip(f"Slurm or munge not installed ({', '.join(missing)} missing): "
                    "apt-get install slurm-wlm munge (tools/install_deps.sh)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld, slurmd and munged needs root here")
    d = tmp_path_factory.mktemp("slurm")
    # munged insists on private folders for its key and socket.
    for sub in ("munge", "ctld", "spool"):
        (d / sub).mkdir(mode=0o700)
    os.chmod(d, 0o755)
    key = d / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = d / "munge" / "munge.socket"
    conf = d / "slurm.conf"
    ncpu = os.cpu_count() or 1
    conf.write_text(f"""\
ClusterName=stylizetest
SlurmctldHost=localhost
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={d / 'ctld'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'slurmctld.log'}
SlurmdLogFile={d / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName=localhost NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={ncpu} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
    senv = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    senv["SLURM_CONF"] = str(conf)
    procs = []

    def start(name, cmd):
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=open(d / f"{name}.stderr", "w"), env=senv))

    try:
        start("munged", [which("munged"), "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                         f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                         f"--seed-file={d / 'munge' / 'munged.seed'}"])
        for _ in range(50):
            if sock.exists():
                break
            time.sleep(0.1)
        else:
            pytest.skip(f"munged does not start here:\n{tail(d / 'munged.log')}\n{tail(d / 'munged.stderr')}")
        start("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(conf)])
        start("slurmd", [which("slurmd"), "-D", "-N", "localhost", "-f", str(conf)])
        state = ""
        for _ in range(150):
            if any(p.poll() is not None for p in procs):
                break
            proc = subprocess.run([which("sinfo"), "-h", "-n", "localhost", "-o", "%T"], capture_output=True,
                                  text=True, env=senv)
            state = proc.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.2)
        if state != "idle":
            pytest.skip(f"the Slurm daemons do not start here (node state '{state}'):\n"
                        f"slurmctld: {tail(d / 'slurmctld.log')}\n{tail(d / 'slurmctld.stderr')}\n"
                        f"slurmd: {tail(d / 'slurmd.log')}\n{tail(d / 'slurmd.stderr')}")
        yield {"env": senv, "dir": d, "cpus": ncpu}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_chunks_as_slurm_job_array(env, slurm, tmp_path):
    out = tmp_path / "out"
    logs = tmp_path / "slurm-logs"
    logs.mkdir()
    # threads left to prepare's default (0): each chunk uses the CPUs Slurm gave it.
    work = run([sys.executable, BATCH, "prepare", "-m", env["m1"], "-o", out, env["long"], "--window", "2",
                "--chunk-seconds", "1", *LOSSLESS]).stdout.strip()
    n = int((Path(work) / "chunks").read_text())
    assert n == 4
    # The commands of docs/BATCH.md, one CPU a chunk, at most 2 at once, logs kept aside.
    script = f"""set -e
work={work}
n=$(cat "$work/chunks")
jid=$(sbatch --parsable --array=0-$((n - 1))%2 --cpus-per-task=1 -o '{logs}/chunk-%A_%a.out' \\
      --wrap "{BATCH} chunk $work \\$SLURM_ARRAY_TASK_ID")
echo "array $jid"
sbatch --parsable --wait --kill-on-invalid-dep=yes --dependency=afterok:$jid -o '{logs}/finish-%j.out' \\
      --wrap "{BATCH} finish $work"
"""
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env=slurm["env"],
                          cwd=tmp_path)
    outs = sorted(p.name for p in logs.iterdir())
    report = (f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}\nlogs: {outs}\n" +
              "".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.iterdir())) +
              f"--- slurmctld\n{tail(slurm['dir'] / 'slurmctld.log')}")
    assert proc.returncode == 0, report
    jid = proc.stdout.split()[1]
    # every array task ran as its own Slurm job and printed nothing (chunk succeeded)
    assert [f"chunk-{jid}_{i}.out" for i in range(n)] == [o for o in outs if o.startswith("chunk-")], report
    assert all((logs / f"chunk-{jid}_{i}.out").read_text() == "" for i in range(n)), report
    finish = [o for o in outs if o.startswith("finish-")]
    assert len(finish) == 1 and (logs / finish[0]).read_text().strip() == str(out / "long_m1.mp4"), report
    assert not Path(work).exists(), "finish removes the work folder"
    q = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=slurm["env"])
    assert q.returncode == 0 and q.stdout.strip() == "", q.stdout + q.stderr

    single = tmp_path / "single"
    batch("-m", env["m1"], "-o", single, env["long"], "--window", "2", *LOSSLESS)
    a, b = single / "long_m1.mp4", out / "long_m1.mp4"
    assert raw_frames(a) == raw_frames(b)
    assert video_pts(a) == video_pts(b) and len(video_pts(b)) == 100


def test_failed_chunk_cancels_finish(env, slurm, tmp_path):
    """A chunk that fails leaves the finish job unsatisfiable: Slurm cancels it (no job waits forever)."""
    out = tmp_path / "out"
    work = run([sys.executable, BATCH, "prepare", "-m", env["m1"], "-o", out, env["short"],
                "--chunk-seconds", "100", *LOSSLESS]).stdout.strip()
    # break the chunk: its plan now names a model that does not exist
    plan = Path(work) / "plan.json"
    plan.write_text(plan.read_text().replace(str(env["m1"]), str(tmp_path / "gone.safetensors")))
    script = f"""jid=$(sbatch --parsable --array=0-0 --cpus-per-task=1 -o '{tmp_path}/c-%A_%a.out' --wrap "{BATCH} chunk {work} \\$SLURM_ARRAY_TASK_ID")
sbatch --parsable --wait --kill-on-invalid-dep=yes --dependency=afterok:$jid -o '{tmp_path}/f-%j.out' --wrap "{BATCH} finish {work}"
"""
    t0 = time.time()
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, env=slurm["env"])
    # sbatch --wait returns once the finish job is cancelled (with status 0 in Slurm 22.05: the job never
    # ran), not after a timeout: ask Slurm what became of it.
    assert proc.returncode == 0 and time.time() - t0 < 100, proc.stdout + proc.stderr
    fid = proc.stdout.split()[-1]
    show = subprocess.run(["scontrol", "show", "job", fid], capture_output=True, text=True, env=slurm["env"]).stdout
    assert "JobState=CANCELLED" in show and "DependencyNeverSatisfied" in show, show
    chunk_log = next(tmp_path.glob("c-*_0.out")).read_text()
    assert "chunk 0 failed; log:" in chunk_log, chunk_log
    assert not list(tmp_path.glob("f-*.out")), "the finish job must not have run"
    # prepare's threads=0 became the one CPU Slurm gave the chunk (the kept log has ffmpeg's command)
    log = (Path(work) / "chunk_00000.log").read_text()
    assert "threads=1" in log and "threads=0" not in log, log[:2000]
    assert not (out / "short_m1.mp4").exists()


def test_allotted_cpus(monkeypatch):
    """What a chunk's threads=0 becomes: Slurm's CPUs for the task, else the job's on this node, else affinity."""
    import importlib.util
    from importlib.machinery import SourceFileLoader
    loader = SourceFileLoader("stylize_batch", str(BATCH))
    tool = importlib.util.module_from_spec(importlib.util.spec_from_loader("stylize_batch", loader))
    loader.exec_module(tool)
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_JOB_CPUS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    assert tool.allotted_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "6(x3)")
    assert tool.allotted_cpus() == 6
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert tool.allotted_cpus() == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "")
    assert tool.allotted_cpus() == 6
