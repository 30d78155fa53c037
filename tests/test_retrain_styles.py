"""tools/retrain_styles.sh: the resumable queue of the own styles' v2 training.

train.py is replaced by a stand-in that records its arguments, so the test
checks the queue itself: order and concurrency, --resume where a checkpoint
exists, the `done` marker, a failed run left unmarked, and a missing painting
refused before anything starts."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "retrain_styles.sh"

FAKE_TRAIN = """#!/bin/bash
# stand-in for `python3 tools/train.py ...`: log the call, fail for style 'bad'
echo "$(date +%s.%N) start $*" >> "$CALLS"
sleep 1.5  # long enough for the two runs to overlap on a loaded machine
echo "$(date +%s.%N) end $*" >> "$CALLS"
[[ "$*" == *styles/bad.jpg* ]] && exit 3
exit 0
"""


def run_queue(tmp_path, styles, jobs=2, **extra_env):
    shared = tmp_path / "shared"
    (shared / "styles").mkdir(parents=True, exist_ok=True)
    for s in ("one", "two", "three", "bad"):
        (shared / "styles" / (s + ".jpg")).write_bytes(b"")
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_TRAIN)
    fake.chmod(0o755)
    env = dict(os.environ, STYLIZE_SHARED=str(shared), PY=str(fake), JOBS=str(jobs), NICE="0",
               TRAIN_DIR=str(tmp_path / "train"), CALLS=str(tmp_path / "calls.txt"), **extra_env)
    r = subprocess.run(["bash", str(SCRIPT)] + styles, env=env, capture_output=True, text=True,
                       timeout=60)
    calls = (tmp_path / "calls.txt").read_text().splitlines() if (tmp_path / "calls.txt").exists() else []
    return r, calls


def test_queue_runs_two_at_a_time_resumes_and_marks_done(tmp_path):
    ck = tmp_path / "train" / "two_v2"
    ck.mkdir(parents=True)
    (ck / "latest.pt").write_bytes(b"")  # 'two' was interrupted before: it resumes
    r, calls = run_queue(tmp_path, ["one", "two", "bad", "three"])
    assert r.returncode == 0, r.stderr
    starts = [c for c in calls if " start " in c]
    # the queue starts them in the order given (its own log; the runs' lines interleave)
    assert [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("retrain_styles: ")] == \
        ["one", "two", "bad", "three"]
    assert sorted(next(s for s in ("one", "two", "bad", "three") if "styles/%s.jpg" % s in c)
                  for c in starts) == ["bad", "one", "three", "two"]
    # never more than JOBS=2 runs at once
    events = sorted((float(c.split()[0]), 1 if " start " in c else -1) for c in calls)
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert peak == 2
    assert all("--resume" in c and "--init" not in c for c in starts if "styles/two.jpg" in c)
    # a fresh start is warm: from starry_night's weights
    assert all("--init models/starry_night.safetensors" in c and "--resume" not in c
               for c in starts if "styles/two.jpg" not in c)
    assert all("--iterations 1500" in c and "--threads 1" in c and "--tin" in c and "--ema 0.995" in c
               for c in starts)
    train = tmp_path / "train"
    assert (train / "one_v2" / "done").exists() and (train / "three_v2" / "done").exists()
    assert not (train / "bad_v2" / "done").exists()
    assert "train.py exit 3" in (train / "bad_v2.log").read_text()

    # a second call skips the finished styles and retries the failed one only
    (tmp_path / "calls.txt").unlink()
    r, calls = run_queue(tmp_path, ["one", "bad", "three"])
    assert r.returncode == 0
    assert "one is done" in r.stdout and "three is done" in r.stdout
    assert [c for c in calls if " start " in c and "styles/bad.jpg" in c] and \
        not [c for c in calls if "styles/one.jpg" in c or "styles/three.jpg" in c]


def test_missing_painting_is_refused_before_anything_starts(tmp_path):
    r, calls = run_queue(tmp_path, ["one", "nosuch"])
    assert r.returncode == 1
    assert "no painting" in r.stderr and "nosuch.jpg" in r.stderr
    assert calls == []


def test_init_none_starts_from_random_weights(tmp_path):
    r, calls = run_queue(tmp_path, ["one"], INIT="none")
    assert r.returncode == 0, r.stderr
    starts = [c for c in calls if " start " in c]
    assert len(starts) == 1 and "--init" not in starts[0] and "--resume" not in starts[0]
