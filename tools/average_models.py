#!/usr/bin/env python3
"""Average the weights of model files of one layout (a "model soup",
Wortsman et al. 2022).

Two fine-tunes of one network that start from the same weights usually lie
in one basin of the loss, and their weighted mean combines what each learnt:
the_scream_live's plain fine-tune met the pixel target but learnt its
teacher's border line, the one with --teacher-context did not learn the line
but lost pixel fidelity; their 60/40 mean has both (models/README.md).

    tools/average_models.py A.safetensors B.safetensors [--weights 0.6,0.4] -o OUT.safetensors

Every input must have the same tensors (names and shapes), the same
architecture and network description, and, for distilled models, the same
teacher (by sha256). The mean is taken in float32 and stored in the first
file's dtype; the metadata is the first file's, with a `source` naming every
member and its weight (the warm start all members share written once), and
`training` holding each member's settings.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stylize_safetensors  # noqa: E402

PROG = "average_models.py"
SAME = ("format", "architecture", "network", "teacher_sha256", "style", "license")


class AverageError(Exception):
    """A user-facing error: printed as 'average_models.py: ...', exit 1."""


def parse_weights(text, n):
    if text is None:
        return [1.0 / n] * n
    try:
        w = [float(x) for x in text.split(",")]
    except ValueError:
        raise AverageError("--weights %r: numbers separated by commas" % text)
    if len(w) != n or min(w) < 0 or not abs(sum(w) - 1) < 1e-6:
        raise AverageError("--weights: %d non-negative numbers that sum to 1" % n)
    return w


def average(paths, weights):
    """(tensors, metadata) of the weighted mean; raises AverageError."""
    members = []
    for p in paths:
        try:
            members.append(stylize_safetensors.read(p))
        except (OSError, ValueError) as e:
            raise AverageError("%s: %s" % (p, e))
    t0, m0 = members[0]
    for p, (t, m) in zip(paths[1:], members[1:]):
        if t.keys() != t0.keys() or any(t[k].shape != t0[k].shape for k in t0):
            raise AverageError("%s: its tensors differ from %s's" % (p, paths[0]))
        for key in SAME:
            if m.get(key) != m0.get(key):
                raise AverageError("%s: its %s differs from %s's" % (p, key, paths[0]))
    mean = {k: sum(w * t[k].astype(np.float32) for w, (t, _) in zip(weights, members)) for k in t0}

    parts, runs = [], []
    heads, tail = shared_warm_start([m.get("source", "no source recorded") for _, m in members])
    for p, w, head, (_, m) in zip(paths, weights, heads, members):
        parts.append("%s (weight %g: %s)" % (Path(p).name, w, head))
        try:
            training = json.loads(m.get("training", "{}"))
        except ValueError:
            training = m.get("training")
        runs.append({"file": Path(p).name, "sha256": stylize_safetensors.file_sha256(p), "weight": w,
                     "training": training})
    meta = dict(m0)
    meta["source"] = "weight average (tools/average_models.py) of " + "; ".join(parts) + \
        ("; each" + tail[1:] if tail else "")  # "; each warm-started (--init) from ..."
    meta["averaged_by"] = "tools/average_models.py"
    longest = max((r["training"].get("iterations", 0) for r in runs if isinstance(r["training"], dict)),
                  default=0)
    meta["training"] = json.dumps({"iterations": longest, "average_of": runs}, sort_keys=True,
                                  separators=(",", ":"))
    return mean, meta


WARM_START = ", warm-started (--init) from "  # as tools/distill.py's init_note writes it


def shared_warm_start(sources):
    """Split the members' sources into what differs (their own runs) and the
    warm start they all share, so that it is written once: exports of one
    run share their whole history, and a soup of soups would otherwise grow
    by the number of members at every generation. Returns (heads, tail);
    tail is "" when there is nothing shared."""
    if len(sources) < 2:
        return sources, ""
    common = os.path.commonprefix([s[::-1] for s in sources])[::-1]  # their common end
    cut = common.find(WARM_START)
    while cut >= 0 and common[cut:].count("(") != common[cut:].count(")"):
        cut = common.find(WARM_START, cut + 1)  # one nested in different warm starts: not shared whole
    if cut < 0:
        return sources, ""
    tail = common[cut:]
    return [s[:len(s) - len(tail)] for s in sources], tail


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="model files of one layout (two or more)")
    p.add_argument("--weights", help="one weight per model, summing to 1 (default: equal)")
    p.add_argument("-o", "--output", required=True, help="the averaged .safetensors (never one of the inputs)")
    args = p.parse_args(argv)
    try:
        if len(args.models) < 2:
            raise AverageError("give two or more models")
        out = Path(args.output).resolve()
        if any(Path(m).resolve() == out for m in args.models):
            raise AverageError("-o %s is one of the inputs" % args.output)
        weights = parse_weights(args.weights, len(args.models))
        tensors, meta = average(args.models, weights)
        dtype = {"fp16": "F16", "fp32": "F32", "bf16": "BF16"}.get(meta.get("dtype"), "F16")
        stylize_safetensors.write(str(out), tensors, meta, dtype)
    except AverageError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 1
    print("%s: wrote %s (%s)" % (PROG, args.output, ", ".join("%g" % w for w in weights)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
