"""The ``voicemesh`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from voicemesh import __version__
from voicemesh.settings import add_arguments, from_namespace

# Service name -> module with ``Settings`` (a settings dataclass) and either ``create(settings)`` (a gRPC
# service run by the shared runtime) or ``run(settings)`` (a server of its own, such as the HTTP gateway).
SERVICES = {
    "stt": "voicemesh.services.stt.server",
    "llm": "voicemesh.services.llm.server",
    "tts": "voicemesh.services.tts.server",
    "realtime": "voicemesh.services.realtime.server",
    "avatar": "voicemesh.services.avatar.server",
    "orchestrator": "voicemesh.orchestrator.server",
    "gateway": "voicemesh.gateway.server",
    "wyoming": "voicemesh.edges.wyoming.server",
    "twilio": "voicemesh.edges.twilio.server",
}


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="run one service of the mesh",
        description="Run one VoiceMesh service as a gRPC server (health, reflection and metrics included). "
        "Every flag can also be set with a VOICEMESH_* environment variable.",
    )
    kinds = serve.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for name, module_name in SERVICES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not module_name.startswith(exc.name):
                raise
            continue  # service not built yet
        sub = kinds.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0], description=module.__doc__)
        add_arguments(sub, module.Settings)
        if _model_service(module):
            from voicemesh.runtime.service import add_backend_arguments

            add_backend_arguments(sub, name)  # each registered backend's own settings, plugins' included
        sub.set_defaults(handler=_run_service, module=module)


def _model_service(module) -> bool:
    """Whether a service module is a model service (stt, llm, tts, realtime), whose flags include its backends'."""
    from voicemesh.runtime.service import ModelServiceSettings

    return issubclass(module.Settings, ModelServiceSettings)


def _run_service(args: argparse.Namespace) -> int:
    from voicemesh.runtime.server import run

    try:
        settings = from_namespace(args.module.Settings, args)
    except ValueError as exc:  # a setting out of its range: a usage error, before any model loads
        print(f"voicemesh serve {args.service}: error: {exc}", file=sys.stderr)
        return 2
    if _model_service(args.module):
        from voicemesh.runtime.service import backend_settings
        from voicemesh.targets import Allowlist

        settings.backend_settings = backend_settings(args, args.service)
        try:
            Allowlist.parse(settings.allowed_base_urls)
        except ValueError as exc:  # a usage error, before any model loads
            print(f"voicemesh serve {args.service}: error: --allowed-base-urls: {exc}", file=sys.stderr)
            return 2
    if hasattr(args.module, "run"):
        return args.module.run(settings)
    return run(args.module.create(settings), settings)


def _add_describe(commands: argparse._SubParsersAction) -> None:
    describe = commands.add_parser(
        "describe",
        help="list the models and capabilities of a running service",
        description="Call Describe on every VoiceMesh service found (by reflection) at ADDRESS and print its "
        "models, languages, voices, sample rates and capability flags.",
    )
    describe.add_argument("address", metavar="ADDRESS", help="host:port of a running service")
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the service (default 10)")
    describe.add_argument("--api-key", default=None, help="API key for servers with auth on (default "
                          "$VOICEMESH_API_KEY, else the key file `voicemesh up` writes in ~/.voicemesh)")
    describe.set_defaults(handler=_describe)


def _describe(args: argparse.Namespace) -> int:
    from voicemesh.client.describe import describe_address, format_description

    try:
        descriptions = describe_address(args.address, timeout=args.timeout, api_key=args.api_key)
    except Exception as exc:  # shown to a person, not re-raised
        print(f"voicemesh describe: {exc}", file=sys.stderr)
        return 1
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps([MessageToDict(d) for d in descriptions], indent=2))
    else:
        for description in descriptions:
            print(format_description(description))
    return 0


def _add_health(commands: argparse._SubParsersAction) -> None:
    health = commands.add_parser(
        "health",
        help="exit 0 if a service reports SERVING",
        description="Query grpc.health.v1 at ADDRESS; print the status and exit 0 only when it is SERVING "
        "(for container health checks).",
    )
    health.add_argument("address", metavar="ADDRESS", help="host:port of a running service")
    health.add_argument("--service", default="", help="service name to check (default: the whole server)")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    health.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    from voicemesh.client.describe import health_status

    try:
        status = health_status(args.address, service=args.service, timeout=args.timeout)
    except Exception as exc:  # shown to a person, not re-raised
        print(f"voicemesh health: {exc}", file=sys.stderr)
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicemesh",
        description="VoiceMesh: a self-hostable mesh of gRPC model services (STT, LLM, TTS, realtime) "
        "chained by an orchestrator into spoken conversations.",
    )
    parser.add_argument("--version", action="version", version=f"voicemesh {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_describe(commands)
    _add_health(commands)
    for extra in ("voicemesh.commands", "voicemesh.metering.cli", "voicemesh.client.model_list"):
        try:
            importlib.import_module(extra).add_commands(commands)
        except ModuleNotFoundError as exc:
            if exc.name != extra:
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
