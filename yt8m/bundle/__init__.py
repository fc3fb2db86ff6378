"""The classifier bundle: its one home, from the files on disk to the runtimes that score.

A bundle is a directory ``models/<name>/`` (``config.json``, ``labels.csv``, weights,
``provenance.json``, ``metrics.json``; see :mod:`yt8m.bundle.format`). Three runtimes
serve one:

* :mod:`~yt8m.bundle.keras_runtime`: the members rebuilt in Keras (TensorFlow), for the
  bundles ``python -m yt8m.export`` writes from training runs;
* :mod:`~yt8m.bundle.litert`: a Keras bundle's TFLite export
  (:mod:`~yt8m.bundle.tflite_export`) run by LiteRT, without TensorFlow;
* :mod:`~yt8m.bundle.head`: numpy heads, the bundles ``python -m audio.train_custom``
  writes for custom classes.

:func:`load_classifier` picks one for a bundle; :class:`BundleWriter` writes every bundle
file. Importing this package is cheap: TensorFlow is imported only where models are built,
run or converted, LiteRT only when an export is loaded.
"""

from yt8m.bundle.format import (
    CALIBRATION_FILE,
    CLASS_METRICS_FILE,
    CONFIG_FILE,
    DEFAULT_BUNDLE,
    FORMAT_VERSION,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_ENV,
    PROVENANCE_FILE,
    BundleError,
    BundleNotFoundError,
    HeadError,
    class_eval_ap,
    class_thresholds,
    fingerprint,
    locate_bundle,
    member_l2_normalize,
    read_class_metrics,
    read_labels,
    resolve_bundle_path,
)
from yt8m.bundle.head import Head, is_head_bundle, load_head, save_head
from yt8m.bundle.keras_runtime import Bundle, build_members, load_keras_bundle
from yt8m.bundle.litert import TFLiteBundle, find_bundle_export
from yt8m.bundle.loader import bundle_threshold, load_classifier
from yt8m.bundle.tflite_export import export_bundle
from yt8m.bundle.writer import BundleWriter, atomic_write

__all__ = [
    "CALIBRATION_FILE", "CLASS_METRICS_FILE", "CONFIG_FILE", "DEFAULT_BUNDLE", "FORMAT_VERSION", "LABELS_FILE", "METRICS_FILE",
    "MODEL_ENV", "PROVENANCE_FILE", "Bundle", "BundleError", "BundleNotFoundError",
    "BundleWriter", "Head", "HeadError", "TFLiteBundle", "atomic_write", "build_members",
    "bundle_threshold", "class_eval_ap", "class_thresholds", "export_bundle", "find_bundle_export", "fingerprint",
    "is_head_bundle", "load_classifier", "load_head", "load_keras_bundle", "locate_bundle",
    "member_l2_normalize", "read_class_metrics", "read_labels", "resolve_bundle_path", "save_head",
]
