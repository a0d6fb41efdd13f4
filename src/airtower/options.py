"""ServerOptions: every server-level setting, as tritonserver's flags name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airtower.types import ControlMode

#: 64 MiB: tritonserver's default --http-max-input-size.
DEFAULT_HTTP_MAX_INPUT_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Settings for one server. Built by ``cli.py`` or directly by tests."""

    model_repositories: tuple[Path, ...]
    model_config_name: str = ""
    server_id: str = "triton"
    model_control_mode: ControlMode = "none"
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
    allow_metrics: bool = True
    metrics_address: str = ""
    metrics_port: int = 8002
    log_verbose: int = 0
    #: ``--backend-config=<backend>,<key>=<value>``: {backend: {key: value}}; backend "" = global.
    backend_config: dict[str, dict[str, str]] = field(default_factory=dict)

    def backend_settings(self, backend: str) -> dict[str, str]:
        """Global settings overlaid with those given for ``backend``."""
        return {**self.backend_config.get("", {}), **self.backend_config.get(backend, {})}
