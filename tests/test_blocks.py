"""Agent blocks: one agent code for every engine, its codec, and which node hosts which agents.

No Flower engine here (the integration tests are in test_flower_simulation.py): a block of
some agents against the block of all of them, the codec's round trips, and discovery of the
nodes' blocks against a fake grid whose nodes answer with the ClientApp's own function.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, Context, RecordDict

from flower_difmaml import client_app
from flower_difmaml.block import (
    AgentBlock, CombineReplies, CombineRequest, EvaluateReplies, EvaluateRequest, TrainReplies, TrainRequest,
    block_agents, node_mean, num_agents_of,
)
from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.flower import agents as flower_agents
from flower_difmaml.flower import codec
from flower_difmaml.learner import MetaLearner
from flower_difmaml.network.faults import INJECTED_FAILURE
from flower_difmaml.strategies.base import NeighbourModels

TINY = dict(eval_tasks=3, tasks_per_agent=2, shots=4, queries=4, topology="ring")


def test_blocks_cover_every_agent_once_in_contiguous_ranges() -> None:
    for num_agents, partitions in ((10, 10), (10, 1), (10, 3), (1000, 7), (7, 7)):
        blocks = [block_agents(m, partitions, num_agents) for m in range(partitions)]
        assert [k for block in blocks for k in block] == list(range(num_agents))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    assert block_agents(2, 3, 4) == range(2, 4) and block_agents(0, 3, 4) == range(0, 1)
    with pytest.raises(ConfigError, match=r"partition-id: 3 out of range; allowed: 0..2"):
        block_agents(3, 3, 4)


def test_number_of_agents_is_the_key_or_one_a_node() -> None:
    assert num_agents_of(RunConfig(), 6) == 6
    assert num_agents_of(RunConfig(num_agents=1000), 10) == 1000
    with pytest.raises(ConfigError, match=r"num-agents: 3 agents on 4 SuperNodes; allowed: at least one agent a node"):
        num_agents_of(RunConfig(num_agents=3), 4)
    with pytest.raises(ConfigError, match=r"num-agents: -1 out of range"):
        RunConfig(num_agents=-1)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-16)


def _learner(**keys) -> MetaLearner:
    return MetaLearner.from_config(RunConfig(**{**TINY, **keys}), 5)


def test_a_block_of_some_agents_computes_what_the_block_of_all_computes() -> None:
    """Agents 2..3 alone (a node's share) and in the block of all 5 (the vectorised engine):
    the same models, losses, Adam states, failures and evaluations, float64 to round-off."""
    learner = _learner(meta_optimizer="adam", meta_lr=0.01, fail_prob=0.3)
    everyone, some = AgentBlock(learner, range(5)), AgentBlock(learner, range(2, 4))
    models = np.tile(learner.initial_vector(), (5, 1))
    for round_ in (1, 2, 3):
        whole = everyone.train(TrainRequest(round_, dict(enumerate(models))))
        part = some.train(TrainRequest(round_, {k: models[k] for k in (2, 3)}, return_states=True))
        assert part.failed == {k: r for k, r in whole.failed.items() if k in (2, 3)}
        assert set(part.models) | set(part.failed) == {2, 3}
        for k in part.models:
            np.testing.assert_allclose(part.models[k], whole.models[k], rtol=1e-12, atol=1e-14)
            assert part.losses[k] == pytest.approx(whole.losses[k], rel=1e-12)
            _close(part.states[k], everyone.optimizer_states()[k])
        for k, model in whole.models.items():
            models[k] = model
    assert sum(len(everyone.train(TrainRequest(r, dict(enumerate(models)))).failed) for r in range(4, 10)) > 0
    request = EvaluateRequest(3, {k: models[k] for k in (2, 3)}, (0, 1))
    whole, part = everyone.evaluate(EvaluateRequest(3, dict(enumerate(models)), (0, 1))), some.evaluate(request)
    assert set(part.metrics) == {"full-mse", "own-mse"}
    for key, curves in part.metrics.items():
        assert set(curves) == {2, 3}
        for k, values in curves.items():
            np.testing.assert_allclose(values, whole.metrics[key][k], rtol=1e-12)
    with pytest.raises(ValueError, match=r"agents \[4\] are not in this block \(2..3\)"):
        some.train(TrainRequest(1, {4: models[4]}))


def test_a_failing_agent_is_left_out_of_its_blocks_reply_and_keeps_its_state() -> None:
    learner = _learner(meta_optimizer="adam", meta_lr=0.01, fail_prob=0.5)
    block = AgentBlock(learner, range(5))
    replies = block.train(TrainRequest(1, dict(enumerate(np.tile(learner.initial_vector(), (5, 1))))))
    assert replies.failed and set(replies.failed.values()) == {INJECTED_FAILURE}
    assert set(block.states) == set(replies.models)  # the failed agents still have the initial state


def _train_replies(dtype=np.float32) -> TrainReplies:
    rng = np.random.default_rng(0)
    return TrainReplies(
        models={3: rng.normal(size=5).astype(dtype), 1: rng.normal(size=5).astype(dtype)},
        num_tasks={3: 2, 1: 2}, losses={3: 0.5, 1: 0.25}, agent_seconds=0.125, failed={2: INJECTED_FAILURE},
        states={1: {"m": rng.normal(size=5), "step": np.array(2.0)}, 3: {"m": rng.normal(size=5), "step": np.array(2.0)}},
    )


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _same(a[k], b[k])
        else:
            np.testing.assert_array_equal(a[k], b[k])
            assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype


def test_train_requests_and_replies_round_trip_through_the_codec() -> None:
    replies = _train_replies()
    request = TrainRequest(7, replies.models, replies.states, return_states=True)
    back = codec.decode_train_request(codec.encode_train_request(request))
    assert (back.round, back.return_states) == (7, True)
    _same(back.models, request.models)
    _same(back.states, request.states)
    decoded = codec.decode_train_replies(codec.encode_train_replies(replies))
    _same(decoded.models, replies.models)
    _same(decoded.states, replies.states)
    assert (decoded.num_tasks, decoded.losses, decoded.agent_seconds, decoded.failed) == (
        replies.num_tasks, replies.losses, replies.agent_seconds, replies.failed
    )
    learner = _learner()  # a block's own replies: task counts and losses as arrays (AgentValues)
    block = AgentBlock(learner, range(5)).train(TrainRequest(1, dict(enumerate(np.tile(learner.initial_vector(), (5, 1))))))
    decoded = codec.decode_train_replies(codec.encode_train_replies(block))
    assert decoded.losses == dict(block.losses) and decoded.num_tasks == dict.fromkeys(range(5), TINY["tasks_per_agent"])
    as_dicts = TrainReplies(dict(block.models), dict(block.num_tasks), dict(block.losses), 0.0)
    for ours, theirs in zip(node_mean(block), node_mean(as_dicts)):  # what a node answers Flower's strategies
        np.testing.assert_array_equal(ours, theirs)
    empty = codec.decode_train_replies(codec.encode_train_replies(TrainReplies({}, {}, {}, 0.0, {0: INJECTED_FAILURE})))
    assert empty.models == {} and empty.failed == {0: INJECTED_FAILURE}


def test_combine_and_evaluate_round_trip_through_the_codec() -> None:
    phi = {l: np.full(4, float(l)) for l in range(4)}
    request = CombineRequest(5, {
        1: NeighbourModels({0: phi[0], 1: phi[1], 2: phi[2]}),
        2: NeighbourModels({1: phi[1], 2: phi[2], 3: phi[3]}, running_losses=np.array([1.0, 0.5, 0.25, 2.0])),
    })
    content = codec.encode_combine_request(request)
    assert len(content[codec.NEIGHBOURS][codec.AGENTS].numpy()) == 4  # each phi_l once
    back = codec.decode_combine_request(content)
    assert back.round == 5 and back.agents.keys() == request.agents.keys()
    for k, part in request.agents.items():
        _same(back.agents[k].models, part.models)
    assert back.agents[1].running_losses is None
    np.testing.assert_array_equal(back.agents[2].running_losses, [1.0, 0.5, 0.25, 2.0])
    replies = CombineReplies({1: phi[1], 2: phi[2]}, {1: np.ones(4), 2: np.zeros(4)}, {1: [0, 1], 2: [2]})
    decoded = codec.decode_combine_replies(codec.encode_combine_replies(replies))
    _same(decoded.models, replies.models)
    _same(decoded.running_losses, replies.running_losses)
    assert decoded.kept == replies.kept
    evaluate = EvaluateRequest(3, {0: phi[0], 2: phi[2]}, (0, 1, 10))
    back_evaluate = codec.decode_evaluate_request(codec.encode_evaluate_request(evaluate))
    assert (back_evaluate.round, back_evaluate.steps) == (3, (0, 1, 10))
    _same(back_evaluate.models, evaluate.models)
    metrics = EvaluateReplies({"full-acc": {0: np.array([0.2, 0.5]), 2: np.array([0.3, 0.6])}, "own-acc": {0: np.ones(2), 2: np.zeros(2)}})
    decoded_metrics = codec.decode_evaluate_replies(codec.encode_evaluate_replies(metrics))
    for key in metrics.metrics:
        _same(decoded_metrics.metrics[key], metrics.metrics[key])


def test_the_codec_names_what_a_message_lacks() -> None:
    content = codec.encode_train_replies(_train_replies())
    del content[codec.METRICS]
    with pytest.raises(codec.CodecError, match="message has no record 'metrics'"):
        codec.decode_train_replies(content)
    content = codec.encode_train_request(TrainRequest(1, _train_replies().models))
    content[codec.MODELS] = ArrayRecord({})
    with pytest.raises(codec.CodecError, match="record 'models' has no key 'agents'"):
        codec.decode_train_request(content)
    content = codec.encode_combine_request(CombineRequest(1, {0: NeighbourModels({0: np.zeros(2), 1: np.ones(2)})}))
    content[codec.NEIGHBOURS] = codec.rows_record({0: np.zeros(2)})
    with pytest.raises(codec.CodecError, match=r"names agents \[1\] that record 'neighbours' does not hold"):
        codec.decode_combine_request(content)
    identity = codec.NodeIdentity(2, 3, 4, 2, 4, problem="device: 'cuda:9' ...")
    assert codec.decode_identity(codec.encode_identity(identity)) == identity


class _Grid:
    """Only what discovery asks of a grid: the node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return self.node_ids


def _discover(monkeypatch: pytest.MonkeyPatch, node_configs: list[dict], run_config: dict | None = None):
    """discover_nodes against nodes that answer with the ClientApp's ``node_identity``."""
    contexts = {
        100 + i: Context(run_id=0, node_id=100 + i, node_config=node_config, state=RecordDict(),
                         run_config={**RunConfig(**TINY).to_mapping(), **(run_config or {})})
        for i, node_config in enumerate(node_configs)
    }
    monkeypatch.setattr(
        flower_agents, "identify",
        lambda grid, node_ids, timeout: {n: client_app.node_identity(contexts[n]) for n in node_ids},
    )
    return flower_agents.discover_nodes(_Grid(list(contexts)), timeout=2.0)


def _nodes(count: int, partitions: int | None = None) -> list[dict]:
    return [{"partition-id": m, "num-partitions": partitions or count} for m in range(count)]


def test_discovery_maps_every_agent_to_the_node_of_its_block(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, num_agents = _discover(monkeypatch, _nodes(3)[::-1], {"num-agents": 10})
    assert num_agents == 10
    assert [(node.node_id, node.agents) for node in nodes] == [(102, range(0, 3)), (101, range(3, 6)), (100, range(6, 10))]
    nodes, num_agents = _discover(monkeypatch, _nodes(4))
    assert num_agents == 4 and [node.agents for node in nodes] == [range(k, k + 1) for k in range(4)]


def test_discovery_errors_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^num-agents: 3 agents on 4 SuperNodes; .*\(on the node of partition 0\)$"):
        _discover(monkeypatch, _nodes(4), {"num-agents": 3})
    twice = _nodes(3)
    twice[2]["partition-id"] = 1
    with pytest.raises(ConfigError, match=r"^partition-id: two nodes claim partition 1 \(agents 3..5\)$"):
        _discover(monkeypatch, twice, {"num-agents": 9})
    disagree = _nodes(3)
    disagree[1]["num-partitions"] = 4
    with pytest.raises(ConfigError, match=r"^num-partitions: nodes disagree on the number of nodes: \[3, 4\]$"):
        _discover(monkeypatch, disagree, {"num-agents": 12})
    with pytest.raises(ConfigError, match=r"^num-agents: nodes disagree on the number of agents: \[3, 4\]$"):
        _discover(monkeypatch, disagree)  # one agent a node: N = num-partitions, which they disagree on
    with pytest.raises(TimeoutError, match="only 2 of \\[3\\] nodes connected"):
        _discover(monkeypatch, _nodes(2, partitions=3))
