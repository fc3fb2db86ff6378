"""The event detector on synthetic score and level streams, and the shipped groups file."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest

from audio.detect import (
    DBFS_FLOOR,
    DetectorInputError,
    EventDetector,
    Sound,
    SoundGroup,
    SoundGroupsError,
    Thresholds,
    UnknownSoundError,
    load_sound_groups,
    resolve_sounds,
    rms_dbfs,
)
from audio.errors import EXIT_USAGE, exit_code
from tests.conftest import require_shared

LABELS = ("Speech", "Dog", "Bark", "Siren", "Glass", "Vehicle horn, car horn, honking")
HOP = 0.5


def _run(sounds, scores, dbfs=None, chunks=None, **kwargs):
    """Feed ``scores`` (n_frames, n_classes) at HOP-second frames; all records + close()."""
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    dbfs = np.full(n, -20.0) if dbfs is None else np.asarray(dbfs, dtype=float)
    starts = np.arange(n) * HOP
    detector = EventDetector(sounds, source="test.wav", **kwargs)
    records = []
    bounds = [0, *(chunks or []), n]
    for a, b in itertools.pairwise(bounds):
        records += detector.feed(scores[a:b], starts[a:b], np.full(b - a, HOP), dbfs[a:b])
    return records + detector.close()


def _one(name, index, **limits):
    return Sound(name, (LABELS[index],), (index,), Thresholds(**limits))


def _column(values, index=1):
    scores = np.zeros((len(values), len(LABELS)))
    scores[:, index] = values
    return scores


def test_hysteresis_keeps_one_event_through_a_dip_above_off():
    # 0.45 is below on (0.6) but above off (0.4): the event goes on through it.
    values = [0, 0.7, 0.45, 0.45, 0.7, 0.3, 0.3, 0]
    records = _run([_one("dog", 1, on=0.6, off=0.4, max_not_heard=0.5)], _column(values))
    assert [r.kind for r in records] == ["start", "end"]
    assert (records[1].start, records[1].end) == (0.5, 2.5)
    assert records[1].peak_score == pytest.approx(0.7)
    assert records[1].mean_score == pytest.approx((0.7 + 0.45 + 0.45 + 0.7) / 4)
    # Without hysteresis (off = on) the dips split it into two events.
    split = _run([_one("dog", 1, on=0.6, off=0.6, max_not_heard=0.5)], _column(values))
    assert [(r.kind, r.start, r.end) for r in split] == [
        ("start", 0.5, 1.0), ("end", 0.5, 1.0), ("start", 2.0, 2.5), ("end", 2.0, 2.5)]


def test_min_duration_drops_short_blips_and_starts_at_the_first_frame():
    values = [0, 0.9, 0, 0.9, 0.9, 0.9, 0, 0, 0]
    records = _run([_one("dog", 1, on=0.5, min_duration=1.5, max_not_heard=0.5)],
                   _column(values))
    assert [(r.kind, r.start) for r in records] == [("start", 1.5), ("end", 1.5)]
    assert records[0].end == 3.0  # reported once 1.5 s of sound had been heard
    assert records[1].end == 3.0


def test_max_not_heard_bridges_short_gaps_only():
    values = [0.9, 0, 0, 0.9, 0, 0, 0, 0.9]  # a 1.0 s gap, then a 1.5 s gap
    records = _run([_one("dog", 1, max_not_heard=1.5)], _column(values))
    ends = [(r.start, r.end) for r in records if r.kind == "end"]
    assert ends == [(0.0, 2.0), (3.5, 4.0)]
    # The gap frames count in the mean of the event they were bridged into.
    assert records[1].mean_score == pytest.approx(0.9 * 2 / 4)


def test_group_score_is_the_max_of_its_members_and_names_the_classes_that_fired():
    scores = np.zeros((6, len(LABELS)))
    scores[1:3, 1] = 0.8  # Dog
    scores[2:4, 2] = 0.6  # Bark
    dog = Sound("dog", ("Dog", "Bark"), (1, 2), Thresholds(on=0.5, max_not_heard=0.5))
    records = _run([dog], scores)
    assert [(r.kind, r.start, r.end) for r in records] == [("start", 0.5, 1.0),
                                                          ("end", 0.5, 2.0)]
    assert records[0].classes == ("Dog",)
    assert records[1].classes == ("Dog", "Bark")
    assert records[1].mean_score == pytest.approx((0.8 + 0.8 + 0.6) / 3)


def test_loudness_gate_blocks_starts_but_not_a_sound_already_going():
    values = [0.9, 0.9, 0.9, 0.9, 0]
    dbfs = [-70, -70, -30, -70, -70]
    records = _run([_one("dog", 1, min_dbfs=-50, max_not_heard=0.5)], _column(values), dbfs)
    assert [(r.kind, r.start, r.end) for r in records] == [("start", 1.0, 1.5),
                                                          ("end", 1.0, 2.0)]
    assert records[1].peak_dbfs == pytest.approx(-30)
    power = (10 ** (-3.0) + 10 ** (-7.0)) / 2
    assert records[1].mean_dbfs == pytest.approx(10 * np.log10(power))
    ungated = _run([_one("dog", 1, max_not_heard=0.5)], _column(values), dbfs)
    assert ungated[0].start == 0.0


def test_close_ends_a_still_active_event_at_its_last_heard_frame():
    records = _run([_one("dog", 1, max_not_heard=5.0)], _column([0, 0.9, 0.9, 0.9, 0]))
    assert [(r.kind, r.start, r.end) for r in records] == [("start", 0.5, 1.0),
                                                          ("end", 0.5, 2.0)]
    to_the_end = _run([_one("dog", 1)], _column([0, 0.9, 0.9]))
    assert to_the_end[-1].kind == "end" and to_the_end[-1].end == 1.5


def test_updates_and_wall_clock_times():
    detector = EventDetector([_one("dog", 1, max_not_heard=0.5)], update_every=1.0)
    scores = _column([0.9] * 5 + [0])
    starts = np.arange(6) * HOP
    records = detector.feed(scores, starts, np.full(6, HOP), np.full(6, -20.0),
                            timestamps=1000.0 + starts)
    assert [(r.kind, r.end) for r in records] == [("start", 0.5), ("update", 1.5),
                                                  ("update", 2.5), ("end", 2.5)]
    assert (records[-1].start_time, records[-1].end_time) == (1000.0, 1002.5)
    assert len({r.id for r in records}) == 1
    assert detector.close() == []


def test_chunking_does_not_change_the_result(rng):
    n = 400
    scores = rng.uniform(0, 1, (n, len(LABELS))) ** 3  # mostly low, with bursts
    dbfs = rng.uniform(-80, -10, n)
    sounds = [Sound("dog", ("Dog", "Bark"), (1, 2),
                    Thresholds(on=0.5, off=0.3, min_duration=1.0, max_not_heard=1.0,
                               min_dbfs=-60)),
              _one("Siren", 3, on=0.4, max_not_heard=0.5)]
    whole = _run(sounds, scores, dbfs, update_every=2.0)
    assert sum(r.kind == "end" for r in whole) >= 3
    for _ in range(5):
        cuts = sorted(rng.choice(np.arange(1, n), size=int(rng.integers(1, 40)), replace=False))
        assert _run(sounds, scores, dbfs, chunks=list(cuts), update_every=2.0) == whole
    frame_by_frame = _run(sounds, scores, dbfs, chunks=list(range(1, n)), update_every=2.0)
    assert frame_by_frame == whole


def test_frames_out_of_order_or_too_narrow_are_refused():
    detector = EventDetector([_one("dog", 1)])
    detector.push(np.zeros(len(LABELS)), 1.0, HOP, -20)
    with pytest.raises(DetectorInputError, match="comes after"):
        detector.push(np.zeros(len(LABELS)), 0.0, HOP, -20)
    with pytest.raises(DetectorInputError, match="at least 2"):
        detector.push(np.zeros(1), 2.0, HOP, -20)


def test_rms_dbfs():
    assert rms_dbfs(np.ones(16000)) == pytest.approx(0.0)
    assert rms_dbfs(np.full(16000, 0.1)) == pytest.approx(-20.0)
    assert rms_dbfs(np.full(160, -16384, dtype=np.int16)) == pytest.approx(20 * np.log10(0.5))
    assert rms_dbfs(np.zeros(100)) == DBFS_FLOOR
    assert rms_dbfs(np.zeros(0)) == DBFS_FLOOR


def test_listen_resolves_groups_and_classes_in_any_case():
    groups = {"dog": load_sound_groups()["dog"]}
    labels = [*LABELS, "Yip", "Howl", "Bow-wow", "Growling", "Whimper (dog)"]
    sounds = resolve_sounds(labels, groups, listen="DOG,siren, glass",
                            defaults=Thresholds(on=0.3))
    assert [s.name for s in sounds] == ["dog", "Siren", "Glass"]
    assert sounds[0].indices == tuple(labels.index(c) for c in sounds[0].classes)
    assert "Bark" in sounds[0].classes and sounds[2].thresholds.on == 0.3
    # A class whose name holds commas survives the comma list.
    horn = resolve_sounds(labels, groups, listen="siren,Vehicle horn, car horn, honking")
    assert [s.name for s in horn] == ["Siren", "Vehicle horn, car horn, honking"]


def test_unknown_names_are_usage_errors_with_close_matches(caplog):
    groups = load_sound_groups()
    with pytest.raises(UnknownSoundError, match=r"'Sirne'.*did you mean 'Siren'") as caught:
        resolve_sounds(LABELS, {}, listen="dog,Sirne")
    assert exit_code(caught.value) == EXIT_USAGE
    with pytest.raises(UnknownSoundError, match="did you mean"):
        resolve_sounds(LABELS, {}, ignore="Barkk")
    # A classifier that lacks some members of a group (a custom head, a smaller label set)
    # listens to the members it has, and says which it lacks; with none, the name is refused.
    (dog,) = resolve_sounds(LABELS, groups, listen="dog")
    assert "Yip" not in dog.classes and set(dog.classes) <= set(LABELS) and dog.classes
    assert "'Yip'" in caplog.text and "not among this classifier's classes" in caplog.text
    with pytest.raises(UnknownSoundError, match="none of its classes"):
        resolve_sounds(LABELS, groups, listen="cat")


def test_ignore_and_no_listen_list():
    every = resolve_sounds(LABELS, ignore="Bark,siren")
    assert [s.name for s in every] == ["Speech", "Dog", "Glass",
                                       "Vehicle horn, car horn, honking"]
    groups = {"dog": SoundGroup("dog", ("Dog", "Bark")), "noise": SoundGroup("noise", ("Glass",))}
    # --ignore names classes first: "Dog" is the class, so the group keeps its Bark.
    assert resolve_sounds(LABELS, groups, listen="dog", ignore="Dog")[0].classes == ("Bark",)
    # A group name that is no class ignores all its members, and the group goes.
    assert [s.name for s in resolve_sounds(LABELS, groups, listen="dog,Speech,Glass",
                                           ignore="NOISE")] == ["dog", "Speech"]


def test_per_sound_overrides_from_a_users_file(tmp_path):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({
        "_comment": "mine",
        "dog": {"classes": ["Dog", "Bark"], "threshold": 0.8, "min_duration": 1.0},
        "Siren": {"off": 0.1},
    }))
    groups = load_sound_groups(path)
    dog, siren, glass = resolve_sounds(LABELS, groups, listen="dog,Siren,Glass",
                                       defaults=Thresholds(on=0.4, max_not_heard=2.0))
    assert (dog.thresholds.on, dog.thresholds.off, dog.thresholds.min_duration,
            dog.thresholds.max_not_heard) == (0.8, pytest.approx(0.6), 1.0, 2.0)
    assert (siren.thresholds.on, siren.thresholds.off) == (0.4, 0.1)
    assert glass.thresholds == Thresholds(on=0.4, max_not_heard=2.0)
    # The override changes what is detected: 0.6 starts the default, not the dog.
    scores = _column([0.6, 0.6, 0.6, 0], index=4)
    scores[:, 1] = [0.6, 0.6, 0.6, 0]
    fired = {r.sound for r in _run([dog, glass], scores)}
    assert fired == {"Glass"}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('["dog"]', "top level"),
    ('{"dog": {"classes": ["Dog"], "treshold": 0.5}}', "unknown keys"),
    ('{"dog": {"classes": "Dog"}}', "list of names"),
    ('{"dog": {"threshold": "high"}}', "must be a number"),
    ('{"dog": {}, "DOG": {}}', "twice"),
    ('{"dog": {"threshold": 0.5, "off": 0.7}}', None),
])
def test_bad_groups_files_are_usage_errors(tmp_path, content, message):
    path = tmp_path / "groups.json"
    path.write_text(content)
    if message is None:  # loads, but the thresholds are refused when the sound is made
        with pytest.raises(SoundGroupsError, match="off threshold"):
            resolve_sounds(["Dog"], load_sound_groups(path), listen="dog")
        return
    with pytest.raises(SoundGroupsError, match=message):
        load_sound_groups(path)
    with pytest.raises(SoundGroupsError, match="cannot read"):
        load_sound_groups(tmp_path / "missing.json")


@pytest.mark.shared
@pytest.mark.parametrize("labels_file", [
    ("data", "audioset_v1_embeddings", "class_labels_indices.csv"),
    ("models", "yamnet", "yamnet_class_map.csv"),
])
def test_shipped_groups_name_real_classes(labels_file):
    with require_shared(*labels_file).open(newline="", encoding="utf-8") as handle:
        labels = [row["display_name"] for row in csv.DictReader(handle)]
    groups = load_sound_groups()
    expected = {"dog", "cat", "baby crying", "speech", "scream", "glass breaking",
                "smoke alarm", "siren", "doorbell", "knock", "car horn", "gunshot", "music"}
    assert set(groups) == expected
    missing = [(g.name, c) for g in groups.values() for c in g.classes if c not in labels]
    assert missing == []
    sounds = resolve_sounds(labels, groups, listen=",".join(sorted(expected)))
    assert len(sounds) == len(expected)
