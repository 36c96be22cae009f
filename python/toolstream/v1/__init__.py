"""The toolstream.v1 contract, generated from proto/toolstream/v1/toolstream.proto by
python/gen_stubs.py: messages in ``toolstream_pb2``, service stubs in ``toolstream_pb2_grpc``.
Most programs use :class:`toolstream.Client` instead."""
