#!/usr/bin/python3
"""Seed corpus for tests/fuzz/fuzz_stats.c: small two-pass statistics files
(format in core/include/stylize.h) as pass 1 writes them — several record
sizes, frame counts, time bases, pts orders (B-frames, negative pts), scene
cuts — and near-valid damage of them: a killed pass 1 (count 0, partial
record), truncation, trailing bytes, other version or header size, a zero or
negative time base, duplicate pts, a count that overflows, absurd record
sizes, NaN and infinite statistics.

    /usr/bin/python3 tests/fuzz/make_stats_corpus.py build/fuzz/stats-seeds

Names: valid-* must be accepted, bad-* refused (tests/test_fuzz.py checks).
Standard library only; deterministic; every file is under 64 KiB (-max_len).
"""
import math
import random
import struct
import sys
from pathlib import Path

MAX_LEN = 65536


def stats_file(c1, layers, pts, floats=None, tb=(1, 25), frames=None, version=1, hsize=64, thumb=512,
               values=None, seed=0):
    """A statistics file: n = floats per frame (default 2*c1*layers), records in the order of pts."""
    rng = random.Random(seed)
    n = floats if floats is not None else 2 * c1 * layers
    h = bytearray(64)
    h[0:8] = b"STYSTATS"
    struct.pack_into("<IIIIQiiQII", h, 8, version, hsize, n, layers, rng.getrandbits(64), tb[0], tb[1],
                     len(pts) if frames is None else frames, thumb, c1)
    body = bytearray()
    for i, p in enumerate(pts):
        if values is not None:
            v = values(i, n)
        else:
            scene = 0 if i < len(pts) // 2 else 5.0        # a jump half way: one scene cut
            v = [(scene + rng.uniform(-0.1, 0.1)) if k % (2 * c1) < c1 else rng.uniform(0.5, 1.5)
                 for k in range(n)]
        body += struct.pack("<q", p) + struct.pack(f"<{n}f", *v)
    return bytes(h) + bytes(body)


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = {}
    s["valid-1frame"] = stats_file(1, 1, [0])
    s["valid-c2-l3-10"] = stats_file(2, 3, list(range(10)))
    s["valid-bframes"] = stats_file(4, 2, [0, 3, 1, 2, 6, 4, 5, 9, 7, 8], tb=(1, 90000))
    s["valid-negative-pts"] = stats_file(2, 2, [-2, -1, 0, 1, 2, 3], tb=(1001, 30000))
    s["valid-sparse-pts"] = stats_file(3, 2, [0, 1000, 2002, 3003, 2 ** 40], tb=(1, 1000))
    s["valid-extreme-pts"] = stats_file(1, 1, [-2 ** 63, 0, 2 ** 63 - 1], tb=(1, 2 ** 31 - 1))
    s["valid-tb-large"] = stats_file(1, 2, list(range(5)), tb=(2 ** 31 - 1, 1))
    s["valid-many-frames"] = stats_file(1, 1, list(range(1500)), seed=3)
    s["valid-floats-not-2c1l"] = stats_file(2, 5, list(range(4)), floats=7)
    s["valid-nan"] = stats_file(2, 1, list(range(6)), values=lambda i, n: [math.nan if i == 3 else 1.0] * n)
    s["valid-inf"] = stats_file(2, 1, list(range(6)), values=lambda i, n: [math.inf * (-1) ** i] * n)
    s["valid-negative-variance"] = stats_file(2, 1, list(range(6)), values=lambda i, n: [-1.0e30] * n)
    s["valid-thumb0"] = stats_file(2, 2, list(range(3)), thumb=0)

    base = s["valid-c2-l3-10"]
    rec = 8 + 4 * 12
    s["bad-empty"] = b""
    s["bad-short-header"] = base[:63]
    s["bad-magic"] = b"STYSTATZ" + base[8:]
    s["bad-version"] = base[:8] + struct.pack("<I", 2) + base[12:]
    s["bad-header-size"] = base[:12] + struct.pack("<I", 128) + base[16:]
    s["bad-killed-no-frames"] = base[:40] + bytes(8) + base[48:64]
    s["bad-killed-mid-record"] = base[:40] + bytes(8) + base[48:64 + 3 * rec + 11]
    s["bad-truncated"] = base[:-5]
    s["bad-trailing"] = base + b"\x00" * 4
    s["bad-count-high"] = base[:40] + struct.pack("<Q", 11) + base[48:]
    s["bad-count-overflow"] = base[:40] + struct.pack("<Q", 2 ** 64 - 1) + base[48:]
    s["bad-count-wraps"] = base[:40] + struct.pack("<Q", 2 ** 62 + 10) + base[48:]
    s["bad-tb-zero"] = stats_file(2, 3, list(range(3)), tb=(0, 25))
    s["bad-tb-negative"] = stats_file(2, 3, list(range(3)), tb=(1, -25))
    s["bad-duplicate-pts"] = stats_file(2, 3, [0, 1, 2, 1, 4])
    s["bad-floats-zero"] = stats_file(1, 1, [0, 1], floats=0)
    s["bad-floats-huge"] = base[:16] + struct.pack("<I", 2 ** 31) + base[20:]
    s["bad-floats-wrap"] = base[:16] + struct.pack("<I", 2 ** 30 + 12) + base[20:]
    s["bad-layers-zero"] = stats_file(2, 3, list(range(3)))[:20] + bytes(4) + stats_file(2, 3, list(range(3)))[24:]
    s["bad-c1-zero"] = base[:52] + bytes(4) + base[56:]
    s["bad-c1-too-big"] = base[:52] + struct.pack("<I", 7) + base[56:]
    for name, raw in s.items():
        assert len(raw) <= MAX_LEN, (name, len(raw))
        (out / f"{name}.stats").write_bytes(raw)
    print(f"{len(s)} seeds in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/stats-seeds")
