"""Scratch study behind benchmarks/learned_graph.md (e), "what was varied": learned-graph on the
clustered sinusoids of (e) (10 agents, 2 clusters, ER p = 0.4, 600 rounds, warm-up 200) with the
estimate's form patched in. Written against the code BEFORE the fix (commit 08f3bd8, whose
``graph_form`` takes two arguments); run it there:

    git worktree add /tmp/before 08f3bd8
    PYTHONPATH=/tmp/before python benchmarks/learned_graph_variants.py \
        '[("c-rho0.25", [0, 1, 2], dict(strategy="learned-graph", graph_warmup=200, variant=("c-rho", 0.25)))]'

``variant`` (kind, tau): kind ``rho`` keeps the learned weights -L_kl where rho_kl >= tau;
``rholap`` combines with the Laplacian of the partial correlations rho_kl >= tau themselves;
``soft`` with max(0, rho_kl - tau); the prefix ``c-`` centres each neighbourhood's models first;
``c-raw`` only centres. Other keys: ``graph_step`` etc. as run-config keys. Prints own-mse-1.

Until commit ca11265 the pool reused its two workers, and a ``c-`` variant's patch of
``local_laplacian_row`` stayed in its worker for the runs after it; a variant run in the same
invocation after a ``c-`` one may have been centred too (learned_graph.md (e) says which rows
this can concern).
"""
import sys, json, time, numpy as np, scipy.sparse as sp
from concurrent.futures import ProcessPoolExecutor
BASE = dict(heterogeneity="clusters", clusters=2, topology="erdos-renyi", topology_p=0.4, num_rounds=600, eval_tasks=100,
            checkpoint_every=0, results_dir="/tmp/learned_graph_variants")

def run(name, seed, variant=None, agents=10, **keys):
    import torch; torch.set_num_threads(1)
    import flower_difmaml.strategies.learned_graph as lgmod
    from flower_difmaml.network import laplacian as lap
    if variant and variant[0].startswith("c-"):
        def centred_row(models, own):
            x = np.asarray(models, dtype=np.float64); x = x - x.mean(axis=0)
            return np.linalg.pinv(x @ x.T / x.shape[1], hermitian=True)[own]
        lap.local_laplacian_row = centred_row
        variant = (variant[0][2:], variant[1])
    if variant and variant[0] != "raw":
        kind, tau = variant
        orig = lap.graph_form
        def patched(estimate, form):
            e = sp.csc_array(estimate).toarray()
            d = np.sqrt(np.abs(np.diag(e)))
            rho = -e / np.outer(d, d)
            keep = rho >= tau
            np.fill_diagonal(keep, True)
            if kind == "rho":
                return orig(sp.csc_array(e * keep), form)
            w = np.where(keep, rho, 0.0); np.fill_diagonal(w, 0)
            if kind == "soft":
                w = np.maximum(0, rho - tau); np.fill_diagonal(w, 0)
            return sp.csc_array(np.diag(w.sum(1)) - w)
        lgmod.graph_form = patched
    from flower_difmaml.config import RunConfig
    from flower_difmaml.runner.vectorized import run_vectorized
    cfg = {**BASE, **keys, "seed": seed}
    rn = f"{name}-{seed}-{time.time_ns()}"
    s = time.time()
    out = run_vectorized(RunConfig(run_name=rn, **cfg), agents, progress=lambda l: None)
    return name, seed, out["final"]["own-mse-1"], time.time() - s

if __name__ == "__main__":
    jobs = eval(sys.argv[1])  # list of (name, seeds, dict)
    with ProcessPoolExecutor(2, max_tasks_per_child=1) as pool:  # a fresh worker a run: the patches stay in it
        futs = [pool.submit(run, n, s, **k) for n, seeds, k in jobs for s in seeds]
        res = {}
        for f in futs:
            n, s, v, t = f.result(); res.setdefault(n, []).append(v); print(n, s, round(v, 4), f"{t:.0f}s", flush=True)
    for n, v in res.items(): print(f"{n:40s}", " / ".join(f"{x:.3f}" for x in v), f"mean {np.mean(v):.3f}")
