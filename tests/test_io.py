"""audio.io: every PCM encoding, FLAC/OGG, typed errors, streaming resampling, wav writing."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from audio.io import (
    AudioFileNotFoundError,
    AudioTooShortError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAFileError,
    NotAudioError,
    StreamResampler,
    mono_blocks,
    open_audio,
    read_audio,
    to_int16,
    write_wav,
)
from tests.fixtures_audio import write_test_wav

RATE = 16000


def _signal(rng: np.random.Generator, frames: int, channels: int) -> np.ndarray:
    return np.clip(rng.standard_normal((frames, channels)) * 0.25, -0.99, 0.99)


@pytest.mark.parametrize(("subtype", "tolerance"), [
    ("PCM_U8", 1 / 128), ("PCM_16", 1 / 2**15), ("PCM_24", 1 / 2**23), ("PCM_32", 1e-7),
    ("FLOAT", 1e-7), ("DOUBLE", 1e-7)])
@pytest.mark.parametrize("channels", [1, 2])
def test_every_pcm_encoding_reads_to_float(tmp_path, rng, subtype, tolerance, channels):
    x = _signal(rng, 4000, channels)
    path = write_test_wav(tmp_path / f"{subtype}.wav", x, 22050, subtype)
    data, rate = read_audio(path)
    assert rate == 22050
    assert data.dtype == np.float32
    assert data.shape == ((4000,) if channels == 1 else (4000, channels))
    np.testing.assert_allclose(data.reshape(4000, channels), x, atol=tolerance)


def test_int16_scaling_is_the_reference_division(tmp_path):
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    path = write_wav(tmp_path / "x.wav", pcm, RATE)
    data, _ = read_audio(path)
    np.testing.assert_array_equal(data, pcm / 32768.0)
    np.testing.assert_array_equal(to_int16(data), pcm)  # exact round trip


def test_wave_format_extensible_multichannel(tmp_path, rng):
    x = _signal(rng, 3000, 6)
    path = write_test_wav(tmp_path / "x.wav", x, 48000, "PCM_24", "WAVEX")
    assert struct.unpack("<H", path.read_bytes()[20:22])[0] == 0xFFFE
    reader = open_audio(path)
    assert (reader.channels, reader.sample_rate, reader.frames) == (6, 48000, 3000)
    np.testing.assert_allclose(reader.read_all(), x, atol=2**-23)
    reader.close()


@pytest.mark.parametrize(("fmt", "subtype", "tolerance"), [("FLAC", "PCM_16", 1 / 2**15),
                                                          ("OGG", "VORBIS", None)])
def test_flac_and_ogg_via_soundfile(tmp_path, fmt, subtype, tolerance):
    t = np.arange(RATE * 2) / RATE
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = write_test_wav(tmp_path / f"x.{fmt.lower()}", x, RATE, subtype, fmt)
    data, rate = read_audio(path)
    assert rate == RATE
    if tolerance is not None:
        np.testing.assert_allclose(data, x, atol=tolerance)
    else:  # lossy: the tone is still a 440 Hz tone of the right level
        spectrum = np.abs(np.fft.rfft(data))
        assert np.argmax(spectrum) * RATE / data.shape[0] == pytest.approx(440, abs=1)
        assert np.sqrt(np.mean(data**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_blocks_cover_the_file_exactly(tmp_path, rng):
    x = _signal(rng, 10007, 2)
    path = write_test_wav(tmp_path / "x.wav", x, RATE, "PCM_16")
    with open_audio(path) as reader:
        blocks = list(reader.blocks(1000))
    assert [b.shape[0] for b in blocks] == [1000] * 10 + [7]
    np.testing.assert_allclose(np.concatenate(blocks), x, atol=1 / 2**15)


def _truncate(path, keep_bytes):
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])


def test_errors_are_typed_with_one_line_messages(tmp_path, rng):
    with pytest.raises(AudioFileNotFoundError, match="no such file"):
        open_audio(tmp_path / "missing.wav")
    with pytest.raises(NotAFileError, match="is a directory"):
        open_audio(tmp_path)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all, just some text\n" * 10)
    with pytest.raises(NotAudioError, match="not an audio file"):
        open_audio(text)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="0 bytes"):
        open_audio(empty)
    zero = write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.int16), RATE)
    with pytest.raises(EmptyAudioError, match="zero length"):
        open_audio(zero)
    truncated = write_wav(tmp_path / "trunc.wav", to_int16(_signal(rng, RATE, 1)[:, 0]), RATE)
    _truncate(truncated, 44 + RATE)  # header + half the samples
    with pytest.raises(CorruptAudioError, match="truncated WAV"):
        open_audio(truncated)
    header_only = write_wav(tmp_path / "hdr.wav", np.zeros(100, dtype=np.int16), RATE)
    _truncate(header_only, 30)
    with pytest.raises(CorruptAudioError):
        open_audio(header_only)
    short = write_wav(tmp_path / "short.wav", np.zeros(RATE // 2, dtype=np.int16), RATE)
    with pytest.raises(AudioTooShortError, match="shorter than"):
        open_audio(short, min_seconds=0.975)
    nan = np.zeros(RATE * 2, dtype=np.float32)
    nan[RATE] = np.nan
    nan_path = write_test_wav(tmp_path / "nan.wav", nan, RATE, "FLOAT")
    with open_audio(nan_path) as reader, pytest.raises(InvalidSamplesError, match=r"1\.000 s"):
        reader.read_all()
    for error in (AudioFileNotFoundError, NotAFileError, NotAudioError, CorruptAudioError,
                  EmptyAudioError, InvalidSamplesError, AudioTooShortError):
        assert issubclass(error, ValueError)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_stream_resampler_equals_whole_signal_resampling(rng, rate):
    import resampy

    x = rng.standard_normal(rate * 3 + 123) * 0.1
    whole = resampy.resample(x, rate, RATE)
    resampler = StreamResampler(rate, RATE)
    parts = [resampler.process(x[i:i + 7919]) for i in range(0, x.shape[0], 7919)]
    parts.append(resampler.process(np.zeros(0), final=True))
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-9)


def test_mono_blocks_mix_down_then_resample(tmp_path, rng):
    import resampy

    x = _signal(rng, 44100 * 2, 2)
    path = write_test_wav(tmp_path / "x.wav", x, 44100, "FLOAT")
    with open_audio(path) as reader:
        streamed = np.concatenate(list(mono_blocks(reader, RATE, block_seconds=0.3)))
    expected = resampy.resample(x.astype(np.float32).mean(axis=1, dtype=np.float64), 44100, RATE)
    np.testing.assert_allclose(streamed, expected, atol=1e-6)


# Issue 23: audio libsndfile cannot read is named, with the conversion to use; a folder
# takes every extension the decoder reads and names what it skipped.

from tests.unsupported_formats import write_m4a, write_mp4_video, write_webm_opus  # noqa: E402


@pytest.mark.parametrize(("make", "name", "named", "convert"), [
    (write_m4a, "song.m4a", "(m4a/AAC)", "song.flac`"),
    (write_webm_opus, "talk.webm", "(WebM/Opus)", "talk.flac`"),
    (write_mp4_video, "clip.mp4", "(MP4 video, H.264 with AAC audio)", "-vn"),
])
def test_unsupported_containers_are_named_with_the_conversion(tmp_path, make, name, named,
                                                              convert):
    path = make(tmp_path / name)
    with pytest.raises(NotAudioError) as caught:  # a bad input: exit 2
        open_audio(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: format not supported {named}: convert it, e.g. "
                              f"`ffmpeg -i "), message
    assert convert in message and "\n" not in message
    assert "unrecognised" not in message
    assert type(caught.value).__name__ == "UnsupportedFormatError"


def test_unknown_bytes_are_still_not_an_audio_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not audio\n" * 100)
    with pytest.raises(NotAudioError, match="not an audio file"):
        open_audio(path)


def test_mp3_and_ogg_opus_are_read(tmp_path, rng):
    x = _signal(rng, RATE * 2, 1)[:, 0] * 0.5
    for name, fmt, subtype, rate in (("a.mp3", "MP3", "MPEG_LAYER_III", RATE),
                                     ("b.opus", "OGG", "OPUS", 48000)):
        path = write_test_wav(tmp_path / name, x, rate, subtype, fmt)
        with open_audio(path) as reader:
            assert reader.sample_rate == rate and reader.frames >= x.shape[0] * 0.9


def test_folders_take_every_decodable_extension_and_name_what_they_skip(tmp_path, rng):
    from audio.sources.files import audio_extensions, expand_audio_paths, skipped_summary

    assert {".mp3", ".opus", ".caf", ".w64", ".wav", ".flac"} <= set(audio_extensions())
    x = _signal(rng, RATE, 1)[:, 0]
    mp3 = write_test_wav(tmp_path / "a.mp3", x, RATE, "MPEG_LAYER_III", "MP3")
    wav = write_wav(tmp_path / "b.WAV", x, RATE)
    for name in ("c.m4a", "d.m4a", "e.m4a"):
        write_m4a(tmp_path / name)
    (tmp_path / ".DS_Store").write_bytes(b"\0" * 10)
    skipped: list = []
    assert expand_audio_paths([tmp_path], on_skipped=skipped.append) == [mp3, wav]
    assert sorted(p.name for p in skipped) == ["c.m4a", "d.m4a", "e.m4a"]
    assert skipped_summary(skipped) == "skipped 3 files: unsupported format (.m4a)"
    (tmp_path / "notes").write_text("x")
    (tmp_path / "cover.jpg").write_text("x")
    skipped.clear()
    expand_audio_paths([tmp_path], on_skipped=skipped.append)
    assert skipped_summary(skipped) == ("skipped 5 files: unsupported format (.m4a, .jpg, "
                                        "no extension)")
    assert skipped_summary([]) is None


def test_batch_inputs_take_mp3_and_warn_once_about_what_they_skip(tmp_path, rng, caplog):
    import logging

    from audio.batch.inputs import expand

    x = _signal(rng, RATE, 1)[:, 0]
    (tmp_path / "sub").mkdir()
    write_test_wav(tmp_path / "sub" / "a.mp3", x, RATE, "MPEG_LAYER_III", "MP3")
    write_test_wav(tmp_path / "b.flac", x, RATE, "PCM_16", "FLAC")
    write_m4a(tmp_path / "c.m4a")
    write_m4a(tmp_path / "sub" / "d.m4a")
    with caplog.at_level(logging.WARNING, logger="audio.batch.inputs"):
        tasks, errors = expand([str(tmp_path)])
    assert [t.relative for t in tasks] == ["b.flac", "sub/a.mp3"] and errors == []
    assert caplog.messages == ["skipped 2 files: unsupported format (.m4a)"]
    only_m4a = tmp_path / "sub2"
    only_m4a.mkdir()
    write_m4a(only_m4a / "e.m4a")
    tasks, errors = expand([str(only_m4a)])
    assert tasks == [] and errors == [(str(only_m4a), f"{only_m4a}: no audio files in this "
                                       f"folder (skipped 1 file: unsupported format (.m4a))")]
