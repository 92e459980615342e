"""Small helpers shared by the benchmark scripts: timing, a printed table, a JSON record.

Every benchmark script `bench/bench_<name>.py` runs from the repository root with the backend
environment's python, prints a table and writes `bench/results/<name>.json`. Scripts import
this module before torch, so that they measure under the backend's process settings (its
package sets them; see backend/__init__.py).
"""
import datetime
import json
import os
import platform
import statistics
import time

import backend  # noqa: F401  (the backend's process settings, before torch loads)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def time_call(fn, repeats=10, warmup=2, sync=None):
    """Median seconds per call of fn() over `repeats` runs after `warmup` runs.

    `sync` is called before each clock read (pass torch.cuda.synchronize for GPU work).
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def machine_description():
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def print_table(rows, columns):
    """Print rows (a list of dicts) as an aligned text table with the given column keys."""
    cells = [[_format(row.get(col, "")) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) if cells else len(col) for i, col in enumerate(columns)]
    print("  ".join(col.ljust(w) for col, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def write_results(name, rows, extra=None):
    """Write rows with the machine description and date to bench/results/<name>.json; return the path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    record = {
        "benchmark": name,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_description(),
        "rows": rows,
    }
    if extra:
        record.update(extra)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    return path


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
