"""``airtower serve``: tritonserver-compatible flags → ServerOptions → a running server.

The only module that calls ``sys.exit``. Flag names and defaults are tritonserver's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from airtower import __version__
from airtower.errors import TritonError
from airtower.options import DEFAULT_HTTP_MAX_INPUT_SIZE, ServerOptions

logger = logging.getLogger("airtower")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(text: str) -> bool:
    """tritonserver's boolean option values."""
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value '{text}' (expected true or false)")


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port '{text}'") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def parse_non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def parse_backend_config(text: str) -> tuple[str, str, str]:
    """``<backend>,<key>=<value>`` or a global ``<key>=<value>``."""
    backend, _, setting = text.rpartition(",")
    key, sep, value = setting.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--backend-config '{text}' must be <backend>,<setting>=<value>")
    return backend, key, value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line and exit code 2, as the issue asks (argparse prints usage too).
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="airtower", description="A Triton-compatible inference server.")
    parser.add_argument("--version", action="version", version=f"airtower {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    serve = commands.add_parser("serve", help="serve a Triton model repository")
    add_serve_flags(serve)
    return parser


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    flag = parser.add_argument

    def boolean(name: str, default: bool, help_text: str) -> None:
        flag(name, type=parse_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help_text)

    flag("--model-repository", "--model-store", dest="model_repository", action="append", type=Path,
         required=True, metavar="PATH", help="model repository path (repeatable)")  # fmt: skip
    flag("--model-config-name", default="", help="use <model>/configs/<name>.pbtxt when present")
    flag("--id", default="triton", help="identifier reported in server metadata")
    boolean("--strict-readiness", True, "ready only when every model is ready")
    boolean("--exit-on-error", True, "fail start-up when a model fails to load")
    flag("--exit-timeout-secs", type=parse_non_negative, default=30, help="bound on draining at shutdown")
    flag("--disable-auto-complete-config", action="store_true", help="do not complete configs from model files")
    boolean("--strict-model-config", False, "deprecated: same as --disable-auto-complete-config")
    boolean("--allow-http", True, "serve HTTP/REST")
    flag("--http-address", default="0.0.0.0")
    flag("--http-port", type=parse_port, default=8000)
    flag("--http-max-input-size", type=parse_non_negative, default=DEFAULT_HTTP_MAX_INPUT_SIZE)
    boolean("--allow-grpc", True, "serve gRPC (not implemented yet: ignored)")
    flag("--grpc-address", default="0.0.0.0")
    flag("--grpc-port", type=parse_port, default=8001)
    boolean("--allow-metrics", True, "serve Prometheus metrics (not implemented yet: ignored)")
    flag("--metrics-address", default="")
    flag("--metrics-port", type=parse_port, default=8002)
    flag("--log-verbose", type=parse_non_negative, default=0, help="verbose logging level")
    flag("--backend-config", type=parse_backend_config, action="append", default=[], metavar="BACKEND,KEY=VALUE")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    backend_config: dict[str, dict[str, str]] = {}
    for backend, key, value in args.backend_config:
        backend_config.setdefault(backend, {})[key] = value
    return ServerOptions(
        model_repositories=tuple(args.model_repository),
        model_config_name=args.model_config_name,
        server_id=args.id,
        strict_readiness=args.strict_readiness,
        exit_on_error=args.exit_on_error,
        exit_timeout_secs=args.exit_timeout_secs,
        auto_complete_config=not (args.disable_auto_complete_config or args.strict_model_config),
        allow_http=args.allow_http,
        http_address=args.http_address,
        http_port=args.http_port,
        http_max_input_size=args.http_max_input_size,
        allow_grpc=args.allow_grpc,
        grpc_address=args.grpc_address,
        grpc_port=args.grpc_port,
        allow_metrics=args.allow_metrics,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        backend_config=backend_config,
    )


def configure_logging(verbose: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname).1s%(asctime)s.%(msecs)03d %(process)d %(name)s] %(message)s",
        datefmt="%m%d %H:%M:%S",
        stream=sys.stderr,
    )


async def serve(options: ServerOptions) -> int:
    """Run the server until SIGINT/SIGTERM; return the process exit code."""
    from airtower.frontends.http.app import HttpFrontend
    from airtower.server import InferenceServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    server = InferenceServer(options)
    try:
        await server.start()
    except TritonError as exc:
        logger.error("%s", exc.message)
        await server.stop()
        return 1
    http: HttpFrontend | None = None
    if options.allow_http:
        http = HttpFrontend(
            server, host=options.http_address, port=options.http_port, max_input_size=options.http_max_input_size
        )
        try:
            port = await http.start()
        except OSError as exc:
            logger.error("failed to start HTTP service on %s:%d: %s", options.http_address, options.http_port, exc)
            await server.stop()
            return 1
        del port  # the frontend logs "Started HTTPService at <address>:<port>"
    for name, allowed in (("gRPC", options.allow_grpc), ("metrics", options.allow_metrics)):
        if allowed:
            logger.warning("the %s service is not implemented yet; not started", name)
    await stop.wait()
    logger.info("shutting down: no new connections; draining in-flight requests")
    if http is not None:
        await http.stop_accepting()
    await server.stop()
    if http is not None:
        await http.aclose()
    logger.info("server stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    # `airtower --model-repository=...` works like `tritonserver --model-repository=...`
    if arguments and arguments[0].startswith("--") and arguments[0] not in ("--help", "--version"):
        arguments.insert(0, "serve")
    args = parser.parse_args(arguments)
    if args.command != "serve":
        parser.print_help()
        sys.exit(2)
    options = options_from_args(args)
    configure_logging(options.log_verbose)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        code = asyncio.run(serve(options))
    else:
        code = uvloop.run(serve(options))
    sys.exit(code)
