"""Process settings the backend package makes before torch loads (backend/__init__.py)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"

# Allocates a 64 MB tensor after importing the backend as its processes do, and reports the
# switch torch saw and the huge pages the process holds (Linux's accounting).
PROBE = """
import os, backend, torch
grid = torch.zeros(64 << 20, dtype=torch.uint8)
huge = [line.split()[1] for line in open('/proc/self/smaps_rollup') if line.startswith('AnonHugePages')]
print(os.environ['THP_MEM_ALLOC_ENABLE'], huge[0] if huge else 'none')
"""


def run_python(code, env_value=None):
    """stdout of `code` in a fresh interpreter whose THP_MEM_ALLOC_ENABLE is `env_value` (None: unset)."""
    env = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=True).stdout


def probe(env_value=None):
    switch, huge_kb = run_python(PROBE, env_value).split()
    return switch, huge_kb


@pytest.mark.skipif(not os.path.isfile("/proc/self/smaps_rollup"), reason="Linux's memory accounting only")
def test_large_tensors_use_huge_pages_unless_turned_off():
    switch, huge_kb = probe()
    assert switch == "1"
    with open(THP_MODE) if os.path.isfile(THP_MODE) else open(os.devnull) as f:
        mode = f.read()
    if "[never]" not in mode and mode:
        assert int(huge_kb) > 0, "torch allocated the tensor without huge pages"
    switch, huge_kb = probe("0")
    assert switch == "0"
    if "[always]" not in mode:  # where the kernel gives every mapping huge pages, torch cannot opt out
        assert int(huge_kb) == 0


def test_blender_environment_is_left_alone():
    """The add-on imports the backend package inside Blender for its codec: no setting leaks there."""
    code = ("import os, sys, types; sys.modules['bpy'] = types.ModuleType('bpy'); import backend; "
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset'))")
    assert run_python(code).strip() == "unset"
