"""A bare ``torch.func`` Dif-MAML / non-coop on few-shot digits, beside the project's runs.

The setting of issue 26 (benchmarks/digits_conv4.md), written out without the project's
learner, strategies or streams: only its digit images (``load_digits_classes``, 28x28,
values in [0, 1]) are shared. Own draws (numpy ``default_rng``), so numbers agree with the
project's in distribution, not to the bit.

- Classes: digits 0-6 with their 4 rotations (0, 90, 180, 270 degrees) are meta-train,
  7-9 with theirs meta-test (12 classes). Agent k of 4 has the meta-train digits
  {floor(7k/4), floor(7k/4) + 1} (heterogeneity 'classes': 8 classes each).
- Model: the Dif-MAML authors' Conv-4 as a pure function of a dict of tensors: four blocks
  conv 3x3 pad 1 -> batch norm with the batch's statistics -> ReLU -> max-pool 2x2 (floor,
  or ``--pool ceil``), flatten, linear. Init (``--init keras``): conv kernels
  N(0, 1 / ((fan_in + fan_out) / 2)), head Glorot uniform, biases 0, gamma 1;
  ``--init torch``: PyTorch's Conv2d/Linear defaults, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
- Meta-step of agent k on its T tasks (vmap over tasks), second order:
      theta_t = w - alpha grad L(w; S_t),  J_k(w) = (1/T) sum_t L(theta_t; Q_t),
  then ``torch.optim.Adam`` (its own, one per agent) steps w with grad J_k.
- dif-maml: adapt then combine, w_k <- sum_l a_lk phi_l with the ring's Metropolis weights
  (a_lk = 1/3 for l in {k-1, k, k+1}); non-coop: no combination. Adam states stay per agent.
- Evaluation at the end: each agent adapts to ``--eval-tasks`` tasks of all 12 meta-test
  classes with ``--eval-steps`` SGD steps (lr alpha, batch statistics of the support set in
  each step and of the query set on the query); accuracy on the queries after 0, 1, 10 steps.

    python benchmarks/digits_bare.py --strategy dif-maml --seed 0 [--pool ceil] [--init torch]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from flower_difmaml.tasks.digits import META_TEST_DIGITS, load_digits_classes

Params = dict[str, torch.Tensor]


def init_params(in_ch: int, filters: int, n_way: int, image_size: int, pool: str, init: str,
                gen: torch.Generator) -> Params:
    """The Conv-4's parameters: conv{i}.w/b, bn{i}.g/b for i = 0..3, head.w/b."""
    params: Params = {}
    channels = in_ch
    side = image_size
    for i in range(4):
        fan_in, fan_out = channels * 9, filters * 9
        if init == "keras":
            std = math.sqrt(1.0 / ((fan_in + fan_out) / 2))
            params[f"conv{i}.w"] = torch.randn(filters, channels, 3, 3, generator=gen) * std
            params[f"conv{i}.b"] = torch.zeros(filters)
        else:  # PyTorch's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias likewise
            bound = 1 / math.sqrt(fan_in)
            params[f"conv{i}.w"] = (torch.rand(filters, channels, 3, 3, generator=gen) * 2 - 1) * bound
            params[f"conv{i}.b"] = (torch.rand(filters, generator=gen) * 2 - 1) * bound
        params[f"bn{i}.g"] = torch.ones(filters)
        params[f"bn{i}.b"] = torch.zeros(filters)
        channels = filters
        side = math.ceil(side / 2) if pool == "ceil" else side // 2
    features = filters * side * side
    if init == "keras":
        limit = math.sqrt(6.0 / (features + n_way))
        params["head.w"] = (torch.rand(n_way, features, generator=gen) * 2 - 1) * limit
        params["head.b"] = torch.zeros(n_way)
    else:
        bound = 1 / math.sqrt(features)
        params["head.w"] = (torch.rand(n_way, features, generator=gen) * 2 - 1) * bound
        params["head.b"] = (torch.rand(n_way, generator=gen) * 2 - 1) * bound
    return params


def forward(params: Params, x: torch.Tensor, pool: str) -> torch.Tensor:
    """Logits (P, n_way) of images x (P, C, H, W); batch norm written out (batch statistics)."""
    for i in range(4):
        x = F.conv2d(x, params[f"conv{i}.w"], params[f"conv{i}.b"], padding=1)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        x = (x - mean) / torch.sqrt(var + 1e-5) * params[f"bn{i}.g"].view(1, -1, 1, 1) + params[f"bn{i}.b"].view(1, -1, 1, 1)
        x = F.max_pool2d(F.relu(x), 2, ceil_mode=pool == "ceil")
    return x.flatten(1) @ params["head.w"].T + params["head.b"]


