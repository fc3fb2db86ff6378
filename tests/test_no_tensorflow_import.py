"""The numpy modules (front end and post-processing) must not import TensorFlow.

Checked in a fresh interpreter, because the test process itself may already have
TensorFlow loaded by other tests. resampy (numba, seconds to import) must also stay out
until a resampling is actually needed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_ROOT


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_numpy_modules_do_not_import_tensorflow() -> None:
    result = run_python("""
        import sys
        import vggish.mel_features, vggish.input, vggish.postprocess
        import numpy as np
        examples = vggish.input.waveform_to_examples(np.zeros(16000), 16000)
        assert examples.shape == (1, 96, 64), examples.shape
        heavy = sorted(m for m in ("tensorflow", "keras", "resampy", "numba")
                       if m in sys.modules)
        print("HEAVY=" + ",".join(heavy))
    """)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stdout, result.stdout


def test_resampling_imports_resampy_but_not_tensorflow() -> None:
    result = run_python("""
        import sys
        import numpy as np
        import vggish.input
        vggish.input.waveform_to_examples(np.zeros(44100), 44100)
        print("resampy" in sys.modules, "tensorflow" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
