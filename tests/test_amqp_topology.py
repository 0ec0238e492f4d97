"""The execution queue's topology, as the code declares it and as the shipped files use it
(``rabbitmq/definitions.json`` for local runs, ``deploy/keda-amqp-exec.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from metatwin_functions import Settings
from metatwin_functions.amqp import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    execute_routing_key,
    queue_arguments,
)

REPO = Path(__file__).resolve().parent.parent


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_the_queue_and_routing_key_are_named_after_the_deployment() -> None:
    assert settings(deployment_id="dep-42").amqp_exec_queue_name == "metatwin-functions.exec.dep-42"
    assert settings(amqp_exec_queue="custom").amqp_exec_queue_name == "custom"
    assert (
        execute_routing_key("dep-42")
        == "routing.command.metatwin-functions.function.execute.dep-42"
    )


def test_the_queue_is_quorum_with_the_dead_letter_exchange_and_a_backstop_delivery_limit() -> None:
    assert queue_arguments(settings(amqp_exec_max_deliveries=5)) == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "metatwin-functions.exec.dlx",
        "x-delivery-limit": 6,
    }


def test_local_definitions_declare_the_same_topology_as_the_code() -> None:
    definitions = json.loads((REPO / "rabbitmq" / "definitions.json").read_text())
    queues = {q["name"]: q for q in definitions["queues"]}
    exec_queue = queues[settings().amqp_exec_queue_name]
    assert exec_queue["durable"] is True
    assert exec_queue["arguments"] == queue_arguments(settings())
    assert queues[DEAD_LETTER_QUEUE]["durable"] is True
    [dlx] = [e for e in definitions["exchanges"] if e["name"] == DEAD_LETTER_EXCHANGE]
    assert (dlx["type"], dlx["durable"]) == ("fanout", True)
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]}
    assert ("event.exchange", exec_queue["name"], execute_routing_key("local-dev")) in bindings
    assert (DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, "") in bindings


def test_the_keda_example_scales_on_the_queue_its_deployment_consumes() -> None:
    documents = list(yaml.safe_load_all((REPO / "deploy" / "keda-amqp-exec.yaml").read_text()))
    by_kind = {d["kind"]: d for d in documents if d}
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    [trigger] = by_kind["ScaledObject"]["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    consumed = settings(deployment_id=env["CRBR_DEPLOYMENT_ID"]).amqp_exec_queue_name
    assert trigger["metadata"]["queueName"] == consumed
    assert trigger["metadata"]["value"] == env["CRBR_AMQP_EXEC_PREFETCH"]
    assert env["CRBR_AMQP_EXEC_ENABLED"] == "true"
