"""The model downloader against a real HTTP server on 127.0.0.1 (threaded, with Range).

Library cases pass a test registry (files whose sha256 the test computed) to
``download``; CLI cases run ``python -m audio.models download`` as a subprocess with the
official registry, against a server that can only serve wrong bytes for it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from audio import downloads as models
from audio import models as models_cli
from audio.downloads import (
    DownloadError,
    MissingModelFilesError,
    ModelFile,
    NetworkError,
    download,
    download_file,
    require_files,
    resolve_pca_params,
    resolve_vggish_checkpoint,
)
from audio.models import still_missing, ways_out

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    """What the server serves and how it misbehaves; plus a log of what it did."""

    files: dict[str, bytes] = field(default_factory=dict)
    ignore_range: bool = False
    hang_up_after: int | None = None  # bytes of body to send before closing the socket
    log: list[tuple[str, str | None, int, int]] = field(default_factory=list)


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            data = served.files.get(self.path.lstrip("/"))
            range_header = self.headers.get("Range")
            if data is None:
                self._finish(404, b"not found", range_header)
                return
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            start = int(match.group(1)) if match and not served.ignore_range else 0
            if start >= len(data) > 0:
                self._finish(416, b"", range_header,
                             {"Content-Range": f"bytes */{len(data)}"})
                return
            headers = {}
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._finish(206 if start else 200, data[start:], range_header, headers)

        def _finish(self, status: int, body: bytes, range_header: str | None,
                    headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "none" if served.ignore_range else "bytes")
            self.end_headers()
            if served.hang_up_after is not None and status in (200, 206):
                body = body[: served.hang_up_after]
                self.close_connection = True
            # Logged before the body goes out, so the client can't finish before the log.
            served.log.append((self.path, range_header, status, len(body)))
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    served = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def blob(rng: np.random.Generator) -> bytes:
    return rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()


def entry_for(base_url: str, data: bytes, filename: str = "blob.bin") -> ModelFile:
    return ModelFile(name="test blob", filename=filename, url=f"{base_url}/{filename}",
                     sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_good_download_is_verified_and_then_skipped(server, blob: bytes, tmp_path: Path) -> None:
    base, served = server
    served.files["blob.bin"] = blob
    entry = entry_for(base, blob)
    lines: list[str] = []
    [path] = download([entry], tmp_path / "models", report=lines.append)
    assert path == tmp_path / "models" / "blob.bin"
    assert path.read_bytes() == blob
    assert files_in(tmp_path / "models") == ["blob.bin"]
    assert served.log == [("/blob.bin", None, 200, len(blob))]
    assert "downloaded, sha256 verified" in lines[0]

    # Already present and verified: no request at all.
    assert download_file(entry, tmp_path / "models") == (path, False)
    assert len(served.log) == 1


def test_partial_download_is_resumed_with_range(server, blob: bytes, tmp_path: Path) -> None:
    base, served = server
    served.files["blob.bin"] = blob
    (tmp_path / "blob.bin.part").write_bytes(blob[:123_456])
    path, fetched = download_file(entry_for(base, blob), tmp_path)
    assert fetched and path.read_bytes() == blob
    assert served.log == [("/blob.bin", "bytes=123456-", 206, len(blob) - 123_456)]
    assert files_in(tmp_path) == ["blob.bin"]


def test_server_ignoring_range_restarts_from_zero(server, blob: bytes, tmp_path: Path) -> None:
    base, served = server
    served.files["blob.bin"] = blob
    served.ignore_range = True
    (tmp_path / "blob.bin.part").write_bytes(blob[:50_000])
    path, _ = download_file(entry_for(base, blob), tmp_path)
    assert path.read_bytes() == blob
    assert served.log == [("/blob.bin", "bytes=50000-", 200, len(blob))]
    assert files_in(tmp_path) == ["blob.bin"]


def test_interrupted_transfer_keeps_part_and_resumes(server, blob: bytes,
                                                     tmp_path: Path) -> None:
    base, served = server
    served.files["blob.bin"] = blob
    served.hang_up_after = 100_000
    entry = entry_for(base, blob)
    with pytest.raises(DownloadError, match="connection lost after 100000 of 300000 bytes"):
        download_file(entry, tmp_path)
    assert files_in(tmp_path) == ["blob.bin.part"]
    served.hang_up_after = None
    path, _ = download_file(entry, tmp_path)
    assert path.read_bytes() == blob
    assert served.log[-1] == ("/blob.bin", "bytes=100000-", 206, len(blob) - 100_000)


def test_corrupted_download_is_rejected_and_removed(server, blob: bytes,
                                                    tmp_path: Path) -> None:
    base, served = server
    corrupted = bytearray(blob)
    corrupted[1000] ^= 0xFF
    served.files["blob.bin"] = bytes(corrupted)
    entry = entry_for(base, blob)  # the registry knows the good checksum
    with pytest.raises(DownloadError, match="corrupted download was deleted"):
        download_file(entry, tmp_path)
    assert files_in(tmp_path) == []
    # The same when resuming a partial file.
    (tmp_path / "blob.bin.part").write_bytes(blob[:10])
    with pytest.raises(DownloadError, match="sha256"):
        download_file(entry, tmp_path)
    assert files_in(tmp_path) == []


def test_oversized_response_is_cut_and_removed(server, blob: bytes, tmp_path: Path) -> None:
    base, served = server
    served.files["blob.bin"] = blob + b"extra"
    with pytest.raises(DownloadError, match="more than the expected"):
        download_file(entry_for(base, blob), tmp_path)
    assert files_in(tmp_path) == []


def test_existing_file_with_wrong_checksum_is_replaced(server, blob: bytes,
                                                       tmp_path: Path) -> None:
    base, served = server
    served.files["blob.bin"] = blob
    (tmp_path / "blob.bin").write_bytes(b"stale")
    path, fetched = download_file(entry_for(base, blob), tmp_path)
    assert fetched and path.read_bytes() == blob


def test_http_error_is_one_line(server, blob: bytes, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_file(entry_for(base, blob, "absent.bin"), tmp_path)
    assert "\n" not in str(info.value)
    assert files_in(tmp_path) == []


def test_progress_bar(server, blob: bytes, tmp_path: Path) -> None:
    base, served = server
    served.files["blob.bin"] = blob
    stream = io.StringIO()
    download_file(entry_for(base, blob), tmp_path, progress=True, progress_stream=stream)
    text = stream.getvalue()
    assert text.startswith("\rblob.bin [") and text.endswith("\n")
    assert "100.0%" in text and "0.3/0.3 MB" in text


def test_base_url_replaces_the_directory() -> None:
    entry = models.VGGISH_CHECKPOINT
    assert entry.url_for() == "https://storage.googleapis.com/audioset/vggish_model.ckpt"
    assert entry.url_for("http://mirror/x/") == "http://mirror/x/vggish_model.ckpt"
    assert models.GROUPS["vggish"] == (models.VGGISH_CHECKPOINT, models.VGGISH_PCA_PARAMS)


# --- Path resolution -------------------------------------------------------------------

def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", raising=False)
    monkeypatch.delenv("AUDIO_ANALYSIS_PCA_PARAMS", raising=False)
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(tmp_path / "dir"))
    assert resolve_vggish_checkpoint() == tmp_path / "dir" / "vggish_model.ckpt"
    assert resolve_pca_params() == tmp_path / "dir" / "vggish_pca_params.npz"
    monkeypatch.setenv("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", str(tmp_path / "env.ckpt"))
    monkeypatch.setenv("AUDIO_ANALYSIS_PCA_PARAMS", str(tmp_path / "env.npz"))
    assert resolve_vggish_checkpoint() == tmp_path / "env.ckpt"
    assert resolve_pca_params() == tmp_path / "env.npz"
    assert resolve_vggish_checkpoint(tmp_path / "flag.ckpt") == tmp_path / "flag.ckpt"
    assert resolve_pca_params(str(tmp_path / "flag.npz")) == tmp_path / "flag.npz"


def test_default_models_dir_is_anchored_on_the_project(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.delenv("AUDIO_ANALYSIS_MODELS_DIR", raising=False)
    monkeypatch.delenv("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_vggish_checkpoint() == PROJECT_ROOT / "models" / "vggish_model.ckpt"


def test_require_files_names_every_missing_file(tmp_path: Path) -> None:
    present = tmp_path / "vggish_model.ckpt"
    present.write_bytes(b"x")
    require_files([present])
    with pytest.raises(MissingModelFilesError) as info:
        require_files([present, tmp_path / "a.npz", tmp_path / "b.tflite"])
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "a.npz") in message and str(tmp_path / "b.tflite") in message
    assert "vggish_model.ckpt" not in message
    assert "python -m audio.models download" in message
    assert info.value.missing == (tmp_path / "a.npz", tmp_path / "b.tflite")
    with pytest.raises(MissingModelFilesError, match=r"`python -m audio\.models download yamnet`"):
        require_files([tmp_path / "yamnet.tflite"], group="yamnet")


# --- The command line, as a subprocess -------------------------------------------------

def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIO_ANALYSIS_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "audio.models", *args], cwd=PROJECT_ROOT,
                          env=full_env, capture_output=True, text=True, timeout=120)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_ways_out(stderr: str, url: str, directory: Path, missing: list[ModelFile],
                    base_url: str | None = None, yamnet_hint: bool = True) -> None:
    """A network failure's message: the error line, then the ways out, at most 5 lines."""
    lines = stderr.splitlines()
    assert 4 <= len(lines) <= 5, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ") and url in lines[0]
    assert all(line.startswith("  - ") for line in lines[1:]), stderr
    assert "retry" in lines[1]
    [mirror] = [line for line in lines if models.BASE_URL_ENV in line]
    if base_url:
        assert f"(now {base_url})" in mirror
    else:
        assert f"{models.BASE_URL_ENV}=<mirror URL>" in mirror
    [copy] = [line for line in lines if "copy the files" in line]
    assert f" {directory}/ " in copy
    for entry in missing:
        assert f"<mirror URL>/{entry.filename}" in mirror
        assert f"{entry.filename} (" in copy and f"sha256 {entry.sha256}" in copy
    others = [e for group in models.GROUPS.values() for e in group if e not in missing]
    assert not [e.filename for e in others if e.sha256 in stderr]
    assert ("download yamnet" in stderr) == yamnet_hint


