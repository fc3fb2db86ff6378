"""parse_file.py's sound events end to end, on recordings assembled from real clips.

Every test that checks *what* is found runs ``parse_file.py --backend yamnet`` with the
real YAMNet (``../shared/models/yamnet``) as a subprocess, on a file the test assembles
from ``../shared/audio/urbansound_samples`` clips (resampled to 16 kHz mono by the
project's own reader and resampler) separated by digital silence, and checks the events
against where the clips were placed: within one frame (0.975 s), the issue's tolerance.
What YAMNet really finds on these clips was measured first; where a recording's sound
fades before the clip ends (the gunshots), only what is robust is asserted.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from audio.detect import SoundEvent
from audio.io import StreamResampler, read_audio, write_wav
from audio.reports.formats import RAVEN_FIELDS, audacity_lines, event_dict, event_text, raven_rows
from audio.sources.files import expand_audio_paths
from tests.conftest import require_shared
from tests.fixtures_audio import script_env

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT / "parse_file.py"
RATE = 16000
FRAME = 0.975
"""One frame: the tolerance on where an event starts and ends."""
EVENT_LINE = re.compile(r"^(?P<sound>[a-z ]+) (?P<start>\d+\.\d\d)\u2013(?P<end>\d+\.\d\d) s "
                        r"peak (?P<peak>[01]\.\d\d) (?P<dbfs>\u2212?\d+) dBFS$")

pytestmark = pytest.mark.e2e


# -- assembling recordings ------------------------------------------------------------------
@cache
def clip(name: str) -> np.ndarray:
    """A shared recording as 16 kHz mono float32, read and resampled as the pipeline does."""
    data, rate = read_audio(require_shared("audio", "urbansound_samples", f"{name}.wav"))
    mono = data.mean(axis=1) if data.ndim == 2 else data
    return StreamResampler(rate, RATE).process(mono, final=True).astype(np.float32)


def assemble(path: Path, *parts: float | np.ndarray) -> tuple[Path, list[tuple[float, float]]]:
    """Write ``parts`` end to end (a number: that many seconds of silence; an array: a
    clip) and return the file and where each clip was placed, in seconds."""
    pieces, placed, at = [], [], 0
    for part in parts:
        piece = (np.zeros(round(part * RATE), np.float32) if isinstance(part, (int, float))
                 else np.asarray(part, np.float32))
        if not isinstance(part, (int, float)):
            placed.append((at / RATE, (at + piece.shape[0]) / RATE))
        pieces.append(piece)
        at += piece.shape[0]
    return write_wav(path, np.concatenate(pieces), RATE), placed


@pytest.fixture(scope="module")
def yamnet() -> Path:
    return require_shared("models", "yamnet", "yamnet.tflite")


@pytest.fixture(scope="module")
def dog_siren(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """The acceptance recording: [4 s silence][dogbark][6 s silence][siren][4 s silence]."""
    folder = tmp_path_factory.mktemp("dog_siren")
    return assemble(folder / "dog_siren.wav", 4.0, clip("dogbark"), 6.0, clip("siren"), 4.0)


def run(args: list[object], yamnet: Path | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    model = ["--backend", "yamnet", "--yamnet_model", str(yamnet)] if yamnet else []
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args), *model],
                          capture_output=True, text=True, timeout=timeout, env=script_env(),
                          cwd=PROJECT)


def json_events(args: list[object], yamnet: Path) -> list[dict[str, object]]:
    result = run([*args, "--format", "json"], yamnet)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])["events"]


def assert_placed(event: dict[str, object], span: tuple[float, float]) -> None:
    assert abs(float(event["start"]) - span[0]) <= FRAME, (event, span)
    assert abs(float(event["end"]) - span[1]) <= FRAME, (event, span)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


# -- the acceptance test and the formats ------------------------------------------------------
def test_acceptance_one_dog_and_one_siren_where_they_were_placed(dog_siren, yamnet):
    path, (dog, siren) = dog_siren
    result = run([path, "--listen", "dog,siren", "--events", "--format", "json"], yamnet)
    assert result.returncode == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["file"] == str(path) and "padded" not in obj
    events = obj["events"]
    assert [e["sound"] for e in events] == ["dog", "siren"]
    assert_placed(events[0], dog)
    assert_placed(events[1], siren)
    groups = json.loads((PROJECT / "audio" / "sound_groups.json").read_text())
    for event in events:
        assert "kind" not in event and event["source"] == str(path)
        assert event["classes"] and set(event["classes"]) <= set(groups[event["sound"]]["classes"])
        assert 0.5 <= event["peak_score"] <= 1 and event["mean_score"] <= event["peak_score"]
        assert -40 < event["mean_dbfs"] <= event["peak_dbfs"] < 0  # clips, not the silence
        assert event["start_time"] is None  # a file has no wall clock


def test_every_format_reports_the_json_events(dog_siren, yamnet, tmp_path):
    """Text, CSV, Audacity and Raven say what JSON says; the label track and the selection
    table are read back as Audacity and Raven read them (tab-separated)."""
    path, _ = dog_siren
    listen = ["--listen", "dog,siren"]
    events = json_events([path, *listen], yamnet)
    assert len(events) == 2
    text = run([path, *listen, "--top_k", "2"], yamnet)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and ": " in lines[0]  # the ranking, then one line per event
    for line, event in zip(lines[1:], events, strict=True):
        match = EVENT_LINE.match(line)
        assert match, line
        assert match["sound"] == event["sound"]
        assert float(match["start"]) == pytest.approx(event["start"], abs=0.006)
        assert float(match["end"]) == pytest.approx(event["end"], abs=0.006)
        assert float(match["peak"]) == pytest.approx(event["peak_score"], abs=0.006)
        assert -int(match["dbfs"].lstrip("\u2212")) == round(event["peak_dbfs"])
    table = run([path, *listen, "--format", "csv"], yamnet)
    assert table.returncode == 0, table.stderr
    rows = [r for r in csv.DictReader(io.StringIO(table.stdout)) if r["scope"] == "event"]
    assert [(r["label"], int(r["id"]), float(r["start"]), float(r["end"]),
             r["classes"].split(";"), float(r["mean_dbfs"])) for r in rows] == [
        (e["sound"], e["id"], e["start"], e["end"], e["classes"], e["mean_dbfs"])
        for e in events]
    labels = run([path, *listen, "--format", "audacity"], yamnet)
    assert labels.returncode == 0, labels.stderr
    track = list(csv.reader(io.StringIO(labels.stdout), delimiter="\t"))
    assert all(re.fullmatch(r"\d+\.\d{6}", cell) for row in track for cell in row[:2])
    assert [(float(a), float(b), name) for a, b, name in track] == [
        (pytest.approx(e["start"], abs=5e-4), pytest.approx(e["end"], abs=5e-4), e["sound"])
        for e in events]
    raven = run([path, *listen, "--format", "raven"], yamnet)
    assert raven.returncode == 0, raven.stderr
    selections = list(csv.DictReader(io.StringIO(raven.stdout), delimiter="\t"))
    assert list(selections[0]) == list(RAVEN_FIELDS)
    for n, (row, event) in enumerate(zip(selections, events, strict=True), 1):
        assert (row["Selection"], row["View"], row["Channel"]) == (str(n), "Spectrogram 1", "1")
        assert (float(row["Low Freq (Hz)"]), float(row["High Freq (Hz)"])) == (0.0, 8000.0)
        assert row["Sound"] == event["sound"]
        assert float(row["Begin Time (s)"]) == pytest.approx(event["start"], abs=5e-4)
        assert float(row["End Time (s)"]) == pytest.approx(event["end"], abs=5e-4)
        assert float(row["Peak Score"]) == pytest.approx(event["peak_score"], abs=5e-5)
        assert float(row["Mean dBFS"]) == pytest.approx(event["mean_dbfs"], abs=0.006)


# -- what is found ---------------------------------------------------------------------------
def test_gunshot_and_car_horn(tmp_path, yamnet):
    """YAMNet hears the gunshots' first second (the recording fades after it), the horn
    throughout; neither is taken for a dog or a siren."""
    path, (gun, horn) = assemble(tmp_path / "street.wav", 4.0, clip("gunshots"), 5.0,
                                 clip("carhorn"), 4.0)
    events = json_events([path, "--listen", "gunshot,car horn,dog,siren"], yamnet)
    assert [e["sound"] for e in events] == ["gunshot", "car horn"]
    shot, honk = events
    assert abs(shot["start"] - gun[0]) <= FRAME
    assert shot["start"] < shot["end"] <= gun[1] + FRAME
    assert "Gunshot, gunfire" in shot["classes"]
    assert_placed(honk, horn)
    assert honk["classes"] == ["Vehicle horn, car horn, honking"]


def test_count_counts_events_of_a_group(tmp_path, yamnet):
    path, placed = assemble(tmp_path / "two_dogs.wav", 3.0, clip("dogbark"), 5.0,
                            clip("dogbark"), 3.0)
    text = run([path, "--count", "dog", "--top_k", "1"], yamnet)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[-1] == "dog: 2 events"
    result = run([path, "--count", "dog", "--format", "json"], yamnet)
    count = json.loads(result.stdout)["count"]
    assert count["label"] == "dog" and count["events"] == 2
    for (start, end), span in zip(count["intervals"], placed, strict=True):
        assert_placed({"start": start, "end": end}, span)


def test_ignore_removes_classes(dog_siren, yamnet):
    path, _ = dog_siren
    heard = json_events([path, "--listen", "dog"], yamnet)
    assert heard and any("Dog" in e["classes"] for e in heard)
    without = json_events([path, "--listen", "dog", "--ignore", "Dog"], yamnet)
    assert without and all("Dog" not in e["classes"] for e in without)
    every = json_events([path, "--events"], yamnet)
    assert "Silence" in {e["sound"] for e in every}  # every class: silence is a sound too
    quiet = json_events([path, "--events", "--ignore", "Silence"], yamnet)
    assert quiet and "Silence" not in {e["sound"] for e in quiet}
    assert {"Dog", "Siren"} <= {e["sound"] for e in quiet}


def test_min_dbfs_gate(tmp_path, yamnet):
    """A copy of the bark 20 dB quieter is still a dog to YAMNet, but a gate between the
    two copies' levels lets only the loud one start an event."""
    loud, _ = assemble(tmp_path / "loud.wav", 4.0, clip("dogbark"), 4.0)
    quiet, _ = assemble(tmp_path / "quiet.wav", 4.0, clip("dogbark") * 0.1, 4.0)
    loud_events = json_events([loud, "--listen", "dog"], yamnet)
    quiet_events = json_events([quiet, "--listen", "dog"], yamnet)
    assert len(loud_events) == 1 and quiet_events
    loudest_quiet = max(e["peak_dbfs"] for e in quiet_events)
    assert loudest_quiet < loud_events[0]["peak_dbfs"] - 15
    gate = ["--min_dbfs", f"{loudest_quiet + 5:.1f}"]
    assert json_events([quiet, "--listen", "dog", *gate], yamnet) == []
    gated = json_events([loud, "--listen", "dog", *gate], yamnet)
    assert [e["sound"] for e in gated] == ["dog"]


