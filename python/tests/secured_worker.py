"""A worker serving TLS (tests/certs) and requiring a bearer token (TOOLSTREAM_TEST_TOKEN): how
the client's TLS and token options are tested, since a plain toolstream server has neither."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Awaitable, Callable

import grpc
import grpc.aio

from toolstream.worker import serve
from worker_tools import plain

CERTS = Path(__file__).resolve().parent / "certs"


class RequireToken(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}"

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is needed")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = dict(details.invocation_metadata or ())
        if metadata.get("authorization") != self._expected:
            return self._deny
        return await continuation(details)


if __name__ == "__main__":
    credentials = grpc.ssl_server_credentials(
        [((CERTS / "server.key").read_bytes(), (CERTS / "server.pem").read_bytes())]
    )
    serve(
        [plain],
        server_credentials=credentials,
        interceptors=[RequireToken(os.environ["TOOLSTREAM_TEST_TOKEN"])],
    )
