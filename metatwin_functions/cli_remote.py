"""``metatwin-functions call --url URL NAME key=value ...`` and ``call --amqp URL NAME ...``:
call a running deployment through `metatwin_functions.client` and print its answer."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from .client import AmqpFunctionClient, FunctionResponse, HttpFunctionClient
from .errors import ConfigurationError
from .settings import load_settings

__all__ = ["add_remote_arguments", "amqp_target", "call_remote", "parse_arguments"]


def add_remote_arguments(call: argparse.ArgumentParser) -> None:
    """The options of a remote call on the ``call`` subcommand."""
    remote = call.add_argument_group(
        "calling a running deployment (then the positionals are NAME [key=value ...])"
    )
    target = remote.add_mutually_exclusive_group()
    target.add_argument("--url", help="the deployment's base URL, e.g. http://127.0.0.1:8000")
    target.add_argument("--amqp", help="the broker, e.g. amqp://guest:guest@127.0.0.1/")
    remote.add_argument(
        "--deployment-id",
        help="AMQP: the deployment to call (default: CRBR_DEPLOYMENT_ID, from the environment "
        "or .env, else local-dev)",
    )
    remote.add_argument(
        "--exchange",
        help="AMQP: the exchange (default: CRBR_RABBITMQ_EXCHANGE, from the environment or .env, "
        "else event.exchange)",
    )
    remote.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    remote.add_argument("--execution-id", help="the executionId (default: a new UUID)")
    remote.add_argument("--version", dest="function_version", help="the function version")
    remote.add_argument("--api-key", help="HTTP: sent as X-API-Key")
    remote.add_argument("--token", help="HTTP: sent as Authorization: Bearer TOKEN")


def parse_arguments(pairs: Sequence[str], json_args: str) -> dict[str, Any]:
    """``key=value`` pairs over ``--args``: a value that is JSON (``3``, ``true``, ``[1]``,
    ``"3"``) is taken as such, any other value as a string."""
    try:
        arguments = json.loads(json_args)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --args is not valid JSON: {exc}") from exc
    if not isinstance(arguments, dict):
        raise SystemExit("error: --args must be a JSON object")
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {pair!r} is not key=value")
        try:
            arguments[key] = json.loads(text)
        except json.JSONDecodeError:
            arguments[key] = text
    return arguments


def amqp_target(args: argparse.Namespace) -> tuple[str, str]:
    """The deployment id and exchange of ``call --amqp``: the options, else the settings.

    The settings are read as ``serve`` reads them (the environment, then ``.env``), so a call
    from a project directory reaches the deployment configured there.
    """
    deployment_id: str | None = args.deployment_id
    exchange: str | None = args.exchange
    if deployment_id is None or exchange is None:
        try:
            settings = load_settings()
        except ConfigurationError as exc:
            raise SystemExit(
                f"error: {exc} (or give --deployment-id and --exchange explicitly)"
            ) from exc
        deployment_id = deployment_id or settings.deployment_id
        exchange = exchange or settings.rabbitmq_exchange
    return deployment_id, exchange


def call_remote(args: argparse.Namespace) -> int:
    """Call, print the answer as JSON; 0 on success, 1 when the call failed."""
    if not args.modules:
        raise SystemExit("error: give the function's NAME")
    name, *pairs = args.modules
    arguments = parse_arguments(pairs, args.args)
    response = asyncio.run(_call(args, name, arguments))
    print(
        json.dumps(
            {
                "success": response.success,
                "result": response.result,
                "error": response.error,
                "metadata": response.metadata,
            },
            indent=2,
        )
    )
    return 0 if response.success else 1


async def _call(args: argparse.Namespace, name: str, arguments: dict[str, Any]) -> FunctionResponse:
    options: dict[str, Any] = {
        "execution_id": args.execution_id,
        "version": args.function_version,
    }
    if args.url:
        http = HttpFunctionClient(
            args.url, api_key=args.api_key, bearer=args.token, timeout=args.timeout
        )
        return await http.call(name, arguments, **options)
    deployment_id, exchange = amqp_target(args)
    async with AmqpFunctionClient(
        args.amqp,
        deployment_id=deployment_id,
        exchange=exchange,
        timeout=args.timeout,
    ) as amqp:
        return await amqp.call(name, arguments, **options)
