"""grpcio (BoringSSL) against a toolstream server serving TLS, with certificates the Rust test made.

Usage: tls_client.py PORT CERT_DIR MODE [TOKEN]. CERT_DIR holds ca.pem, alice.pem/.key (a client
of that CA) and mallory.pem/.key (a client of another CA). MODE:
- tls: the server has no mTLS; a client trusting the CA lists the tools and runs one; plaintext
  against the TLS port fails.
- mtls: alice's certificate is accepted; no client certificate, and mallory's, are refused;
  plaintext fails.
With TOKEN, every accepted call carries `authorization: Bearer TOKEN`.
Prints one line per check and exits non-zero on the first failure.
"""

import os
import sys

import grpc

from toolstream_stubs import pb, pb_grpc


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def read(directory, name):
    with open(os.path.join(directory, name), "rb") as handle:
        return handle.read()


def channel(port, credentials):
    # The server listens on 127.0.0.1; its certificate names both that and localhost.
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)


def list_tools(chan, metadata):
    return pb_grpc.ToolServiceStub(chan).ListTools(
        pb.ListToolsRequest(), timeout=10, metadata=metadata
    )


def refused(chan, metadata):
    try:
        list_tools(chan, metadata)
    except grpc.RpcError as error:
        return error.code()
    return None


def main(port, directory, mode, token=None):
    metadata = [("authorization", f"Bearer {token}")] if token else []
    ca = read(directory, "ca.pem")
    alice = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=read(directory, "alice.key"),
        certificate_chain=read(directory, "alice.pem"),
    )
    good = alice if mode == "mtls" else grpc.ssl_channel_credentials(root_certificates=ca)

    with channel(port, good) as chan:
        names = [tool.name for tool in list_tools(chan, metadata).tools]
        check("ticks" in names, f"ListTools over TLS lists the tools: {names}")
        request = pb.RunToolRequest(tool="ticks")
        request.arguments.update({"count": 3, "interval_ms": 1})
        events = list(pb_grpc.ToolServiceStub(chan).RunTool(request, timeout=30, metadata=metadata))
        kinds = [event.WhichOneof("event") for event in events]
        check(kinds[0] == "started" and kinds[-1] == "result", f"RunTool streams over TLS: {kinds}")

    if mode == "mtls":
        no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        with channel(port, no_cert) as chan:
            code = refused(chan, metadata)
            check(code == grpc.StatusCode.UNAVAILABLE, f"no client certificate is refused: {code}")
        mallory = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=read(directory, "mallory.key"),
            certificate_chain=read(directory, "mallory.pem"),
        )
        with channel(port, mallory) as chan:
            code = refused(chan, metadata)
            check(
                code == grpc.StatusCode.UNAVAILABLE,
                f"a certificate of another CA is refused: {code}",
            )

    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        code = refused(chan, metadata)
        check(code == grpc.StatusCode.UNAVAILABLE, f"plaintext against the TLS port fails: {code}")


if __name__ == "__main__":
    main(*sys.argv[1:])
