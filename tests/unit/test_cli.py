from __future__ import annotations

from pathlib import Path

import pytest

from airtower.cli import build_parser, options_from_args


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return options_from_args(build_parser().parse_args(["serve", *argv]))


def test_cli_takes_tritonserver_flags() -> None:
    options = parse(
        "--model-repository", "/a", "--model-repository=/b", "--http-port", "9000", "--strict-readiness=false",
        "--exit-on-error", "false", "--disable-auto-complete-config", "--id", "edge", "--backend-config",
        "python,shm-default-byte-size=1", "--backend-config", "default-max-batch-size=8",
    )  # fmt: skip
    assert options.model_repositories == (Path("/a"), Path("/b"))
    assert options.http_port == 9000
    assert options.strict_readiness is False
    assert options.exit_on_error is False
    assert options.auto_complete_config is False
    assert options.server_id == "edge"
    assert options.backend_settings("python") == {"shm-default-byte-size": "1", "default-max-batch-size": "8"}


def test_cli_strict_model_config_disables_auto_complete() -> None:
    assert parse("--model-repository", "/a", "--strict-model-config=true").auto_complete_config is False
    assert parse("--model-repository", "/a").auto_complete_config is True


@pytest.mark.parametrize(
    "argv",
    [
        ["--model-repository", "/a", "--http-port", "70000"],
        ["--model-repository", "/a", "--strict-readiness", "maybe"],
        ["--http-port", "8000"],
        ["--model-repository", "/a", "--no-such-flag"],
    ],
)
def test_cli_bad_flag_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("airtower: error:") or "error:" in err


def test_cli_takes_tritonserver_s_deprecated_trace_flags() -> None:
    from airtower.observability.trace import parse_trace_config

    options = parse(
        "--model-repository", "/a", "--trace-file", "/tmp/t.json", "--trace-level", "TIMESTAMPS", "--trace-level",
        "TENSORS", "--trace-rate", "7", "--trace-count", "3", "--trace-log-frequency", "2", "--trace-config", "rate=9",
    )  # fmt: skip
    settings = parse_trace_config(list(options.trace_config))
    assert (settings.file, settings.level, settings.count, settings.log_frequency) == (
        "/tmp/t.json", ("TIMESTAMPS", "TENSORS"), 3, 2
    )  # fmt: skip
    assert settings.rate == 9  # --trace-config, the current flag, wins


def test_cli_accepts_tritonserver_s_resource_flags() -> None:
    # A tritonserver command line from a GPU deployment starts airtower unchanged.
    options = parse(
        "--model-repository", "/a", "--allow-gpu-metrics=false", "--backend-directory=/opt/tritonserver/backends",
        "--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0", "--http-thread-count=8",
        "--min-supported-compute-capability=6.0", "--model-load-retry-count=2", "--enable-peer-access=false",
        "--response-cache-byte-size=1048576", "--reuse-http-port=true", "--grpc-max-connection-age=60000",
        "--grpc-max-connection-age-grace=5000",
    )  # fmt: skip
    assert options.cache_config == (("local", "size", "1048576"),)  # the deprecated cache flag still works
    assert options.reuse_http_port is True
    assert (options.grpc_max_connection_age, options.grpc_max_connection_age_grace) == (60000, 5000)