@pytest.mark.e2e
def test_cli_offline_error_names_the_ways_out(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{closed_port()}/audioset"
    result = run_cli("download", "--dir", str(tmp_path / "m"), "--base-url", base)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:")
    assert "vggish_model.ckpt" in result.stderr
    assert_ways_out(result.stderr, f"{base}/vggish_model.ckpt", tmp_path / "m",
                    [models.VGGISH_CHECKPOINT, models.VGGISH_PCA_PARAMS], base_url=base)
    assert files_in(tmp_path / "m") == []


@pytest.mark.e2e
def test_cli_env_overrides_and_corrupted_official_file(server, tmp_path: Path) -> None:
    base, served = server
    # The official checksums can't match what a test serves: the download must be refused.
    served.files["vggish_model.ckpt"] = b"<html>captive portal</html>"
    target = tmp_path / "env-models"
    result = run_cli("download", env={"AUDIO_ANALYSIS_MODELS_DIR": str(target),
                                      "AUDIO_ANALYSIS_DOWNLOAD_BASE_URL": base})
    assert result.returncode == 1, result.stderr
    assert "corrupted download was deleted" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert [entry[0] for entry in served.log] == ["/vggish_model.ckpt"]
    assert files_in(target) == []


@pytest.mark.e2e
def test_cli_http_error_and_unknown_group(server, tmp_path: Path) -> None:
    base, _ = server
    result = run_cli("download", "vggish", "--dir", str(tmp_path), "--base-url", base)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"error: {base}/vggish_model.ckpt: HTTP 404 Not Found"
    assert_ways_out(result.stderr, f"{base}/vggish_model.ckpt", tmp_path,
                    [models.VGGISH_CHECKPOINT, models.VGGISH_PCA_PARAMS], base_url=base)
    result = run_cli("download", "nonsense", "--dir", str(tmp_path), "--base-url", base)
    assert result.returncode == 1 and "unknown group nonsense" in result.stderr


def test_import_is_light() -> None:
    code = ("import sys, audio.models; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]"


# --- Offline: the failure says which file, from where, and the ways out ----------------

VGGISH = [models.VGGISH_CHECKPOINT, models.VGGISH_PCA_PARAMS]


def test_network_failures_are_typed_and_name_the_file(server, blob: bytes,
                                                      tmp_path: Path) -> None:
    base, served = server
    entry = entry_for(f"http://127.0.0.1:{closed_port()}", blob)
    with pytest.raises(NetworkError, match="cannot reach") as info:
        download_file(entry, tmp_path)
    assert (info.value.entry, info.value.url) == (entry, entry.url)
    with pytest.raises(NetworkError, match="HTTP 404") as info:
        download_file(entry_for(base, blob), tmp_path)
    assert info.value.entry.filename == "blob.bin"
    # A wrong file is no network failure: retrying or a mirror of it won't help.
    served.files["blob.bin"] = b"wrong"
    with pytest.raises(DownloadError, match="sha256") as info:
        download_file(entry_for(base, blob), tmp_path)
    assert not isinstance(info.value, NetworkError)


def test_still_missing_names_only_unverified_files(tmp_path: Path) -> None:
    data = {name: name.encode() * 100 for name in ("a.bin", "b.bin", "c.bin", "d.bin")}
    entries = [entry_for("http://unused", body, name) for name, body in data.items()]
    (tmp_path / "c.bin").write_bytes(data["c.bin"])      # verified: not to fetch again
    (tmp_path / "d.bin").write_bytes(b"stale")            # present but wrong: still missing
    assert still_missing(entries, entries[1], tmp_path) == [entries[1], entries[3]]


def test_ways_out_without_a_mirror(tmp_path: Path) -> None:
    lines = ways_out(VGGISH, tmp_path / "models", None, yamnet_hint=True)
    text = "\n".join(["error: cannot reach x", *lines])
    assert_ways_out(text, "x", tmp_path / "models", VGGISH)
    assert "(291 MB, sha256 " in text and "(73 kB, sha256 " in text
    assert "--backend yamnet" in lines[-1] and "4.1 MB" in lines[-1]


def test_cli_offline_with_the_official_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """What a user without network sees: the official URL, the default way to a mirror."""
    def unresolvable(url: str, offset: int, timeout: float) -> None:
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(models, "_open", unresolvable)
    monkeypatch.delenv(models.BASE_URL_ENV, raising=False)
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(tmp_path / "env-dir"))
    assert models_cli.main(["download", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach {models.VGGISH_CHECKPOINT.url}: ")
    assert "Name or service not known" in err.splitlines()[0]
    assert_ways_out(err, models.VGGISH_CHECKPOINT.url, tmp_path / "env-dir", VGGISH)


@pytest.mark.e2e
def test_cli_unresolvable_mirror_from_the_environment(tmp_path: Path) -> None:
    base = "http://nonexistent.invalid/audioset"
    target = tmp_path / "env-models"
    result = run_cli("download", "--timeout", "10",
                     env={"AUDIO_ANALYSIS_MODELS_DIR": str(target), models.BASE_URL_ENV: base})
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach {base}/vggish_model.ckpt: ")
    assert_ways_out(result.stderr, f"{base}/vggish_model.ckpt", target, VGGISH, base_url=base)
    assert files_in(target) == []


@pytest.mark.e2e
def test_cli_connection_lost_keeps_the_part(server, tmp_path: Path) -> None:
    base, served = server
    served.files["vggish_model.ckpt"] = b"x" * 1000
    served.hang_up_after = 100
    result = run_cli("download", "--dir", str(tmp_path), "--base-url", base)
    assert result.returncode == 1
    assert "connection lost after 100 of 291108469 bytes" in result.stderr.splitlines()[0]
    assert_ways_out(result.stderr, f"{base}/vggish_model.ckpt", tmp_path, VGGISH, base_url=base)
    assert files_in(tmp_path) == ["vggish_model.ckpt.part"]


@pytest.mark.e2e
def test_cli_timeout_names_the_ways_out(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = run_cli("download", "--dir", str(tmp_path), "--base-url", base,
                         "--timeout", "0.5")
    assert result.returncode == 1
    assert "timed out" in result.stderr.splitlines()[0]
    assert_ways_out(result.stderr, f"{base}/vggish_model.ckpt", tmp_path, VGGISH, base_url=base)


@pytest.mark.e2e
def test_cli_every_group_offline_names_every_file(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    result = run_cli("download", "vggish", "yamnet", "--dir", str(tmp_path),
                     "--base-url", base)
    assert result.returncode == 1
    everything = [*VGGISH, models.YAMNET_TFLITE, models.YAMNET_CLASS_MAP]
    assert_ways_out(result.stderr, f"{base}/vggish_model.ckpt", tmp_path, everything,
                    base_url=base, yamnet_hint=False)


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_offline_stops_at_the_download(tmp_path: Path) -> None:
    """`make demo` without network: the ways out, then make's own line, nothing after."""
    base = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AUDIO_ANALYSIS_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update({"AUDIO_ANALYSIS_MODELS_DIR": str(tmp_path), models.BASE_URL_ENV: base})
    # -o setup: the test uses this interpreter and must not create or update a .venv.
    result = subprocess.run(["make", "-o", "setup", "demo", f"PY={sys.executable}"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    *message, make_line = result.stderr.splitlines()
    assert re.fullmatch(r"make: \*\*\* \[Makefile:\d+: demo\] Error 1", make_line)
    assert_ways_out("\n".join(message), f"{base}/vggish_model.ckpt", tmp_path, VGGISH,
                    base_url=base)
    assert result.stdout.strip().endswith("-m audio.models download")


# --- Each official YAMNet build (issue 23) ----------------------------------------------

@pytest.mark.e2e
def test_cli_accepts_the_tensorflow_hub_yamnet_build(server, tmp_path: Path) -> None:
    """A mirror serving the .tflite TensorFlow Hub publishes (the build in ../shared,
    4,078,224 bytes) is accepted, as MediaPipe's build is; ``list`` then says verified."""
    from tests.conftest import require_shared

    shared = require_shared("models", "yamnet")
    base, served = server
    for name in ("yamnet.tflite", "yamnet_class_map.csv"):
        served.files[name] = (shared / name).read_bytes()
    target = tmp_path / "m"
    result = run_cli("download", "yamnet", "--dir", str(target), "--base-url", base)
    assert result.returncode == 0, result.stderr
    assert "corrupted" not in result.stderr and "Traceback" not in result.stderr
    assert files_in(target) == ["yamnet.tflite", "yamnet_class_map.csv"]
    assert (target / "yamnet.tflite").read_bytes() == served.files["yamnet.tflite"]
    assert "TensorFlow Hub" in result.stdout, result.stdout
    again = run_cli("download", "yamnet", "--dir", str(target), "--base-url", base)
    assert again.returncode == 0 and "already present, verified" in again.stdout
    assert len(served.log) == 2  # the second run fetched nothing
    listing = run_cli("list", "--dir", str(target)).stdout
    [line] = [x for x in listing.splitlines() if "yamnet.tflite" in x]
    assert "present, verified" in line, listing


def test_list_does_not_call_a_mismatching_file_present(tmp_path: Path) -> None:
    """A file of the right name but wrong bytes is "present, unverified", never "present"."""
    (tmp_path / "yamnet.tflite").write_bytes(b"not a model")
    good = tmp_path / "yamnet_class_map.csv"
    for directory in (PROJECT_ROOT / "models", PROJECT_ROOT.parent / "shared" / "models" / "yamnet"):
        if (directory / good.name).is_file():
            shutil.copy(directory / good.name, good)
            break
    result = run_cli("list", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert "present, unverified: size mismatch" in lines["yamnet.tflite"], result.stdout
    assert " absent " in lines["vggish_model.ckpt"]
    if good.is_file():
        assert "present, verified" in lines["yamnet_class_map.csv"]
    (tmp_path / "yamnet.tflite").write_bytes(b"x" * models.YAMNET_TFLITE.size)
    lines = {line.split()[1]: line
             for line in run_cli("list", "--dir", str(tmp_path)).stdout.splitlines()}
    assert "present, unverified: sha256 mismatch" in lines["yamnet.tflite"]


def test_a_known_build_that_is_not_accepted_is_named(server, blob: bytes,
                                                     tmp_path: Path) -> None:
    """A registry entry may know a build it does not accept: the refusal says "a
    different build", not "corrupted"."""
    base, served = server
    served.files["blob.bin"] = blob
    other = models.Build(hashlib.sha256(blob).hexdigest(), len(blob), "the int8 build",
                         accepted=False)
    entry = ModelFile(name="test blob", filename="blob.bin", url=f"{base}/blob.bin",
                      sha256=hashlib.sha256(b"other").hexdigest(), size=len(blob) + 10,
                      builds=(other,))
    with pytest.raises(DownloadError, match=r"a different build \(the int8 build\)") as caught:
        download_file(entry, tmp_path)
    assert "corrupted" not in str(caught.value)
    assert files_in(tmp_path) == []
