"""Process-wide runtime settings (edvr.runtime), each checked in a fresh interpreter since they last for a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Sixteen rounds of a small workload that makes and drops large tensors, as every window of a restore does; prints
# the minor page faults of each round. The first round maps fresh memory in any case.
PROBE = """
import json, resource
import torch
from edvr.runtime import keep_freed_memory
applied = keep_freed_memory()
def work():
    a = torch.ones(16 * 2**20)  # 64 MB
    b = a * 2
    c = torch.ones(8 * 2**20)  # 32 MB
    return float(((b + 1)[: 8 * 2**20] * c)[0])
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    work()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc only")
def test_keep_freed_memory_stops_page_faults_once_the_heap_has_grown():
    pages_per_round = 256 * 2**20 // os.sysconf("SC_PAGE_SIZE")  # a round writes 256 MB of new tensors
    kept = _probe()
    if not kept["applied"]:
        pytest.skip("not glibc")
    system = _probe(EDVR_MALLOC="system")
    assert system["applied"] is False
    # glibc's default maps blocks above 32 MB afresh each time: every round faults its pages in again.
    # Measured here: 65541 faults in every round.
    assert all(f > pages_per_round // 2 for f in system["faults"][-10:]), system
    # Kept: after a few rounds the blocks are served from pages already mapped. Now and then the heap still grows
    # by a block when freed chunks do not fit the next request (measured over 6 runs, rounds 7 to 16: 0 faults in
    # 52 rounds out of 60, 8192 or 16384 in the others, at most 24576 in all ten rounds of one run).
    late = kept["faults"][-10:]
    assert sum(late) < pages_per_round, kept  # the system allocator faults ten times this
    assert sum(f < pages_per_round // 20 for f in late) >= 5, kept
