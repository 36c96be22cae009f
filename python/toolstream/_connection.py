"""How a client reaches its server: the address, TLS and the bearer token, shared by the sync and
asyncio clients."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import grpc

DEFAULT_ADDR = "127.0.0.1:50051"

# Results can be large; the server's own limit (max_message_bytes) is what counts.
_DEFAULT_OPTIONS: List[Tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # Pings find a dead connection while a tool is silent, so a watched stream can resume.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]

Metadata = Sequence[Tuple[str, str]]


def _read(data: Union[None, bytes, str, "os.PathLike[str]"]) -> Optional[bytes]:
    """PEM given as bytes, or as the path of a file holding it."""
    if data is None or isinstance(data, bytes):
        return data
    with open(os.fspath(data), "rb") as handle:
        return handle.read()


@dataclass(frozen=True)
class Connection:
    """Everything needed to open a channel to the server, and the metadata every call carries."""

    target: str
    secure: bool
    root_certificates: Optional[bytes] = None
    private_key: Optional[bytes] = None
    certificate_chain: Optional[bytes] = None
    server_name: Optional[str] = None
    metadata: Tuple[Tuple[str, str], ...] = ()
    options: Tuple[Tuple[str, Any], ...] = field(default_factory=tuple)

    @staticmethod
    def make(
        target: Optional[str],
        *,
        token: Optional[str],
        tls: Optional[bool],
        root_certificates: Union[None, bytes, str, "os.PathLike[str]"],
        private_key: Union[None, bytes, str, "os.PathLike[str]"],
        certificate_chain: Union[None, bytes, str, "os.PathLike[str]"],
        server_name: Optional[str],
        metadata: Optional[Metadata],
        options: Optional[Sequence[Tuple[str, Any]]],
    ) -> "Connection":
        """Reads the constructor's options. The address defaults to ``TOOLSTREAM_ADDR``, then
        ``127.0.0.1:50051``; ``https://`` means TLS, ``http://`` or no scheme plaintext unless
        ``tls=True`` or certificates are given. The token defaults to ``TOOLSTREAM_TOKEN``."""
        address = target or os.environ.get("TOOLSTREAM_ADDR") or DEFAULT_ADDR
        scheme_tls: Optional[bool] = None
        if address.startswith("https://"):
            address, scheme_tls = address[len("https://") :], True
        elif address.startswith("http://"):
            address, scheme_tls = address[len("http://") :], False
        address = address.rstrip("/")
        roots, key, chain = _read(root_certificates), _read(private_key), _read(certificate_chain)
        if (key is None) != (chain is None):
            raise ValueError("give both private_key and certificate_chain (mutual TLS), or neither")
        secure = tls if tls is not None else bool(scheme_tls or roots or key)
        if tls is False and (roots or key):
            raise ValueError("certificates were given but tls=False")
        if scheme_tls is True and tls is False:
            raise ValueError(f"{target!r} asks for TLS but tls=False")
        calls: List[Tuple[str, str]] = [(k.lower(), v) for k, v in (metadata or ())]
        bearer = token if token is not None else os.environ.get("TOOLSTREAM_TOKEN")
        if bearer:
            calls.append(("authorization", f"Bearer {bearer}"))
        channel_options = list(_DEFAULT_OPTIONS)
        if server_name:
            channel_options.append(("grpc.ssl_target_name_override", server_name))
        given = dict(options or ())
        channel_options = [(k, v) for k, v in channel_options if k not in given] + list(given.items())
        return Connection(
            target=address,
            secure=secure,
            root_certificates=roots,
            private_key=key,
            certificate_chain=chain,
            server_name=server_name,
            metadata=tuple(calls),
            options=tuple(channel_options),
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def channel(self) -> grpc.Channel:
        if self.secure:
            return grpc.secure_channel(self.target, self.credentials(), options=self.options)
        return grpc.insecure_channel(self.target, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.secure:
            return grpc.aio.secure_channel(self.target, self.credentials(), options=self.options)
        return grpc.aio.insecure_channel(self.target, options=self.options)
