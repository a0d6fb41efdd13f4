"""ServerOptions: every server-level setting, as tritonserver's flags name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from airtower.core.cuda import DEFAULT_MIN_COMPUTE_CAPABILITY
from airtower.observability.log_settings import LogSettings
from airtower.scheduling.rate_limiter import ResourceLimit
from airtower.types import ControlMode

#: ``--grpc-infer-response-compression-level`` values.
GrpcCompressionLevel = Literal["none", "low", "medium", "high"]

#: 64 MiB: tritonserver's default --http-max-input-size.
DEFAULT_HTTP_MAX_INPUT_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Settings for one server. Built by ``cli.py`` or directly by tests."""

    model_repositories: tuple[Path, ...]
    #: ``s3://...`` repositories (``--model-repository`` too), localised by the model manager.
    cloud_repositories: tuple[str, ...] = ()
    model_config_name: str = ""
    server_id: str = "triton"
    model_control_mode: ControlMode = "none"
    #: ``--load-model``: models loaded at start-up in explicit mode ("*": all of them).
    load_models: tuple[str, ...] = ()
    repository_poll_secs: int = 15
    model_load_thread_count: int = 4
    strict_readiness: bool = True
    exit_on_error: bool = True
    exit_timeout_secs: int = 30
    auto_complete_config: bool = True
    allow_http: bool = True
    http_address: str = "0.0.0.0"
    http_port: int = 8000
    http_max_input_size: int = DEFAULT_HTTP_MAX_INPUT_SIZE
    allow_grpc: bool = True
    grpc_address: str = "0.0.0.0"
    grpc_port: int = 8001
    grpc_use_ssl: bool = False
    grpc_use_ssl_mutual: bool = False
    grpc_server_cert: str = ""
    grpc_server_key: str = ""
    grpc_root_cert: str = ""
    grpc_infer_response_compression_level: GrpcCompressionLevel = "none"
    #: Keepalive and HTTP/2 ping settings, in milliseconds where they are times (tritonserver's defaults).
    grpc_keepalive_time: int = 7_200_000
    grpc_keepalive_timeout: int = 20_000
    grpc_keepalive_permit_without_calls: bool = False
    grpc_http2_max_pings_without_data: int = 2
    grpc_http2_min_recv_ping_interval_without_data: int = 300_000
    grpc_http2_max_ping_strikes: int = 2
    reuse_grpc_port: bool = False
    reuse_http_port: bool = False
    #: ``--grpc-max-connection-age(-grace)`` in milliseconds; None leaves grpc's default (no limit).
    grpc_max_connection_age: int | None = None
    grpc_max_connection_age_grace: int | None = None
    allow_metrics: bool = True
    metrics_address: str = ""
    metrics_port: int = 8002
    #: ``--allow-cpu-metrics`` (nv_cpu_* gauges from /proc), ``--metrics-interval-ms`` (their refresh
    #: period) and ``--metrics-config <key>=<value>`` pairs, in the order given.
    allow_cpu_metrics: bool = True
    metrics_interval_ms: float = 2000.0
    metrics_config: tuple[tuple[str, str], ...] = ()
    log_verbose: int = 0
    #: ``--log-info/--log-warning/--log-error/--log-verbose/--log-format/--log-file``.
    log_settings: LogSettings = field(default_factory=LogSettings)
    #: ``--trace-config=[<mode>,]<key>=<value>``: (mode, key, value) triples.
    trace_config: tuple[tuple[str, str, str], ...] = ()
    #: ``--cache-config=<cache>,<key>=<value>``: (cache, key, value) triples.
    cache_config: tuple[tuple[str, str, str], ...] = ()
    #: ``--rate-limit``: "off" or "execution_count"; ``--rate-limit-resource`` amounts.
    rate_limit: Literal["off", "execution_count"] = "off"
    rate_limit_resources: tuple[ResourceLimit, ...] = ()
    #: ``--min-supported-compute-capability``: GPUs below it are not used.
    min_supported_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY
    #: ``--backend-config=<backend>,<key>=<value>``: {backend: {key: value}}; backend "" = global.
    backend_config: dict[str, dict[str, str]] = field(default_factory=dict)

    def backend_settings(self, backend: str) -> dict[str, str]:
        """Global settings overlaid with those given for ``backend``."""
        return {**self.backend_config.get("", {}), **self.backend_config.get(backend, {})}
