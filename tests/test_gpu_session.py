"""tools/gpu_session.sh styles: the v2 styles and their twins in one GPU call.

A GPU call is scarce (minutes per task), so the orchestration is checked here
with stand-ins for train.py and distill.py that record their arguments and
write the file named by -o: every style and the great_wave variant train with
the v2 recipe, each twin is distilled from its own variant's model under the
shipped name (the twin's `teacher` metadata is the file's name), warm-started
from the shipped twin or, for a style without one, from another twin; a failed
training costs its own twin only; the results come back as archives."""
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_session.sh"
STYLES = ["starry_night", "great_wave", "the_scream", "shipwreck"]

FAKE_PY = """#!/bin/bash
# stand-in for `python3 tools/{train,distill}.py ...`: log the call, write -o
[[ "$1" == tools/*.py ]] || exit 1  # the session's probes of torch and cuDNN
echo "$*" >> "$CALLS"
[[ "$*" == *styles/the_scream.jpg* ]] && { echo "loss is nan"; exit 2; }
out=
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
mkdir -p "$(dirname "$out")" && echo model > "$out"
mkdir -p .gpu/run/train/x && echo "it,loss" > .gpu/run/train/x/loss.csv
echo "exported $out"
"""


def arg(call, name):
    words = call.split()
    return words[words.index(name) + 1]


def test_styles_trains_every_variant_then_distils_each_twin(tmp_path):
    work = tmp_path / "repo"
    (work / "tools").mkdir(parents=True)
    shutil.copy(SCRIPT, work / "tools")
    (work / ".gpu" / "shared" / "styles").mkdir(parents=True)
    for s in STYLES:
        (work / ".gpu" / "shared" / "styles" / (s + ".jpg")).write_bytes(b"")
    (work / "models").mkdir()
    for s in ("starry_night", "great_wave", "the_scream"):  # shipwreck's left out: a style without a twin
        (work / "models" / (s + "_live.safetensors")).write_bytes(b"")
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = dict(os.environ, PY=str(fake), OUT=str(out), CALLS=str(tmp_path / "calls.txt"),
               GPU_LOGS=str(tmp_path / "logs"))
    r = subprocess.run(["bash", "tools/gpu_session.sh", "styles", "7", "5"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    trains = [c for c in calls if c.startswith("tools/train.py")]
    distills = [c for c in calls if c.startswith("tools/distill.py")]

    # five trainings: the four paintings and great_wave with twice the content weight
    outputs = sorted(arg(c, "-o") for c in trains)
    assert outputs == sorted([".gpu/run/v/%s/%s.safetensors" % (s, s) for s in STYLES]
                             + [".gpu/run/v/great_wave_cw2/great_wave.safetensors"])
    for c in trains:
        assert arg(c, "--time-budget") == "7" and arg(c, "--batch") == "8" and arg(c, "--ema") == "0.995"
        assert "--tin" in c.split() and arg(c, "--size") == "256"
        assert ("--content-weight 2" in c) == ("great_wave_cw2" in c)
        assert "--content-weight 3" not in c  # shipwreck's own weight is train.py's (STYLE_SETTINGS)

    # a twin for every variant that trained (the_scream failed), named as shipped
    by_teacher = {arg(c, "--teacher"): c for c in distills}
    assert sorted(by_teacher) == sorted(".gpu/run/v/%s/%s.safetensors" % (v, s) for v, s in
                                        [("starry_night", "starry_night"), ("great_wave", "great_wave"),
                                         ("great_wave_cw2", "great_wave"), ("shipwreck", "shipwreck")])
    for teacher, c in by_teacher.items():
        style = Path(teacher).stem
        assert arg(c, "-o") == str(Path(teacher).with_name(style + "_live.safetensors"))
        assert arg(c, "--style-name") == style + "_live" and arg(c, "--time-budget") == "5"
        assert arg(c, "--init") == "models/%s_live.safetensors" % (
            "starry_night" if style == "shipwreck" else style)
    log = r.stdout
    assert "train the_scream: exit 2" in log and "distill the_scream: no teacher" in log

    # the teachers come back on their own, and everything together
    with tarfile.open(out / "teachers.tar.gz") as t:
        names = t.getnames()
    assert ".gpu/run/v/shipwreck/shipwreck.safetensors" in names
    assert not any(n.endswith("_live.safetensors") for n in names)
    with tarfile.open(out / "results.tar.gz") as t:
        names = t.getnames()
    assert ".gpu/run/v/great_wave_cw2/great_wave_live.safetensors" in names
    with tarfile.open(out / "logs.tar.gz") as t:
        assert "logs/train_great_wave_cw2.txt" in t.getnames()
