"""The numpy modules (front end and post-processing) must not import TensorFlow.

Checked in a fresh interpreter, because the test process itself may already have
TensorFlow loaded by other tests. resampy (numba, seconds to import) must also stay out
until a resampling is actually needed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_ROOT, require_shared


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


DAEMON_MACHINERY = ("sqlite3", "starlette", "uvicorn", "paho", "apache_beam", "tensorflow",
                    "audio.loop", "audio.commit", "audio.store")


def test_classifying_a_file_with_yamnet_loads_none_of_the_daemons_machinery(tmp_path) -> None:
    """parse_file.py --backend yamnet: LiteRT and numpy only (issue 24's first defect:
    the folder expansion came through audio.sources.files, which imported the loop, hence
    the store and sqlite3). The script runs as ``__main__`` in a fresh interpreter, which
    then writes every module it holds (``-X importtime`` would miss what is imported while
    the native output is silenced)."""
    model = require_shared("models", "yamnet", "yamnet.tflite")
    modules = tmp_path / "modules.txt"
    result = run_python(f"""
        import runpy, sys
        sys.argv = ["parse_file.py", "--backend", "yamnet", "--yamnet_model", {str(model)!r},
                    "examples/speech.wav"]
        try:
            runpy.run_path("parse_file.py", run_name="__main__")
        except SystemExit as end:
            code = end.code
        else:
            code = 0
        with open({str(modules)!r}, "w") as out:
            out.write("\\n".join(sorted(sys.modules)))
        sys.exit(code)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("Speech: "), result.stdout
    imported = modules.read_text().split()
    assert "ai_edge_litert.interpreter" in imported  # the run really classified
    loaded = [m for m in imported
              if any(m == top or m.startswith(top + ".") for top in DAEMON_MACHINERY)]
    assert loaded == []
