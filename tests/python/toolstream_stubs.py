"""Generates the Python gRPC client for toolstream from proto/ with grpcio-tools, into a temporary
directory, and imports it. Test scripts do `from toolstream_stubs import pb, pb_grpc`.

Nothing generated is committed: every run generates afresh from the contract as it is.
"""

import os
import sys
import tempfile
import types

from grpc_tools import protoc
import grpc_tools

_PROTO_DIR = os.environ.get(
    "TOOLSTREAM_PROTO_DIR",
    os.path.join(os.path.dirname(__file__), "..", "..", "proto"),
)
_OUT = tempfile.mkdtemp(prefix="toolstream-py-")
_WELL_KNOWN = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")

_status = protoc.main(
    [
        "grpc_tools.protoc",
        f"-I{_PROTO_DIR}",
        f"-I{_WELL_KNOWN}",
        f"--python_out={_OUT}",
        f"--grpc_python_out={_OUT}",
        os.path.join(_PROTO_DIR, "toolstream", "v1", "toolstream.proto"),
    ]
)
if _status != 0:
    raise SystemExit(f"grpc_tools.protoc failed with status {_status}")

sys.path.insert(0, _OUT)
# `toolstream` here is the directory just generated, even when the toolstream package
# (python/, whose checked-in stubs may be older than proto/) is installed in this Python.
_package = types.ModuleType("toolstream")
_package.__path__ = [os.path.join(_OUT, "toolstream")]
sys.modules["toolstream"] = _package

from toolstream.v1 import toolstream_pb2 as pb  # noqa: E402
from toolstream.v1 import toolstream_pb2_grpc as pb_grpc  # noqa: E402

__all__ = ["pb", "pb_grpc"]
