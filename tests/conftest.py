import os
import sys
from pathlib import Path

import torch

# The test models are tiny: one thread is several times faster than two here (OpenMP overhead on small tensors),
# and results do not depend on how many cores the CI machine has. Subprocesses inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))  # tests/media.py and friends
