"""LION backend: models, pipelines, training and the subprocess server.

This package is imported by the Blender add-on only for its protocol codec, so nothing here
may import torch at package import time.
"""
import os
import sys

__version__ = "0.1.0"

# Transparent huge pages for PyTorch's large CPU tensors (Linux; ignored elsewhere). Voxel grids
# and Conv3d activations are tens to hundreds of MB, allocated afresh on every call, and the
# kernel's 4 KB page faults then cost more than the work: zeroing a [16, 64, 32³] grid takes
# 31-41 ms with them and 5-7 ms with 2 MB pages (BENCHMARKS.md). torch reads the switch once, at
# its first allocation, so it is set here, before any backend module imports torch; set it to 0
# in the environment to turn it off. Inside Blender (the add-on imports this package for its
# codec) Blender's own environment is left alone.
if "bpy" not in sys.modules:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
