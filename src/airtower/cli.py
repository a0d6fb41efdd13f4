"""``airtower serve``: tritonserver-compatible flags → ServerOptions → a running server.

The only module that calls ``sys.exit``. Flag names and defaults are tritonserver's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from airtower import __version__, shared_loop
from airtower.core.cuda import DEFAULT_MIN_COMPUTE_CAPABILITY
from airtower.errors import TritonError
from airtower.models.response_cache import CacheConfig
from airtower.observability import log_settings
from airtower.observability.trace import parse_trace_config
from airtower.options import DEFAULT_HTTP_MAX_INPUT_SIZE, ServerOptions
from airtower.repository.cloud import is_cloud
from airtower.scheduling.rate_limiter import ResourceLimit, parse_resource_limit

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


def parse_rate_limit_resource(text: str) -> ResourceLimit:
    try:
        return parse_resource_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_metrics_setting(text: str) -> tuple[str, str]:
    """``--metrics-config <setting>=<value>``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--metrics-config '{text}' must be <setting>=<value>")
    return key, value


def parse_interval_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def parse_positive(text: str) -> int:
    value = parse_non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def parse_backend_config(text: str) -> tuple[str, str, str]:
    """``<backend>,<key>=<value>`` or a global ``<key>=<value>``."""
    backend, _, setting = text.rpartition(",")
    key, sep, value = setting.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--backend-config '{text}' must be <backend>,<setting>=<value>")
    return backend, key, value


def parse_trace_setting(text: str) -> tuple[str, str, str]:
    """One ``--trace-config`` (``[<mode>,]<key>=<value>``), checked."""
    setting = parse_backend_config(text)
    try:
        parse_trace_config([setting])
    except TritonError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return setting


