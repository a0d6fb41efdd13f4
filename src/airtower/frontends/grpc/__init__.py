"""The gRPC frontend: Triton's ``inference.GRPCInferenceService`` and ``grpc.health.v1.Health`` on grpc.aio.

``server.py`` owns the grpc.aio server (ports, TLS, keepalive, message limits, shutdown);
``servicer.py`` has one method per RPC, each a thin parse → ``InferenceServer`` → encode;
``codec.py`` turns protobuf messages into core types and back; ``errors.py`` is the one table
from Triton error codes to gRPC status codes.
"""

from __future__ import annotations
