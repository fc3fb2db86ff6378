"""VGGish: Google's AudioSet audio embedding, reimplemented.

`mel_features`, `input` and `postprocess` are pure numpy (no TensorFlow import);
`model` holds the Keras network and the checkpoint loader.
"""
