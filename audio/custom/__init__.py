"""Training your own sound classes on pretrained embeddings (transfer learning).

A room of its own because it is the one part of ``audio`` that *makes* a classifier rather
than running one: it reads a folder of labelled recordings (``data``), turns them into
VGGish or YAMNet embeddings (``embed``), fits a small numpy head (``head``), scores it on
held-out files (``metrics``) and writes a bundle the entry scripts load with ``--model``
(``train``, which is also the command line behind ``python -m audio.train_custom``).
Nothing here is imported by inference code, so running a model never loads training code.
"""
