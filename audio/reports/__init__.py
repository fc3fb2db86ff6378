"""Reports of classified files: what ``parse_file.py`` prints and writes.

``parse_file.py`` is a thin command line over :func:`audio.reports.batch.classify_files`,
a keyword API that expands the inputs (files, folders), classifies each file once and
reports it in one of :data:`FORMATS`:

* ``text``: the original's ranking line, then the timeline, the events and the count;
* ``json``: JSON Lines, one object per file;
* ``csv``: one row per ranked class (and per window, per event);
* ``audacity``: an Audacity label track, one ``start<TAB>end<TAB>label`` line per event;
* ``raven``: a Raven Pro selection table, one row per event.

The last two are per file by nature (a label track belongs to one recording): with
several inputs they are written to ``--output_dir``, one file per input.

This module imports nothing, so that the scripts' ``--help`` stays instant; the writers
live in :mod:`audio.reports.writer`, the formatting of one event in
:mod:`audio.reports.formats`, inputs and output paths in :mod:`audio.reports.inputs`.
"""

FORMATS: tuple[str, ...] = ("text", "json", "csv", "audacity", "raven")
EVENT_FORMATS: tuple[str, ...] = ("audacity", "raven")
"""Formats made of sound events only: they imply ``--events``, and hold one file each."""
SUFFIXES: dict[str, str] = {"text": ".txt", "json": ".json", "csv": ".csv",
                            "audacity": ".txt", "raven": ".selections.txt"}
"""Each format's file name ending under ``--output_dir`` (``<stem><suffix>``): Audacity
imports ``.txt`` label files; ``.selections.txt`` is how Raven and BirdNET-Analyzer name
selection tables."""
