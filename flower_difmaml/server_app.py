"""ServerApp: read config -> discover the nodes and their blocks -> check the run -> rounds -> results.

A config the run cannot use (a key out of range, a node that cannot build its agent, e.g.
without the data or the CUDA device it asks for, a graph that is not connected on the agents
that came, a results folder that is taken) is logged as one ERROR line that names the key,
before any training message is sent; the app then stops and writes nothing.

Stopped (``flwr stop``, SIGINT, SIGTERM), the run ends after the round in flight with a
checkpoint and one line that gives the command that resumes it (logged at WARNING and
written to the run folder's stopped.txt: Flower closes a stopped run's log stream). Flower
tells the app's process by SIGINT; in a simulation the ServerApp runs in a thread, where no
signal handler can be set, so the app registers a Flower exit handler instead
(``flwr.supercore.exit.add_exit_handler``, the app's one use of Flower's supercore): it asks
the run to stop and waits up to ``STOP_WAIT_S`` for its checkpoint before Flower exits.
"""

from __future__ import annotations

import threading
from logging import ERROR, INFO, WARNING

from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.exit import add_exit_handler

from .config import ConfigError, RunConfig
from .flower.agents import FlowerAgents, discover_nodes
from .learner import MetaLearner
from .runner.experiment import run_experiment, set_up_run
from .runner.stopping import RunStopped, StopSignals, stopped_line

app = ServerApp()
STOPPED_FILE = "stopped.txt"  # a stopped run's last line, with the command that resumes it
STOP_WAIT_S = 60.0  # how long Flower's exit waits for the round in flight and its checkpoint


def _keeps_state(learner: MetaLearner) -> bool:
    """Agents send their meta-optimizer state when there is one and checkpoints need it."""
    return learner.config.checkpoint_every > 0 and bool(learner.optimizer.init(learner.initial_parameters()))


@app.main()
def main(grid: Grid, context: Context) -> None:
    try:
        config = RunConfig.from_mapping(context.run_config)
        nodes, num_agents = discover_nodes(grid)
        setup = set_up_run(config, num_agents, device="cpu")  # the nodes checked key device
    except ConfigError as error:
        log(ERROR, "flower-difmaml: error: %s", error)
        return
    stop, ended = StopSignals(), threading.Event()
    if threading.current_thread() is not threading.main_thread():  # Flower's simulation: its exit tells us
        add_exit_handler(lambda: (stop.request(), ended.wait(STOP_WAIT_S)), run_before_force_exit=True)
    try:
        run_experiment(
            setup,
            lambda learner: FlowerAgents(grid, nodes, config.reply_timeout, _keeps_state(learner)),
            progress=lambda line: log(INFO, line),
            extra={"engine": "flower", "num-nodes": len(nodes)},
            stop=stop,
        )
    except RunStopped as stopped:  # the line is logged, and kept in the run folder: a stopped run's log stream is closed
        if stop.by is not None:  # the in-process engine got the signal: it reports the stop
            return
        command = f'flwr run . --stream --federation-config "num-supernodes={len(nodes)}"'
        line = stopped_line(stopped, command)
        log(WARNING, line)
        (stopped.run_dir / STOPPED_FILE).write_text(line + "\n")
    finally:
        ended.set()
