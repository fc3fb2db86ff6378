"""Batch classification and embedding of large audio corpora on Apache Beam.

``python -m audio.batch INPUT... --output_dir OUT`` runs ``parse_file.py``'s analysis
over thousands of files and hours of audio on every core of a machine (Beam's
DirectRunner in multi-processing mode), or unchanged on Dataflow, Flink or Spark
(``docs/batch.md``). Apache Beam is an optional extra: ``pip install .[batch]``.

Modules: ``cli`` (the command), ``inputs`` (files, folders, globs, manifests, labels),
``shards`` (long files cut on frame boundaries; no Beam), ``handler`` (the
``RunInference`` model handler), ``report`` (one file's outputs, through
``audio.reports``), ``pipeline`` (the Beam graph), ``launcher`` (runner defaults,
progress, metrics). Only ``cli`` may be imported without Beam installed.
"""
