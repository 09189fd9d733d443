"""Run a ServerApp and a ClientApp in Flower's simulation engine (Ray) inside this process.

The same engine ``flwr run`` drives, without a SuperLink process: comparisons and the
integration tests use it to run many configurations. The run config reaches every
ClientApp exactly as under ``flwr run``: from an app folder's ``[tool.flwr.app.config]``,
written here to a temporary folder.

Flower's public ``flwr.simulation.run_simulation`` does not serve here: in flwr 1.42 it
is deprecated (in favour of ``flwr run``) and gives the apps no run config (their
``context.run_config`` is empty), so every ClientApp would run the defaults. This module
calls ``_run_simulation``, the function the ``flwr-simulation`` process itself calls under
``flwr run`` (with ``is_app=True`` and an app folder); it is the one private Flower call in
the package, and pyproject.toml pins flwr below 1.43.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.simulation.run_simulation import _run_simulation
from flwr.supercore.telemetry import EventType

from ..block import num_agents_of
from ..config import RunConfig, toml_value
from ..runner.experiment import set_up_run
from ..runner.stopping import StopSignals


def write_app_config(app_dir: Path, config: RunConfig) -> None:
    """A minimal app folder whose pyproject.toml carries ``config`` as the run config."""
    lines = [
        "[project]",
        'name = "flower-difmaml"',
        'version = "0.1.0"',
        "[tool.flwr.app]",
        'publisher = "flower-difmaml"',
        "[tool.flwr.app.components]",
        'serverapp = "flower_difmaml.server_app:app"',
        'clientapp = "flower_difmaml.client_app:app"',
        "[tool.flwr.app.config]",
    ] + [f"{k} = {toml_value(v)}" for k, v in config.to_mapping().items()]
    (app_dir / "pyproject.toml").write_text("\n".join(lines) + "\n")


def run_flower_simulation(
    config: RunConfig,
    num_agents: int,
    server_app: ServerApp,
    client_app: ClientApp,
    *,
    num_nodes: int = 0,
    cpus_per_node: float = 1.0,
    ray_address: str = "",
) -> None:
    """Run ``config`` on ``num_agents`` agents hosted by ``num_nodes`` simulated SuperNodes
    (0: one agent a node); results go where it says.

    With ``num_nodes`` set, node m hosts a contiguous block of the agents (key ``num-agents``
    carries N to the nodes). A config the run cannot use raises ConfigError here, before Ray
    starts (the ServerApp would log it and stop); anything else the ServerApp raised is
    raised after the engine has stopped. Each node's ClientApp runs in a Ray actor of
    ``cpus_per_node`` cores; with ``ray_address`` the actors are those of a running Ray
    cluster (``ray start --head``), spread over its nodes. With a CUDA ``device`` the actors
    share the GPU: each asks Ray for an equal fraction of it.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # this process runs Flower: set here, not on import
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if num_nodes:
        config = config.replace(num_agents=num_agents)
    num_agents_of(config, num_nodes or num_agents)  # more nodes than agents: ConfigError
    setup = set_up_run(config, num_agents)  # checks only: writes nothing
    actors = max(1, int((os.cpu_count() or 1) // cpus_per_node))
    gpus_per_node = 1.0 / actors if setup.learner.device.type == "cuda" else 0.0
    init_args: dict = {"logging_level": "error", "log_to_driver": False}
    if ray_address:
        init_args["address"] = ray_address
    with tempfile.TemporaryDirectory(prefix="flower-difmaml-app-") as app_dir:
        write_app_config(Path(app_dir), config)
        context = Context(
            run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=config.to_mapping()
        )
        with StopSignals() as stop:  # Ctrl-C reaches the ServerApp's run (a thread), which stops after its round
            _run_simulation(
                num_supernodes=num_nodes or num_agents,
                exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
                client_app=client_app,
                server_app=server_app,
                backend_config={
                    "client_resources": {"num_cpus": cpus_per_node, "num_gpus": gpus_per_node},
                    "init_args": init_args,
                },
                server_app_context=context,
                app_dir=app_dir,
                is_app=True,  # nodes read their run config from app_dir, as under flwr run
            )
    for run in stop.reached:  # the run the signal stopped: the caller prints its resume line
        if run.stopped is not None:
            raise run.stopped
