"""The registry of model files: each file's official URL, and the builds it is known in
(size and sha256), grouped for ``python -m audio.models download <group>``.

To add a group, define its :class:`ModelFile` entries and add a key to :data:`GROUPS`
(and to :data:`DEFAULT_GROUPS` if a plain ``download`` should fetch it). The downloader
and the checks of files on disk are ``audio.downloads``, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from vggish.files import VGGISH_CHECKPOINT_FILE


@dataclass(frozen=True)
class Build:
    """One published build of a file, known by its size and sha256.

    Some files are published in more than one official build (YAMNet's ``.tflite`` by
    MediaPipe and by TensorFlow Hub); each is pinned by its own digest. ``accepted``
    False marks a build the registry knows but does not take: refused, it is named as a
    different build rather than called corrupted.
    """

    sha256: str
    size: int
    origin: str = ""
    accepted: bool = True


@dataclass(frozen=True)
class ModelFile:
    """One downloadable file: registry name, file name on disk, official URL, checksum.

    ``sha256`` and ``size`` are the build the official URL serves (``origin`` says whose
    it is); ``builds`` are the other builds known, each accepted by its own digest or
    named when refused.
    """

    name: str
    filename: str
    url: str
    sha256: str
    size: int
    origin: str = ""
    builds: tuple[Build, ...] = ()

    def url_for(self, base_url: str | None = None) -> str:
        """The official URL, or ``<base_url>/<filename>`` for a mirror."""
        return f"{base_url.rstrip('/')}/{self.filename}" if base_url else self.url

    @property
    def known_builds(self) -> tuple[Build, ...]:
        """The official URL's build first, then the others."""
        return (Build(self.sha256, self.size, self.origin), *self.builds)

    @property
    def largest_size(self) -> int:
        """The most bytes a known build has: a body longer than this is no build of it."""
        return max(b.size for b in self.known_builds)

    def build_of(self, size: int, digest: str | None) -> Build | None:
        """The known build with this size and sha256 (None: no build of this file)."""
        return next((b for b in self.known_builds
                     if b.size == size and b.sha256 == digest), None)

    def accepted_text(self) -> str:
        """The accepted builds as a refusal names them."""
        several = len(self.known_builds) > 1
        return " or ".join(f"{b.size} bytes with sha256 {b.sha256}"
                           + (f" ({b.origin})" if several and b.origin else "")
                           for b in self.known_builds if b.accepted)


VGGISH_CHECKPOINT = ModelFile(
    name="VGGish checkpoint",
    filename=VGGISH_CHECKPOINT_FILE,
    url="https://storage.googleapis.com/audioset/vggish_model.ckpt",
    sha256="0962b1914e3e053922d957c45bc84a78c985765641dc6bceeeb3a7d8dfecfdf6",
    size=291_108_469,
)

VGGISH_PCA_PARAMS = ModelFile(
    name="VGGish PCA parameters",
    filename="vggish_pca_params.npz",
    url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
    sha256="4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d",
    size=73_020,
)

# YAMNet for --backend yamnet: the TFLite model Google publishes for MediaPipe's audio
# classifier (fixed 15,600-sample input, 521 scores; label list embedded as metadata, which
# LiteRT ignores), and the class map CSV from tensorflow/models. TensorFlow Hub publishes
# the same graph without the metadata (4,078,224 bytes; the shared test copy is that
# build): both load the same way and give the same scores, so each is accepted by its own
# digest (a mirror may serve either).
YAMNET_TFLITE = ModelFile(
    name="YAMNet TFLite model",
    filename="yamnet.tflite",
    url="https://storage.googleapis.com/mediapipe-models/audio_classifier/yamnet/float32/1/"
        "yamnet.tflite",
    sha256="4d8b4a53282dc83ef04e3e7dbc4fbc98082e34e44ed798e16c3a0cdd4c584faf",
    size=4_126_810,
    origin="MediaPipe's build",
    builds=(Build(sha256="469be6a3421cbc52cf97e9f2f966cba984198e8e7af9854d68b3e3ebb1e04194",
                  size=4_078_224, origin="TensorFlow Hub's build"),),
)

YAMNET_CLASS_MAP = ModelFile(
    name="YAMNet class map",
    filename="yamnet_class_map.csv",
    url="https://raw.githubusercontent.com/tensorflow/models/master/research/audioset/yamnet/"
        "yamnet_class_map.csv",
    sha256="cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2",
    size=14_096,
)

GROUPS: Mapping[str, tuple[ModelFile, ...]] = MappingProxyType({
    "vggish": (VGGISH_CHECKPOINT, VGGISH_PCA_PARAMS),
    "yamnet": (YAMNET_TFLITE, YAMNET_CLASS_MAP),
})
"""Named sets of files for ``download <group>``."""

DEFAULT_GROUPS: tuple[str, ...] = ("vggish",)
"""What ``download`` without arguments fetches."""
