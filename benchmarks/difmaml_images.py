"""The Dif-MAML few-shot image experiment: Dif-MAML vs FedAvg-MAML vs non-coop, seeds 0-2.

The authors' setting (their Classification/ code, see DESIGN): 6 agents on their graph,
uniform weights, 5-way 1-shot and 5-shot, 2 tasks per agent per round, 5 inner steps in
training and 10 at test, Adam 1e-3 per agent, Conv-4 with 64 filters, second order,
3000 rounds; Omniglot query = shot. Each agent has its own characters
(``heterogeneity='classes'``); accuracy on unseen (meta-test) classes.

    python benchmarks/difmaml_images.py omniglot --data-dir ~/omniglot [--shots 1,5]   # needs the data
    python benchmarks/difmaml_images.py miniimagenet --data-dir ~/data [--shots 1,5]   # needs the data
    python benchmarks/difmaml_images.py miniimagenet --data-dir /tmp/mi --generate --rounds 2 --shots 5 \
        --seeds 0 --eval-tasks 2 --out /tmp/mi-check                                  # the pipeline only
    python benchmarks/difmaml_images.py digits                                          # offline, run here

``miniimagenet`` is the authors' MiniImageNet setting (32 filters on 84x84x3, 5-way, 10
queries, 5 inner steps of lr 0.01, 10 at test, Adam 1e-3, 3000 rounds, no rotations), read from
any of the three layouts ``task='miniimagenet'`` reads. ``--generate`` first writes a generated
dataset of the real shape (random pixels, learn2learn's pickle layout, 1.27 GB) where
``--data-dir`` has none: with ``--rounds 2`` it checks the pipeline end to end, not learning.

``omniglot`` is the authors' setting as it stands (about 2.9 s a round for 6 agents x 2
tasks with 1 shot on a 2-core CPU: a GPU is the place for it). ``digits`` is the same
experiment made small enough for a 2-core CPU (scikit-learn's digits, 28x28, 16 filters,
1 inner step in training, 300 rounds, Adam 3e-3, 20 evaluation tasks per agent and
distribution, 1-shot only): the results it wrote are in
benchmarks/results/difmaml_images/digits-*/ and benchmarks/difmaml_images.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from flower_difmaml.cli import run_in_process
from flower_difmaml.config import RunConfig
from flower_difmaml.runner.compare import compare

OUT = Path(__file__).parent / "results" / "difmaml_images"
STRATEGIES = ("dif-maml", "fedavg-maml", "non-coop")
SEEDS = (0, 1, 2)
AUTHORS = dict(
    topology="difmaml-paper", combination="uniform", heterogeneity="classes", n_way=5, tasks_per_agent=2,
    inner_steps=5, eval_inner_steps=10, inner_lr=0.4, meta_optimizer="adam", meta_lr=0.001, filters=64,
    dtype="float32", num_rounds=3000, eval_every=500, eval_tasks=100,
)
SMALL_DIGITS = dict(AUTHORS, filters=16, inner_steps=1, meta_lr=0.003, num_rounds=300, eval_every=150, eval_tasks=20)
AUTHORS_MINIIMAGENET = dict(AUTHORS, filters=32, inner_lr=0.01, rotations=False, queries=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("omniglot", "miniimagenet", "digits"))
    parser.add_argument("--data-dir", default="~/flower-difmaml-data")
    parser.add_argument("--shots", default="1,5")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default: the setting's)")
    parser.add_argument("--eval-tasks", type=int, default=0, help="tasks an agent and source (default: the setting's)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--generate", action="store_true", help="miniimagenet: generate a dataset of the real shape first")
    args = parser.parse_args()
    if args.generate:
        from image_memory import IMAGES, generate  # benchmarks/image_memory.py

        generate(Path(args.data_dir).expanduser(), IMAGES)
    for shots in (int(s) for s in args.shots.split(",")):
        if args.task == "omniglot":
            config = RunConfig(task="omniglot", data_dir=args.data_dir, shots=shots, queries=shots, **AUTHORS)
        elif args.task == "miniimagenet":
            config = RunConfig(task="miniimagenet", data_dir=args.data_dir, shots=shots, **AUTHORS_MINIIMAGENET)
        else:
            config = RunConfig(task="digits", shots=shots, queries=5, **SMALL_DIGITS)
        if args.rounds:
            config = config.replace(num_rounds=args.rounds, eval_every=min(config.eval_every, args.rounds))
        if args.eval_tasks:
            config = config.replace(eval_tasks=args.eval_tasks, final_eval_tasks=6 * args.eval_tasks)
        seeds = [int(s) for s in args.seeds.split(",")]
        folder = Path(args.out) / f"{args.task}-{shots}shot"
        start = time.perf_counter()
        failed = compare(config, STRATEGIES, seeds, folder, num_agents=6, run=run_in_process)
        (folder / "wall_seconds.json").write_text(json.dumps({"wall_s": time.perf_counter() - start}) + "\n")
        if failed:
            raise SystemExit(f"failed runs: {failed}")


if __name__ == "__main__":
    main()