def parse_cache_config(text: str) -> tuple[str, str, str]:
    """``local,size=<bytes>`` (the only cache airtower has)."""
    cache, key, value = parse_backend_config(text)
    try:
        CacheConfig.parse([(cache, key, value)])
    except TritonError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return cache, key, value


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

    flag("--model-repository", "--model-store", dest="model_repository", action="append",
         required=True, metavar="PATH", help="model repository path (repeatable)")  # fmt: skip
    flag("--model-config-name", default="", help="use <model>/configs/<name>.pbtxt when present")
    flag("--model-control-mode", choices=("none", "poll", "explicit"), default="none",
         help="none: load all at start; poll: follow the repositories; explicit: load/unload on request")  # fmt: skip
    flag("--load-model", action="append", default=[], metavar="NAME", help="explicit mode: load at start (* = all)")
    flag("--repository-poll-secs", type=parse_non_negative, default=15, help="poll mode: seconds between scans")
    flag("--model-load-thread-count", type=parse_positive, default=4, help="models loaded at the same time")
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
    boolean("--allow-grpc", True, "serve gRPC")
    flag("--grpc-address", default="0.0.0.0")
    flag("--grpc-port", type=parse_port, default=8001)
    boolean("--grpc-use-ssl", False, "serve gRPC over TLS (needs --grpc-server-cert and --grpc-server-key)")
    boolean("--grpc-use-ssl-mutual", False, "serve gRPC over mutual TLS (clients need a cert signed by the root)")
    flag("--grpc-server-cert", default="", metavar="PEM", help="server certificate chain")
    flag("--grpc-server-key", default="", metavar="PEM", help="server private key")
    flag("--grpc-root-cert", default="", metavar="PEM", help="root certificate that client certificates chain to")
    flag("--grpc-infer-response-compression-level", choices=("none", "low", "medium", "high"), default="none")
    flag("--grpc-keepalive-time", type=parse_non_negative, default=7_200_000, metavar="MS")
    flag("--grpc-keepalive-timeout", type=parse_non_negative, default=20_000, metavar="MS")
    boolean("--grpc-keepalive-permit-without-calls", False, "allow keepalive pings without an RPC in flight")
    flag("--grpc-http2-max-pings-without-data", type=parse_non_negative, default=2)
    flag("--grpc-http2-min-recv-ping-interval-without-data", type=parse_non_negative, default=300_000, metavar="MS")
    flag("--grpc-http2-max-ping-strikes", type=parse_non_negative, default=2)
    boolean("--reuse-grpc-port", False, "let several servers bind the gRPC port (SO_REUSEPORT)")
    boolean("--allow-metrics", True, "serve Prometheus metrics")
    boolean("--allow-cpu-metrics", True, "report CPU utilisation and memory (nv_cpu_*)")
    flag("--metrics-address", default="", help="default: the HTTP address")
    flag("--metrics-port", type=parse_port, default=8002)
    flag("--metrics-interval-ms", type=parse_interval_ms, default=2000.0, metavar="MS",
         help="how often CPU metrics are refreshed")  # fmt: skip
    flag("--metrics-config", type=parse_metrics_setting, action="append", default=[], metavar="SETTING=VALUE",
         help="counter_latencies, summary_latencies, summary_quantiles (repeatable)")  # fmt: skip
    flag("--log-verbose", type=parse_non_negative, default=0, help="verbose logging level")
    boolean("--log-info", True, "log INFO records")
    boolean("--log-warning", True, "log WARNING records")
    boolean("--log-error", True, "log ERROR records")
    flag("--log-format", choices=("default", "ISO8601"), default="default", help="log line format")
    flag("--log-file", default="", metavar="PATH", help="write the log to this file instead of stderr")
    flag("--trace-config", type=parse_trace_setting, action="append", default=[], metavar="[MODE,]KEY=VALUE",
         help="tracing: triton,file=<path>, level=TIMESTAMPS, rate=N, count=N, log-frequency=N")  # fmt: skip
    # tritonserver's deprecated spellings of --trace-config, still accepted by 2.51.
    flag("--trace-file", metavar="PATH", help="DEPRECATED: --trace-config triton,file=<path>")
    flag("--trace-level", action="append", default=[], choices=("OFF", "TIMESTAMPS", "TENSORS"),
         help="DEPRECATED: --trace-config level=<level> (repeatable)")  # fmt: skip
    flag("--trace-rate", type=int, help="DEPRECATED: --trace-config rate=<N>")
    flag("--trace-count", type=int, help="DEPRECATED: --trace-config count=<N>")
    flag("--trace-log-frequency", type=parse_non_negative, help="DEPRECATED: --trace-config triton,log-frequency=<N>")
    flag("--response-cache-byte-size", type=parse_non_negative, help="DEPRECATED: --cache-config local,size=<N>")
    boolean("--reuse-http-port", False, "let several servers bind the HTTP port (SO_REUSEPORT)")
    flag("--grpc-max-connection-age", type=parse_non_negative, metavar="MS", help="maximum age of a gRPC channel")
    flag("--grpc-max-connection-age-grace", type=parse_non_negative, metavar="MS",
         help="grace period after a channel reached its maximum age")  # fmt: skip
    # tritonserver's resource and GPU tuning flags: accepted so that its command lines start airtower
    # unchanged; they tune what airtower does not have (backend shared libraries, pinned/CUDA memory
    # pools, HTTP worker threads, GPU peers) and have no effect (docs/compatibility.md).
    no_effect = "accepted for compatibility with tritonserver; no effect in airtower"
    boolean("--allow-gpu-metrics", True, no_effect)
    for name in ("--backend-directory", "--repoagent-directory", "--cache-directory", "--host-policy"):
        flag(name, action="append", default=[], help=no_effect)
    for name in ("--http-thread-count", "--pinned-memory-pool-byte-size", "--buffer-manager-thread-count",
                 "--model-load-retry-count", "--grpc-infer-allocation-pool-size", "--cuda-virtual-address-size",
                 "--model-load-gpu-limit"):  # fmt: skip
        flag(name, action="append", default=[], help=no_effect)
    flag("--cuda-memory-pool-byte-size", action="append", default=[], metavar="DEVICE:BYTES", help=no_effect)
    boolean("--enable-peer-access", True, no_effect)
    flag("--cache-config", type=parse_cache_config, action="append", default=[], metavar="CACHE,KEY=VALUE",
         help="response cache settings, e.g. local,size=1048576")  # fmt: skip
    flag("--rate-limit", choices=("off", "execution_count"), default="off",
         help="execution_count: instances execute only while they hold their rate_limiter resources")  # fmt: skip
    flag("--rate-limit-resource", type=parse_rate_limit_resource, action="append", default=[],
         metavar="NAME:COUNT[:DEVICE]", help="amount of a rate limiter resource (repeatable)")  # fmt: skip
    flag("--min-supported-compute-capability", type=float, default=DEFAULT_MIN_COMPUTE_CAPABILITY, metavar="X.Y",
         help="GPUs of a lower CUDA compute capability are not used")  # fmt: skip
    flag("--backend-config", type=parse_backend_config, action="append", default=[], metavar="BACKEND,KEY=VALUE")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    backend_config: dict[str, dict[str, str]] = {}
    for backend, key, value in args.backend_config:
        backend_config.setdefault(backend, {})[key] = value
    return ServerOptions(
        model_repositories=tuple(Path(path) for path in args.model_repository if not is_cloud(path)),
        cloud_repositories=tuple(path for path in args.model_repository if is_cloud(path)),
        model_config_name=args.model_config_name,
        model_control_mode=args.model_control_mode,
        load_models=tuple(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        model_load_thread_count=args.model_load_thread_count,
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
        grpc_use_ssl=args.grpc_use_ssl,
        grpc_use_ssl_mutual=args.grpc_use_ssl_mutual,
        grpc_server_cert=args.grpc_server_cert,
        grpc_server_key=args.grpc_server_key,
        grpc_root_cert=args.grpc_root_cert,
        grpc_infer_response_compression_level=args.grpc_infer_response_compression_level,
        grpc_keepalive_time=args.grpc_keepalive_time,
        grpc_keepalive_timeout=args.grpc_keepalive_timeout,
        grpc_keepalive_permit_without_calls=args.grpc_keepalive_permit_without_calls,
        grpc_http2_max_pings_without_data=args.grpc_http2_max_pings_without_data,
        grpc_http2_min_recv_ping_interval_without_data=args.grpc_http2_min_recv_ping_interval_without_data,
        grpc_http2_max_ping_strikes=args.grpc_http2_max_ping_strikes,
        reuse_grpc_port=args.reuse_grpc_port,
        reuse_http_port=args.reuse_http_port,
        grpc_max_connection_age=args.grpc_max_connection_age,
        grpc_max_connection_age_grace=args.grpc_max_connection_age_grace,
        allow_metrics=args.allow_metrics,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        allow_cpu_metrics=args.allow_cpu_metrics,
        metrics_interval_ms=args.metrics_interval_ms,
        metrics_config=tuple(args.metrics_config),
        log_verbose=args.log_verbose,
        log_settings=log_settings.LogSettings(
            log_file=args.log_file,
            log_info=args.log_info,
            log_warning=args.log_warning,
            log_error=args.log_error,
            log_verbose_level=args.log_verbose,
            log_format=args.log_format,
        ),
        backend_config=backend_config,
        cache_config=((("local", "size", str(args.response_cache_byte_size)),) if args.response_cache_byte_size else ())
        + tuple(args.cache_config),
        trace_config=tuple(_deprecated_trace_flags(args)) + tuple(args.trace_config),
        rate_limit=args.rate_limit,
        rate_limit_resources=tuple(args.rate_limit_resource),
        min_supported_compute_capability=args.min_supported_compute_capability,
    )


def _deprecated_trace_flags(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """``--trace-file`` and friends as ``--trace-config`` triples (the newer flag wins: it comes later)."""
    settings: list[tuple[str, str, str]] = []
    replacements = {"trace_file": "triton,file=<filepath>", "trace_level": "level=<OFF|TIMESTAMPS|TENSORS>",
                    "trace_rate": "rate=<rate value>", "trace_count": "count=<count value>",
                    "trace_log_frequency": "triton,log-frequency=<value>"}  # fmt: skip
    for attribute, replacement in replacements.items():
        if getattr(args, attribute) not in (None, []):
            flag = "--" + attribute.replace("_", "-")
            print(  # as tritonserver warns, before logging is set up
                f"Warning: '{flag}' has been deprecated and will be removed in future releases. Please use "
                f"'--trace-config {replacement} instead.",
                file=sys.stderr,
            )
    if args.trace_file is not None:
        settings.append(("triton", "file", args.trace_file))
    settings += [("", "level", level) for level in args.trace_level]
    if args.trace_rate is not None:
        settings.append(("", "rate", str(args.trace_rate)))
    if args.trace_count is not None:
        settings.append(("", "count", str(args.trace_count)))
    if args.trace_log_frequency is not None:
        settings.append(("triton", "log-frequency", str(args.trace_log_frequency)))
    return settings


def configure_logging(options: ServerOptions) -> None:
    log_settings.apply(options.log_settings)


async def serve(options: ServerOptions) -> int:
    """Run the server until SIGINT/SIGTERM; return the process exit code."""
    from airtower.frontends.grpc.server import GrpcFrontend
    from airtower.frontends.http.app import HttpFrontend
    from airtower.frontends.metrics_http import MetricsFrontend
    from airtower.observability.metrics import MetricsConfig
    from airtower.server import InferenceServer

    try:
        metrics_config = MetricsConfig.from_settings(
            options.metrics_config, cpu_metrics=options.allow_cpu_metrics, interval_ms=options.metrics_interval_ms
        )
    except TritonError as exc:
        logger.error("%s", exc.message)
        return 1

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    shared = shared_loop.of(loop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        if shared is not None:  # the loop may run on another thread: uvloop's handlers would not fire
            shared.add_signal_handler(sig, stop.set)
        else:
            loop.add_signal_handler(sig, stop.set)

    try:
        server = InferenceServer(options)
    except TritonError as exc:  # e.g. a trace mode whose package is not installed
        logger.error("%s", exc.message)
        return 1
    try:
        await server.start()
    except TritonError as exc:
        logger.error("%s", exc.message)
        await server.stop()
        return 1
    # Everything loaded so far (frameworks, models) lives as long as the server: keep it out of
    # the collector's full passes, so that serving does not pay for traversing it.
    gc.freeze()
    frontends: list[HttpFrontend | GrpcFrontend] = []
    if options.allow_http:
        frontends.append(
            HttpFrontend(
                server,
                host=options.http_address,
                port=options.http_port,
                max_input_size=options.http_max_input_size,
                reuse_port=options.reuse_http_port,
            )
        )
    if options.allow_grpc:
        frontends.append(GrpcFrontend(server, options))
    for frontend in frontends:
        try:
            await frontend.start()  # each logs "Started <Service> at <address>:<port>"
        except OSError as exc:
            name, address, port = (
                ("HTTP", options.http_address, options.http_port)
                if isinstance(frontend, HttpFrontend)
                else ("GRPC", options.grpc_address, options.grpc_port)
            )
            logger.error("failed to start %s service on %s:%d: %s", name, address, port, exc)
            for started in frontends:
                await started.aclose()
            await server.stop()
            return 1
    metrics: MetricsFrontend | None = None
    if options.allow_metrics:
        address = options.metrics_address or options.http_address
        metrics = MetricsFrontend(server, metrics_config, address, options.metrics_port)
        try:
            await metrics.start()  # logs "Started Metrics Service at <address>:<port>"
        except OSError as exc:
            logger.error("failed to start Metrics service on %s:%d: %s", address, options.metrics_port, exc)
            for started in frontends:
                await started.aclose()
            await server.stop()
            return 1
    await stop.wait()
    logger.info("shutting down: no new connections; draining in-flight requests")
    for frontend in frontends:
        await frontend.stop_accepting()
    await server.stop()
    for frontend in frontends:
        await frontend.aclose()
    if metrics is not None:  # readable while requests drained
        await metrics.aclose()
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
    configure_logging(options)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        code = asyncio.run(serve(options))
    else:
        code = shared_loop.SharedLoop(uvloop.new_event_loop()).run(serve(options))
    sys.exit(code)
