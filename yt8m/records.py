"""AudioSet-format ``SequenceExample`` records written without TensorFlow.

The records ``yt8m.reader`` reads (and Google's AudioSet embedding release holds) are
``tf.train.SequenceExample`` protos: context ``video_id`` (bytes), ``start_time_seconds``
and ``end_time_seconds`` (float), ``labels`` (int64 class indices); feature list
``audio_embedding`` with one 128-byte string (the 8-bit VGGish embedding) per 0.96 s
frame. Batch workers (``audio.batch``) write them for users' own corpora, and must not
import TensorFlow to do so (a TensorFlow import costs seconds and hundreds of MB per
worker, and the YAMNet/TFLite workers have no other use for it).

So the messages are built here from TensorFlow's own schema (``tensorflow/core/example/
feature.proto`` and ``example.proto``: the same package, names and field numbers), in a
private descriptor pool of the protobuf runtime: the bytes are what TensorFlow writes and
parses, and a process that has TensorFlow loaded too (tests, a launcher) sees no clash
with TensorFlow's registered classes. ``tests/test_batch.py`` parses them back with
``yt8m.reader``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from vggish.params import PARAMS

FEATURE_NAME = "audio_embedding"
_PACKAGE = "tensorflow"
_OPTIONAL = 1  # FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = 3  # FieldDescriptorProto.LABEL_REPEATED
_TYPES = {"bytes": 12, "float": 2, "int64": 3, "string": 9, "message": 11}


def _field(message: Any, name: str, number: int, kind: str, label: int = _OPTIONAL,
           type_name: str = "", oneof: int | None = None, packed: bool = False) -> None:
    field = message.field.add(name=name, number=number, type=_TYPES[kind], label=label)
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
    if packed:
        field.options.packed = True


def _map(message: Any, name: str, value_type: str) -> None:
    """A ``map<string, value_type> name = 1`` field and its entry message."""
    entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _field(entry, "key", 1, "string")
    _field(entry, "value", 2, "message", type_name=value_type)
    _field(message, name, 1, "message", _REPEATED, f".{_PACKAGE}.{message.name}.{entry_name}")


def _schema() -> Any:
    """``FileDescriptorProto`` of TensorFlow's Feature/Example messages (the subset used)."""
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto(name="audio_analysis/tf_example.proto",
                                               package=_PACKAGE, syntax="proto3")
    for name, kind in (("BytesList", "bytes"), ("FloatList", "float"), ("Int64List", "int64")):
        _field(proto.message_type.add(name=name), "value", 1, kind, _REPEATED,
               packed=kind != "bytes")
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), 1):
        type_name = "".join(part.capitalize() for part in name.split("_"))
        _field(feature, name, number, "message", type_name=f".{_PACKAGE}.{type_name}", oneof=0)
    _map(proto.message_type.add(name="Features"), "feature", f".{_PACKAGE}.Feature")
    feature_list = proto.message_type.add(name="FeatureList")
    _field(feature_list, "feature", 1, "message", _REPEATED, f".{_PACKAGE}.Feature")
    _map(proto.message_type.add(name="FeatureLists"), "feature_list", f".{_PACKAGE}.FeatureList")
    sequence = proto.message_type.add(name="SequenceExample")
    _field(sequence, "context", 1, "message", type_name=f".{_PACKAGE}.Features")
    _field(sequence, "feature_lists", 2, "message", type_name=f".{_PACKAGE}.FeatureLists")
    return proto


@cache
def sequence_example_class() -> type:
    """The ``tensorflow.SequenceExample`` message class, from a private descriptor pool."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(_schema())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"{_PACKAGE}.SequenceExample"))


def audioset_example(video_id: str, frames: np.ndarray, start_time: float, end_time: float,
                     labels: Sequence[int] = ()) -> bytes:
    """One serialized AudioSet ``SequenceExample``: ``frames`` are (n, 128) uint8
    embeddings (``vggish.postprocess``), one per 0.96 s."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 2 or frames.shape[1] != PARAMS.embedding_size:
        raise ValueError(f"expected (n, {PARAMS.embedding_size}) uint8 embeddings, got "
                         f"{frames.dtype} {frames.shape}")
    example = sequence_example_class()()
    context = example.context.feature
    context["video_id"].bytes_list.value.append(video_id.encode("utf-8"))
    context["start_time_seconds"].float_list.value.append(float(start_time))
    context["end_time_seconds"].float_list.value.append(float(end_time))
    context["labels"].int64_list.value.extend(int(label) for label in labels)
    feature_list = example.feature_lists.feature_list[FEATURE_NAME]
    for row in frames:
        feature_list.feature.add().bytes_list.value.append(row.tobytes())
    return example.SerializeToString(deterministic=True)
