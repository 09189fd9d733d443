"""MiniImageNet's images are held once per machine: the first decode, later starts, and the
memory of every process of a Flower simulation of 10 agents, on a generated dataset of the
real size (100 classes x 600 images x 84x84x3 uint8 = 1.27 GB, in learn2learn's pickle layout).

    python benchmarks/image_memory.py [--data /tmp/miniimagenet-generated] [--out benchmarks/results/image_memory.json]

Measured (``/proc/<pid>/smaps``, every 0.5 s, the peak over the run), over the Python process
that runs the simulation and all its descendants (Ray's actors, its raylet, GCS, ...):

- ``total-pss``: the processes' proportional set size summed (each shared page counted once
  over all processes that map it);
- ``cache-rss`` / ``cache-pss``: the same two sums over the mappings of the cache file only
  (RSS counts a shared page once per process; PSS once in all);
- the same simulation on a generated dataset of the same classes with 10 images each: the
  difference of the two ``total-pss`` peaks is what holding the images costs all processes
  together.

And, the worst case for sharing: 10 processes that each map the cache file and read every image.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from processes import process_tree  # benchmarks/processes.py

CLASSES = {"train": 64, "validation": 16, "test": 20}
IMAGES, SIZE = 600, 84
SIMULATION = """
import sys
from flower_difmaml import client_app, server_app
from flower_difmaml.config import RunConfig
from flower_difmaml.flower.simulation import run_flower_simulation
config = RunConfig(task="miniimagenet", data_dir=sys.argv[1], results_dir=sys.argv[2], topology="ring", n_way=5,
                   shots=1, queries=1, rotations=False, filters=4, tasks_per_agent=1, num_rounds=3, eval_every=3,
                   eval_tasks=2, final_eval_tasks=20, inner_lr=0.4)
run_flower_simulation(config, 10, server_app.app, client_app.app, cpus_per_node=float(sys.argv[3]))
"""
READER = """
import sys, time
from pathlib import Path
import numpy as np
from flower_difmaml.tasks.miniimagenet import load_miniimagenet
data, _ = load_miniimagenet(Path(sys.argv[1]), 0, 0)
total = sum(int(data.images[i:i + 1000].sum(dtype=np.uint64)) for i in range(0, len(data.images), 1000))
print(total, flush=True)
time.sleep(float(sys.argv[2]))
"""


def generate(folder: Path, images: int) -> None:
    """learn2learn's three pickles of random uint8 images (each class its own seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, classes in CLASSES.items():
        path = folder / f"mini-imagenet-cache-{split}.pkl"
        if path.exists():
            continue
        rng = np.random.default_rng(len(split))
        data = rng.integers(0, 256, (classes * images, SIZE, SIZE, 3), dtype=np.uint8)
        class_dict = {f"n{split}{c:03d}": list(range(c * images, (c + 1) * images)) for c in range(classes)}
        with open(path, "wb") as file:
            pickle.dump({"image_data": data, "class_dict": class_dict}, file, protocol=4)


def memory(pids: list[int], cache_name: str) -> dict[str, int]:
    """kB summed over ``pids``: total PSS, and RSS/PSS of the mappings whose path holds ``cache_name``."""
    total = cache_rss = cache_pss = mapping = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
        except OSError:
            continue
        inside = False
        maps = False
        for line in lines:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and cache_name in fields[-1]
                maps = maps or inside
            elif fields[0] == "Pss:":
                total += int(fields[1])
                cache_pss += int(fields[1]) if inside else 0
            elif fields[0] == "Rss:" and inside:
                cache_rss += int(fields[1])
        mapping += maps
    return {"total-pss-kb": total, "cache-rss-kb": cache_rss, "cache-pss-kb": cache_pss, "processes-mapping": mapping,
            "processes": len(pids)}


def peak_memory(command: list[str], cache_name: str) -> tuple[dict, float, str]:
    """Run ``command``; sample its process tree every 0.5 s; the peak of each figure, wall time, stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = memory(sorted(process_tree(proc.pid)), cache_name)
            for key, value in now.items():
                peak[key] = max(peak.get(key, 0), value)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    output = proc.communicate()[0]
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{command[:3]} failed ({proc.returncode}):\n{output[-3000:]}")
    return peak, time.perf_counter() - start, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/miniimagenet-generated")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "image_memory.json"))
    parser.add_argument("--actors", type=int, default=10)
    args = parser.parse_args()
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    os.environ.update(env)
    real, tiny = Path(args.data) / "real", Path(args.data) / "tiny"
    start = time.perf_counter()
    generate(real, IMAGES)
    generate(tiny, 10)
    generated = time.perf_counter() - start
    load = [sys.executable, "-c", "import sys; from pathlib import Path; from flower_difmaml.tasks.miniimagenet import "
            "load_miniimagenet; d, found = load_miniimagenet(Path(sys.argv[1]), 0, 0); print(found, d.images.shape)"]
    starts = {}
    for name in ("first", "second"):
        t = time.perf_counter()
        out = subprocess.run([*load, str(real)], capture_output=True, text=True, check=True, env=env)
        starts[name] = {"seconds": round(time.perf_counter() - t, 2), "stdout": out.stdout.strip(),
                        "progress-lines": len([l for l in out.stderr.splitlines() if "decoding" in l])}
    cache = next((real / ".flower-difmaml-cache").glob("*.npy"))
    image_bytes = cache.stat().st_size
    subprocess.run([*load, str(tiny)], check=True, capture_output=True, env=env)
    results = {"machine": f"{os.cpu_count()} CPU cores, {platform.machine()}", "image-bytes": image_bytes,
               "generate-seconds": round(generated, 1), "starts": starts}
    cpus = round((os.cpu_count() or 1) / args.actors, 3)  # actors = cpu_count / cpus_per_node
    for name, folder in (("simulation", real), ("simulation-10-images-a-class", tiny)):
        peak, wall, _ = peak_memory([sys.executable, "-c", SIMULATION, str(folder), str(Path(args.data) / "results"),
                                     str(cpus)], ".flower-difmaml-cache")
        results[name] = {**peak, "wall-seconds": round(wall, 1), "cpus-per-actor": cpus}
    held = (results["simulation"]["total-pss-kb"] - results["simulation-10-images-a-class"]["total-pss-kb"]) * 1024
    results["images-held-by-all-processes-bytes"] = held
    results["images-held-ratio-to-one-copy"] = round(held / image_bytes, 3)
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(real), "20"], stdout=subprocess.PIPE, text=True)
               for _ in range(args.actors)]
    totals = [int(r.stdout.readline()) for r in readers]  # every reader has read every image
    pids = [p for r in readers for p in sorted(process_tree(r.pid))]
    results["readers"] = {**memory(pids, ".flower-difmaml-cache"), "same-sum": len(set(totals)) == 1}
    for r in readers:
        r.kill()
        r.wait()
    results["readers"]["cache-pss-ratio-to-one-copy"] = round(results["readers"]["cache-pss-kb"] * 1024 / image_bytes, 3)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
