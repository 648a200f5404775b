import os
import sys
from pathlib import Path

import torch

# The test models are tiny: one thread is several times faster than two here (OpenMP overhead on small tensors),
# and results do not depend on how many cores the CI machine has. Subprocesses inherit the setting, and must: float
# sums split between two threads round differently (1.8e-7 here), so a `restore` run in a subprocess with another
# thread count than the test's own can differ by one 8-bit level in a pixel, and then its encoded file differs.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))  # tests/media.py and friends
