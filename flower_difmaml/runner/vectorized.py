"""The in-process vectorised engine: one ``AgentBlock`` of all N agents, no messages.

Same config keys, same agent code (``block``), same seeded tasks and the same results files
as a Flower run: for sweeps. A Flower run and a vectorised run of one config give the same
numbers (to float64 round-off). Computes on key ``device``. With key ``compile`` the
meta-step of all agents is compiled by ``torch.compile`` (about 30 s; once more, for any
number of agents, when that number first changes between rounds): the same numbers to float
round-off, training rounds 1.6-3.3x faster on 2 CPU cores at N = 1000-10
(benchmarks/results/vectorized_round.json); on a GPU each step is one CUDA graph's replay
(``block.step_function``).
"""

from __future__ import annotations

from collections.abc import Callable

from threadpoolctl import threadpool_limits

from ..block import AgentBlock
from ..config import RunConfig
from ..learner import MetaLearner
from .experiment import run_experiment, set_up_run


def all_agents(learner: MetaLearner, on_device: bool = False) -> AgentBlock:
    """The vectorised engine's agents: one block of all of them (``on_device``: replying
    tensors on the learner's device)."""
    return AgentBlock(learner, range(learner.num_agents), on_device=on_device)


def run_vectorized(
    config: RunConfig, num_agents: int, *, progress: Callable[[str], None] = print, tensor_rounds: bool | None = None
) -> dict:
    """Run ``config`` on ``num_agents`` agents in this process; returns the summary.

    Tensor-native rounds (``tensor_rounds``; None: where the agents compute on a GPU and the
    strategy's rule works on tensors, ``MetaStrategy.tensor_models``): the models, the
    optimizer states and the combination stay on the agents' device from round to round;
    models leave it only for evaluation results, checkpoints and the results files. On the
    CPU the numpy models share the tensors' memory already and the rounds take the same time
    (benchmarks/results/tensor_rounds.json), so there they are off unless asked for.

    numpy's BLAS (the strategies' combination) runs on one thread here: its idle threads
    spin after each product and take the cores from torch's meta-step that follows (on 2
    cores, N = 100: a 118 ms step instead of 65 ms).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        setup = set_up_run(config, num_agents)
        if tensor_rounds is None:
            tensor_rounds = setup.learner.device.type != "cpu"
        on_device = tensor_rounds and setup.strategy.tensor_models
        return run_experiment(setup, lambda learner: all_agents(learner, on_device), progress=progress,
                              extra={"engine": "vectorized", "tensor-rounds": on_device})
