"""Build the compiled point-voxel operators ahead of time, or only check that the CUDA ones compile.

    python -m kernels.compile            build into the kernel cache what first use would build:
                                         the CPU operators, and the CUDA ones where this PyTorch
                                         has CUDA
    python -m kernels.compile --cpu      build the CPU operators only
    python -m kernels.compile --check    compile the CUDA build's sources to object files in a
                                         temporary folder with nvcc: no GPU, no CUDA build of
                                         PyTorch and no linking needed (what CI runs); the shared
                                         per-element header is compiled as device and host code

`python3 build.py kernels` runs the first form. Exit status 0 on success, 1 with the reason on
stderr otherwise.
"""
import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import torch

from kernels import extension

# One architecture is enough to type-check the device code; the real build targets the GPUs
# that torch.utils.cpp_extension finds (or TORCH_CUDA_ARCH_LIST).
CHECK_ARCH = "sm_80"


class CompileError(RuntimeError):
    """A source failed to compile; the message holds the compiler's output."""


def _object_commands(nvcc, out_dir, arch):
    from torch.utils import cpp_extension

    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    includes.append(f"-I{sysconfig.get_paths()['include']}")
    defines = [
        "-DTORCH_EXTENSION_NAME=lion_kernels_check",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        # CPU-only PyTorch wheels ship the c10/cuda headers without their generated config
        # header; it only carries a Windows export switch.
        "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",
        "-DLION_WITH_CUDA",
    ]
    common = [nvcc, "-c", "-std=c++20", "-Xcompiler", "-fPIC"]
    def source(name):
        return os.path.join(extension.SOURCE_DIR, name)

    def obj(name):
        return os.path.join(out_dir, os.path.splitext(name)[0] + ".o")

    return [
        common + list(extension.CUDA_FLAGS) + [f"-arch={arch}", source("point_voxel.cu"), "-o", obj("point_voxel.cu")],
    ] + [
        # nvcc hands .cpp files to the host compiler and adds the CUDA include folder; the
        # check only needs the compiler's verdict, so the slow torch headers build at -O0.
        common + ["-O0"] + includes + defines + [source(name), "-o", obj(name)]
        for name in extension.CPU_SOURCES
    ]


def compile_objects(out_dir, arch=CHECK_ARCH):
    """Compile the CUDA build's sources to object files in out_dir with nvcc, all in parallel.

    Returns the list of object file paths. Raises CompileError with the compiler output when a
    source does not compile, and FileNotFoundError when nvcc is not on PATH.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc is not on PATH")
    commands = _object_commands(nvcc, out_dir, arch)
    running = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for cmd in commands]
    failures = []
    for cmd, process in zip(commands, running):
        output, _ = process.communicate()
        if process.returncode != 0:
            failures.append(f"$ {' '.join(cmd)}\n{output}")
    if failures:
        raise CompileError("\n".join(failures))
    return [cmd[-1] for cmd in commands]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kernels.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only compile the sources to object files (no GPU or CUDA PyTorch needed)")
    parser.add_argument("--cpu", action="store_true", help="build the CPU operators only")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands and output")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory(prefix="lion_kernels_check_") as out_dir:
            try:
                objects = compile_objects(out_dir)
            except (CompileError, FileNotFoundError) as error:
                print(f"kernels: compile check failed: {error}", file=sys.stderr)
                return 1
            print(f"kernels: compile check passed ({', '.join(os.path.basename(o) for o in objects)})")
        return 0
    variants = ["cpu"] + (["cuda"] if torch.version.cuda is not None and not args.cpu else [])
    failed = False
    for variant in variants:
        try:
            extension.build(variant, verbose=args.verbose)
        except RuntimeError as error:
            print(f"kernels: {variant}: {error}", file=sys.stderr)
            failed = True
        else:
            print(f"kernels: {variant} operators built in {extension.build_dir(variant)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