def draw_tasks(rng: np.random.Generator, images: torch.Tensor, classes: np.ndarray, num_tasks: int,
               n_way: int, shots: int, queries: int) -> tuple[torch.Tensor, ...]:
    """(xs, ys, xq, yq), leading dim num_tasks; class id = digit * 4 + rotation."""
    examples = images.shape[1]
    xs, xq = [], []
    for _ in range(num_tasks):
        chosen = rng.choice(classes, n_way, replace=False)
        support, query = [], []
        for c in chosen:
            picks = rng.choice(examples, shots + queries, replace=False)
            x = torch.rot90(images[c // 4, picks], int(c % 4), dims=(-2, -1)).unsqueeze(1)
            support.append(x[:shots])
            query.append(x[shots:])
        xs.append(torch.cat(support))
        xq.append(torch.cat(query))
    ys = torch.arange(n_way).repeat_interleave(shots).expand(num_tasks, -1)
    yq = torch.arange(n_way).repeat_interleave(queries).expand(num_tasks, -1)
    return torch.stack(xs), ys, torch.stack(xq), yq


def agent_train_classes(k: int, num_agents: int, train_digits: list[int], n_way: int) -> np.ndarray:
    b = len(train_digits)
    size = min(b, max(math.ceil(n_way / 4), math.ceil(b / num_agents)))
    start = k * b // num_agents
    digits = [train_digits[(start + j) % b] for j in range(size)]
    return np.array([d * 4 + r for d in digits for r in range(4)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=("dif-maml", "non-coop"), default="dif-maml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--tasks-per-agent", type=int, default=2)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--pool", choices=("floor", "ceil"), default="floor")
    parser.add_argument("--init", choices=("keras", "torch"), default="keras")
    parser.add_argument("--eval-tasks", type=int, default=150, help="per agent (4 x 150 = 600)")
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    n_way, shots, queries, alpha, pool = 5, 1, 5, args.inner_lr, args.pool

    data = load_digits_classes()
    images = data.images  # (10, 174, 28, 28)
    train_digits = list(data.train)
    test_classes = np.array([d * 4 + r for d in META_TEST_DIGITS for r in range(4)])
    own = [agent_train_classes(k, args.agents, train_digits, n_way) for k in range(args.agents)]

    gen = torch.Generator().manual_seed(args.seed)
    w0 = init_params(1, args.filters, n_way, images.shape[-1], pool, args.init, gen)
    agents = [{n: p.clone().requires_grad_(True) for n, p in w0.items()} for _ in range(args.agents)]
    optimizers = [torch.optim.Adam(list(w.values()), lr=args.meta_lr) for w in agents]

    def support_loss(p: Params, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(forward(p, xs, pool), ys)

    def task_objective(p: Params, xs, ys, xq, yq) -> torch.Tensor:
        g = grad(support_loss)(p, xs, ys)  # second order: differentiated again by grad(meta_loss)
        theta = {n: p[n] - alpha * g[n] for n in p}
        return F.cross_entropy(forward(theta, xq, pool), yq)

    def meta_loss(p: Params, xs, ys, xq, yq) -> torch.Tensor:
        return vmap(task_objective, in_dims=(None, 0, 0, 0, 0))(p, xs, ys, xq, yq).mean()

    meta_grad = grad(meta_loss)
    rng = np.random.default_rng([args.seed, 1])
    metropolis = np.zeros((args.agents, args.agents))
    for k in range(args.agents):  # ring: degree 2 everywhere, a_lk = 1 / (1 + max(d_k, d_l)) = 1/3
        for l in (k - 1, k, k + 1):
            metropolis[l % args.agents, k] = 1.0 / 3.0
    for round_ in range(1, args.rounds + 1):
        for k, (w, opt) in enumerate(zip(agents, optimizers)):
            batch = draw_tasks(rng, images, own[k], args.tasks_per_agent, n_way, shots, queries)
            detached = {n: p.detach() for n, p in w.items()}
            grads = meta_grad(detached, *batch)
            for n, p in w.items():
                p.grad = grads[n]
            opt.step()
        if args.strategy == "dif-maml":
            with torch.no_grad():
                phi = [{n: p.detach().clone() for n, p in w.items()} for w in agents]
                for k, w in enumerate(agents):
                    for n, p in w.items():
                        p.copy_(sum(metropolis[l, k] * phi[l][n] for l in range(args.agents)))
    train_s = time.perf_counter() - start

    steps = (0, 1, args.eval_steps)

    def evaluate(p: Params, xs, ys, xq, yq) -> torch.Tensor:
        out = []
        theta = p
        for step in range(args.eval_steps + 1):
            if step in steps:
                out.append((forward(theta, xq, pool).argmax(-1) == yq).float().mean())
            if step < args.eval_steps:
                g = grad(support_loss)(theta, xs, ys)
                theta = {n: theta[n] - alpha * g[n] for n in theta}
        return torch.stack(out)

    eval_rng = np.random.default_rng([args.seed, 2])
    accs = []
    with torch.no_grad():
        for w in agents:
            batch = draw_tasks(eval_rng, images, test_classes, args.eval_tasks, n_way, shots, queries)
            p = {n: t.detach() for n, t in w.items()}
            accs.append(vmap(evaluate, in_dims=(None, 0, 0, 0, 0), chunk_size=50)(p, *batch))
    acc = torch.cat(accs).mean(0)  # over agents x tasks
    result = {
        "strategy": args.strategy, "seed": args.seed, "pool": pool, "init": args.init, "rounds": args.rounds,
        "inner_lr": alpha, "full-acc-0": float(acc[0]), "full-acc-1": float(acc[1]),
        f"full-acc-{args.eval_steps}": float(acc[2]), "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
