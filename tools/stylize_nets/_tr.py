"""tools/torch_reference.py (the classic network and the generalized padding
and instance norm every network here shares), imported from the tools folder."""
import sys
from pathlib import Path

_TOOLS = str(Path(__file__).resolve().parent.parent)
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from torch_reference import *  # noqa: F401,F403,E402
from torch_reference import _calibration_image, reflect_pad, mirror_index, instance_norm  # noqa: F401,E402