# -- short inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize(("start", "seconds"), [(0.75, 0.3), (0.75, 0.01)])
def test_short_clips_are_classified_padded(tmp_path, yamnet, start, seconds):
    """A 0.3 s bark cut from the recording (at 0.75 s, where one bark is) and a 10 ms
    sliver of it: both classified, exit 0, padded."""
    bark = clip("dogbark")[round(start * RATE):round((start + seconds) * RATE)]
    path = write_wav(tmp_path / "short.wav", bark, RATE)
    result = run([path, "--format", "json", "--listen", "dog"], yamnet)
    assert result.returncode == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["padded"] is True and obj["duration"] == pytest.approx(seconds, abs=1e-3)
    labels = [p["label"] for p in obj["predictions"]]
    assert labels
    if seconds >= 0.3:  # a whole bark: YAMNet hears the dog in it
        assert "Dog" in labels[:3]
        assert [e["sound"] for e in obj["events"]] == ["dog"]
    text = run([path], yamnet)
    assert text.returncode == 0 and text.stdout.strip(), text.stderr


# -- folders and output files ----------------------------------------------------------------
@pytest.fixture
def tree(tmp_path, dog_siren) -> Path:
    """in/a.wav (dog + siren), in/sub/a.wav (the same stem: a dog), in/notes.txt."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.wav").write_bytes(dog_siren[0].read_bytes())
    assemble(root / "sub" / "a.wav", 2.0, clip("dogbark"), 2.0)
    (root / "notes.txt").write_text("not audio")
    return root


def test_folder_top_level_and_recursive_to_output_dir(tree, tmp_path, yamnet):
    top = run([tree, "--format", "json", "--listen", "dog,siren"], yamnet)
    assert top.returncode == 0, top.stderr
    assert [json.loads(line)["file"] for line in top.stdout.splitlines()] == [str(tree / "a.wav")]
    out = tmp_path / "out"
    result = run([tree, "--recursive", "--output_dir", out, "--format", "json", "--listen",
                  "dog,siren"], yamnet)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.json", "sub/a.json"]
    first = json.loads((out / "a.json").read_text())
    second = json.loads((out / "sub" / "a.json").read_text())
    assert first["file"] == str(tree / "a.wav") and second["file"] == str(tree / "sub" / "a.wav")
    assert [e["sound"] for e in first["events"]] == ["dog", "siren"]
    assert [e["sound"] for e in second["events"]] == ["dog"]
    tables = tmp_path / "tables"
    raven = run([tree, "--recursive", "--output_dir", tables, "--format", "raven", "--listen",
                 "dog,siren"], yamnet)
    assert raven.returncode == 0, raven.stderr
    for relative, report in (("a.selections.txt", first), ("sub/a.selections.txt", second)):
        rows = list(csv.DictReader((tables / relative).open(newline=""), delimiter="\t"))
        assert [(r["Sound"], float(r["Begin Time (s)"])) for r in rows] == [
            (e["sound"], pytest.approx(e["start"], abs=5e-4)) for e in report["events"]]
    labels = tmp_path / "labels"
    audacity = run([tree / "sub" / "a.wav", "--output_dir", labels, "--format", "audacity",
                    "--listen", "dog"], yamnet)
    assert audacity.returncode == 0, audacity.stderr
    assert (labels / "a.txt").read_text().count("\tdog\n") == 1


def test_usage_errors_need_no_model(tree, tmp_path):
    """Each is one line and exit 2, found before any model is loaded (no model given)."""
    one_line_error(run([tree / "a.wav", tree / "sub" / "a.wav", "--format", "audacity"]),
                   "one label track per audio file", "--output_dir")
    one_line_error(run([tree, "--recursive", "--format", "raven"]), "selection table")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    one_line_error(run([tree, "--output_dir", blocker / "out"]), "cannot write to the output "
                   "folder", str(blocker))
    one_line_error(run([tree / "a.wav", tree / "sub" / "a.wav", "--output_dir",
                        tmp_path / "out"]), "would both be reported", "a.txt")
    (tree / "sub" / "a.flac").write_bytes(b"")
    one_line_error(run([tree / "sub", "--output_dir", tmp_path / "out2"]),
                   "would both be reported")


def test_empty_folder(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    line = one_line_error(run([tmp_path / "empty"]), "no audio files", str(tmp_path / "empty"))
    assert "--recursive" in line  # it has a subfolder: say how to read it
    one_line_error(run([tmp_path / "empty", "--recursive"]), "no audio files")


def test_unknown_sound_and_bad_groups_file(dog_siren, yamnet, tmp_path):
    path, _ = dog_siren
    one_line_error(run([path, "--listen", "dgo,siren"], yamnet), "unknown sound 'dgo'",
                   "did you mean 'dog'")
    one_line_error(run([path, "--count", "sirne"], yamnet), "unknown sound 'sirne'", "'siren'")
    broken = tmp_path / "groups.json"
    broken.write_text("{not json")
    one_line_error(run([path, "--listen", "dog", "--sound_groups", broken], yamnet),
                   "not valid JSON", str(broken))
    broken.write_text(json.dumps({"dog": {"classes": ["Dog"], "treshold": 0.6}}))
    one_line_error(run([path, "--listen", "dog", "--sound_groups", broken], yamnet),
                   "unknown keys", "treshold")
    one_line_error(run([path, "--events", "--sound_groups", tmp_path / "missing.json"],
                       yamnet), "cannot read the groups file")


# -- pieces ------------------------------------------------------------------------------------
def _event(sound: str, start: float, end: float, peak_dbfs: float, id_: int) -> SoundEvent:
    return SoundEvent(kind="end", id=id_, sound=sound, classes=("Dog", "Bark"), start=start,
                      end=end, peak_score=0.8349, mean_score=0.61, peak_dbfs=peak_dbfs,
                      mean_dbfs=peak_dbfs - 3.0, source="x.wav")


def test_event_formats():
    late, early = _event("dog", 12.4, 15.1, -18.3, 2), _event("car horn", 1.5, 2.25, -0.2, 1)
    assert event_text(late) == "dog 12.40\u201315.10 s peak 0.83 \u221218 dBFS"
    assert event_text(early).endswith("peak 0.83 0 dBFS")  # never "−0"
    assert audacity_lines([late, early]) == ["1.500000\t2.250000\tcar horn",
                                             "12.400000\t15.100000\tdog"]
    rows = raven_rows([late, early])
    assert [r[0] for r in rows] == ["1", "2"] and rows[1][3:8] == [
        "12.400000", "15.100000", "0.0", "8000.0", "dog"]
    as_json = event_dict(late)
    assert "kind" not in as_json and as_json["classes"] == ["Dog", "Bark"]
    assert as_json["peak_dbfs"] == -18.3 and as_json["mean_dbfs"] == -21.3


def test_expand_audio_paths_top_level_or_recursive(tmp_path):
    for name in ("b.wav", "a.FLAC", "sub/c.wav", "sub/deeper/d.ogg", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    top = expand_audio_paths([tmp_path], recursive=False)
    assert [p.relative_to(tmp_path).as_posix() for p in top] == ["a.FLAC", "b.wav"]
    every = expand_audio_paths([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in every] == [
        "a.FLAC", "b.wav", "sub/c.wav", "sub/deeper/d.ogg"]
