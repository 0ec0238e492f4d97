"""Command line: ``metatwin-functions serve|describe|call MODULE...`` and ``diff OLD NEW``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .envelope import ExecRequest
from .errors import MetaTwinFunctionsError
from .loader import ModuleLoadError, load
from .registry import default_registry

__all__ = ["main"]


def _import_modules(targets: Sequence[str]) -> None:
    """Import every module (name or path); having no ``@Function`` at all is an error."""
    for target in targets:
        try:
            load(target)
        except ModuleLoadError as exc:
            raise SystemExit(f"error: {exc}") from None
    if len(default_registry) == 0:
        raise SystemExit(
            f"error: no @Function found in {', '.join(targets)}: decorate functions with "
            "@Function (from metatwin_functions import Function); functions registered on "
            "a FunctionRegistry of your own are not served by the command line"
        )


def _serve(args: argparse.Namespace) -> int:
    from .app import FunctionServer
    from .settings import load_settings

    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["functions_host"] = args.host
    if args.port is not None:
        overrides["functions_port"] = args.port
    if args.server is not None:
        overrides["functions_server"] = args.server
    FunctionServer(settings=load_settings(**overrides)).start()
    return 0


def _describe(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(_description(), indent=2, sort_keys=False))
        return 0
    from .catalog import functions_catalog

    print(json.dumps(functions_catalog(default_registry), indent=2))
    return 0


def _description() -> dict[str, Any]:
    from .describe import describe_registry
    from .settings import load_settings

    return describe_registry(default_registry, load_settings().deployment_id)


def _diff(args: argparse.Namespace) -> int:
    from .diff import diff_descriptions

    sources = [args.old, args.new]
    modules = [source for source in sources if not _is_description_file(source)]
    try:
        if len(modules) > 1:
            raise SystemExit("error: compare a module against a saved 'describe --json' file")
        if modules:
            _import_modules(modules)
        old, new = (
            _description() if source in modules else _read_description(source) for source in sources
        )
        try:
            changes = diff_descriptions(old, new)
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from exc
    except SystemExit as exc:
        # Exit 1 means "breaking"; input that cannot be read is another answer.
        print(exc.code, file=sys.stderr)
        return 2
    for change in changes:
        print(change)
    breaking = sum(change.breaking for change in changes)
    print(
        f"{breaking} breaking change(s)"
        if breaking
        else f"no breaking change ({len(changes)} compatible change(s))"
    )
    return 1 if breaking else 0


def _is_description_file(source: str) -> bool:
    return os.path.isfile(source) and not source.endswith(".py")


def _read_description(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read description '{path}': {exc}") from exc


def _call(args: argparse.Namespace) -> int:
    if args.url or args.amqp:
        from .cli_remote import call_remote

        return call_remote(args)
    from .invocation import Invoker
    from .settings import load_settings

    if args.function is None:  # a usage error, like argparse's own (exit status 2)
        print(
            "error: --function is required (or call a running deployment: --url / --amqp)",
            file=sys.stderr,
        )
        raise SystemExit(2)

    try:
        call_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --args is not valid JSON: {exc}") from exc
    if not isinstance(call_args, dict):
        raise SystemExit("error: --args must be a JSON object")
    invoker = Invoker(default_registry, load_settings())
    try:
        outcome = asyncio.run(invoker.invoke(ExecRequest("cli", args.function, call_args)))
    finally:
        invoker.close()
    print(json.dumps(json.loads(outcome.body), indent=2))
    return 0 if outcome.status == "success" else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    parser = argparse.ArgumentParser(
        prog="metatwin-functions",
        description="Serve, describe or call the @Function functions of Python modules.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the modules' functions over HTTP")
    serve.add_argument(
        "modules", nargs="+", help="modules or files to import, e.g. examples.simple_function"
    )
    serve.add_argument("--host", help="bind host (default: CRBR_FUNCTIONS_HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="bind port (default: CRBR_FUNCTIONS_PORT or 8000)")
    serve.add_argument(
        "--server",
        choices=("hypercorn", "uvicorn"),
        help="HTTP server (default: CRBR_FUNCTIONS_SERVER or hypercorn; uvicorn needs the "
        "[uvicorn] extra)",
    )
    serve.set_defaults(handler=_serve)

    describe = commands.add_parser("describe", help="print the functions as the platform sees them")
    describe.add_argument("modules", nargs="+")
    describe.add_argument(
        "--json",
        action="store_true",
        help="the stable description (argument schemas, versions) that 'diff' compares",
    )
    describe.set_defaults(handler=_describe)

    diff = commands.add_parser(
        "diff",
        help="compare two descriptions; exit 1 on a breaking change",
        description="Compare OLD with NEW, each a 'describe --json' file or a module (one of "
        "them a file). Prints every change; exits 1 if one breaks callers of OLD, 2 if an "
        "input cannot be read.",
    )
    diff.add_argument("old", help="the deployed description (file) or module")
    diff.add_argument("new", help="the new description (file) or module")
    diff.set_defaults(handler=_diff, modules=[])

    call = commands.add_parser(
        "call",
        help="call one function and print the response: in-process (MODULE... --function NAME) "
        "or of a running deployment (--url URL | --amqp URL, then NAME key=value ...)",
    )
    call.add_argument("modules", nargs="+", metavar="MODULE | NAME key=value")
    call.add_argument("--function", "-f", help="in-process: the function's name")
    call.add_argument("--args", "-a", default="{}", help="arguments as a JSON object")
    from .cli_remote import add_remote_arguments

    add_remote_arguments(call)
    call.set_defaults(handler=_call)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``metatwin-functions`` and ``python -m metatwin_functions``."""
    args = build_parser().parse_args(argv)
    try:
        remote = getattr(args, "url", None) or getattr(args, "amqp", None)
        if args.modules and not remote:  # diff imports its module side itself
            _import_modules(args.modules)
        code: int = args.handler(args)
    except MetaTwinFunctionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code
