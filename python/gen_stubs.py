"""Generates the gRPC stubs in toolstream/v1 from the contract in ../proto.

    python python/gen_stubs.py           # write them
    python python/gen_stubs.py --check   # exit 1 when the checked-in stubs differ from the proto

The stubs are checked in so that `pip install ./python` needs no code generator, and checked
against the proto by the tests (python/tests/test_stubs.py) so they are never stale. They are
generated with one pinned grpcio-tools version, because the generated code names the runtime it
needs (protobuf gencode 5.29.0, grpcio 1.71.0): pyproject.toml asks for at least those.
"""

import argparse
import filecmp
import os
import shutil
import sys
import tempfile

GRPCIO_TOOLS_VERSION = "1.71.0"
HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "proto")
PROTO = os.path.join("toolstream", "v1", "toolstream.proto")
PACKAGE_DIR = os.path.join(HERE, "toolstream", "v1")
GENERATED = ["toolstream_pb2.py", "toolstream_pb2.pyi", "toolstream_pb2_grpc.py"]


def generate(out: str) -> None:
    """Runs protoc (from grpcio-tools) on the contract, writing the stubs under `out`."""
    try:
        import grpc_tools
        from grpc_tools import protoc
        from importlib.metadata import version
    except ImportError:
        sys.exit(f"grpcio-tools is needed: pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}")
    installed = version("grpcio-tools")
    if installed != GRPCIO_TOOLS_VERSION:
        sys.exit(
            f"grpcio-tools {installed} is installed, but the stubs are generated with "
            f"{GRPCIO_TOOLS_VERSION}: pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}"
        )
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            os.path.join(PROTO_DIR, PROTO),
        ]
    )
    if status != 0:
        sys.exit(f"protoc failed with status {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        generate(out)
        fresh = os.path.join(out, "toolstream", "v1")
        stale = [
            name
            for name in GENERATED
            if not os.path.exists(os.path.join(PACKAGE_DIR, name))
            or not filecmp.cmp(os.path.join(fresh, name), os.path.join(PACKAGE_DIR, name), shallow=False)
        ]
        if args.check:
            if stale:
                sys.exit(
                    f"python/toolstream/v1 is stale ({', '.join(stale)} differ from what "
                    "proto/ generates): run python python/gen_stubs.py and commit the result"
                )
            print("python/toolstream/v1 matches proto/")
            return
        for name in GENERATED:
            shutil.copyfile(os.path.join(fresh, name), os.path.join(PACKAGE_DIR, name))
        print(f"wrote {', '.join(GENERATED)} to {PACKAGE_DIR}")


if __name__ == "__main__":
    main()
