"""The steps behind ``python -m yt8m.train`` (the command line stays in ``yt8m.train``).

* ``options``: the flags, resolved once into a frozen ``TrainOptions`` (the refit step's
  epoch count included), and the model configuration they describe.
* ``checkpoints``: the files of a training directory, resuming and per-epoch saving.
* ``data``: loading the clips, the validation split, the tf.data pipelines.
* ``callbacks``: the loss, and what happens at each epoch's end (SWA, validation, early
  stopping, checkpoint, progress) plus the TensorBoard event files.
* ``run``: setup, fit and provenance, in that order.
"""

from vggish.errors import AudioAnalysisError


class TrainError(AudioAnalysisError, RuntimeError):
    """A training run cannot start (bad flags, incompatible checkpoint, no data)."""
