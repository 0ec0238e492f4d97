"""Call a running deployment over RabbitMQ and over HTTP with `metatwin_functions.client`.

Serve the examples with the execution queue on, then run this:

    CRBR_DEPLOYMENT_ID=dep-42 CRBR_AMQP_EXEC_ENABLED=true CRBR_RABBITMQ_HOSTNAME=127.0.0.1 \\
    CRBR_RABBITMQ_USERNAME=guest CRBR_RABBITMQ_PASSWORD=guest \\
        metatwin-functions serve examples.simple_function
    python examples/amqp_client.py --deployment-id dep-42
"""

from __future__ import annotations

import argparse
import asyncio

from metatwin_functions.client import AmqpFunctionClient, HttpFunctionClient


async def main(broker: str, deployment_id: str, exchange: str, url: str) -> None:
    async with AmqpFunctionClient(
        broker, deployment_id=deployment_id, exchange=exchange, timeout=30
    ) as client:
        # Calls run concurrently; each is answered once its replica is done with it.
        answers = await asyncio.gather(
            *(client.call("add_numbers", {"a": i, "b": 1}) for i in range(100))
        )
        print("amqp:", [answer.result for answer in answers][:5])
        failed = await client.call("divide", {"a": 1, "b": 0})
        print("amqp:", failed.success, failed.error_kind, failed.error)
    answer = await HttpFunctionClient(url).call("multiply", {"x": 2, "y": 4})
    print("http:", answer.success, answer.result, answer.status)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1/")
    parser.add_argument("--deployment-id", default="local-dev")
    parser.add_argument("--exchange", default="event.exchange")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    options = parser.parse_args()
    asyncio.run(main(options.amqp, options.deployment_id, options.exchange, options.url))
