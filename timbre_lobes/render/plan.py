"""Planning a rendered corpus: its pitch grid, its instruments, their NSynth names and splits.

Every melodic preset of the given sound sources (SoundFonts, TiMidity++ patch
sets, STK, DX7 voices; ``timbre_lobes.render.catalog``) is one instrument, unless
it is silent or a near-copy of an instrument before it
(``timbre_lobes.render.independence``). Each source's ``classify`` gives the
family and source: the GM program's (``gm_programs``) for General MIDI banks, a
table for STK, the voice name for DX7; the rule used is kept as
``family_rule``. Instruments are numbered in the order of the sources as given,
then their presets: ``instrument`` counts all of them, and the ``NNN`` of
``<family>_<source>_<NNN>`` counts within each family and source. Pitches lie
on a grid of ``pitch_step`` semitones through middle C within MIDI 21-108.

Splits are instrument-disjoint and drawn per family with a fixed seed, so that
every family with at least 3 instruments has some in each split. ``leave_out``
puts all instruments of those sources (or source groups) in ``test`` and splits
the others into ``train`` and ``valid`` only, so ``test`` measures
generalisation to an unseen source. MuseScore_General is built from FluidR3_GM's
samples: the catalogue puts both in one group, and the independence check drops
MuseScore's copies when both are rendered.

Nothing here renders audio; ``timbre_lobes.render.runner.render_corpus`` does.
"""

import os
import random
import warnings

from timbre_lobes.data.nsynth_labels import SPLITS, family_index, instrument_str, source_index
from timbre_lobes.render.catalog import check_installed, open_source, source_info
from timbre_lobes.render.gm_programs import gm_family_source, gm_program_name
from timbre_lobes.render.independence import COPY_THRESHOLD_DB, find_copies
from timbre_lobes.render.sources import SoundFontSynth  # noqa: F401  (tests patch its presets)

#: NSynth's pitch range, the 88 keys of a piano (MIDI 21-108).
LOWEST_PITCH = 21
HIGHEST_PITCH = 108
#: Pitch grids pass through middle C.
PITCH_ANCHOR = 60
#: MIDI data bytes (pitch, velocity) take 128 values.
MIDI_VALUES = 128
#: Fractions of each family's instruments in train, valid and test.
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SEED = 1234
#: SoundFonts (file name or stem) whose presets are all synthesized.
SYNTHETIC_SOUNDFONTS = ("OPL-3_FM_128M",)


def pitch_grid(lowest=LOWEST_PITCH, highest=HIGHEST_PITCH, step=1, offset=0):
    """Pitches from ``lowest`` to ``highest`` every ``step`` semitones through C4 + ``offset``.

    Example
    -------
    >>> pitch_grid(21, 108, 12)
    [24, 36, 48, 60, 72, 84, 96, 108]
    >>> pitch_grid(21, 108, 12, offset=7)
    [31, 43, 55, 67, 79, 91, 103]
    """
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"pitch_step must be a positive integer, got {step!r}")
    if not 0 <= lowest <= highest < MIDI_VALUES:
        raise ValueError(f"pitch range must satisfy 0 <= lowest <= highest <= 127, got {lowest}-{highest}")
    pitches = [p for p in range(lowest, highest + 1) if (p - PITCH_ANCHOR - offset) % step == 0]
    if not pitches:
        raise ValueError(
            f"no pitch of MIDI {lowest}-{highest} lies on the {step}-semitone grid through {PITCH_ANCHOR + offset}"
        )
    return pitches


#: Kinds of sources whose presets are General MIDI (bank, program) pairs.
GM_KINDS = ("soundfont", "timidity")

#: Semitones between the grids of consecutive instruments when pitches are
#: staggered: a fifth, so that with a 12-semitone step twelve consecutive
#: instruments cover the twelve pitch classes.
STAGGER_SEMITONES = 7


def instrument_pitches(instrument, lowest, highest, step, stagger=False):
    """The pitches one instrument is rendered at.

    Without ``stagger`` every instrument shares ``pitch_grid(lowest, highest,
    step)``. With it, instrument ``n``'s grid is shifted by ``n *
    STAGGER_SEMITONES`` modulo ``step``: each instrument keeps ``step``
    semitones between its notes, but the corpus holds every pitch class, not
    only those of one grid (a model trained on Cs alone meets other pitches
    first at test time; real recordings are at any pitch).

    Example
    -------
    >>> [instrument_pitches(n, 21, 108, 12, stagger=True)[:2] for n in range(3)]
    [[24, 36], [31, 43], [26, 38]]
    """
    offset = (instrument * STAGGER_SEMITONES) % step if stagger else 0
    return pitch_grid(lowest, highest, step, offset)


def _check_fractions(fractions):
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be {len(SPLITS)} non-negative numbers for {SPLITS} "
            f"summing to 1, with some train, got {fractions!r}"
        )


def _split_sizes(count, fractions):
    """Train, valid and test sizes of one family, keeping one train instrument
    and, where there are enough, one in each split with a non-zero fraction."""
    sizes = [0, round(count * fractions[1]), round(count * fractions[2])]
    for split in (2, 1):
        if fractions[split] > 0 and sizes[split] == 0 and count - sum(sizes) > 1:
            sizes[split] = 1
    while count - sizes[1] - sizes[2] < 1 and sizes[1] + sizes[2] > 0:
        sizes[1 if sizes[1] >= sizes[2] else 2] -= 1
    sizes[0] = count - sizes[1] - sizes[2]
    return sizes


def assign_splits(families, seed=DEFAULT_SEED, fractions=DEFAULT_FRACTIONS, held_out=None):
    """Assigns instruments to splits, instrument-disjoint and stratified by family.

    Arguments
    ---------
    families : list of str
        The family of each instrument.
    seed : int
        Seed of the per-family shuffles; the same seed gives the same splits.
    fractions : tuple of float
        Fractions of each family in train, valid and test. A family of n >= 3
        instruments gets at least one in valid and test (two instruments: one
        train, one test; one: train).
    held_out : list of bool, optional
        Instruments forced into test; the others are then split into train and
        valid only, in the ratio of the first two fractions.

    Returns
    -------
    list of str
        The split of each instrument.

    Example
    -------
    >>> splits = assign_splits(["reed"] * 10 + ["brass"] * 3, seed=0)
    >>> splits.count("train"), splits.count("valid"), splits.count("test")
    (9, 2, 2)
    """
    _check_fractions(fractions)
    held_out = held_out or [False] * len(families)
    if len(held_out) != len(families):
        raise ValueError("held_out needs one flag per instrument")
    splits = ["test" if out else None for out in held_out]
    if any(held_out):
        train_valid = fractions[0] + fractions[1]
        fractions = (fractions[0] / train_valid, fractions[1] / train_valid, 0.0)
    for family in sorted(set(families)):
        members = [i for i, f in enumerate(families) if f == family and not held_out[i]]
        random.Random(f"{seed}-{family}").shuffle(members)
        start = 0
        for split, size in zip(SPLITS, _split_sizes(len(members), fractions)):
            for i in members[start : start + size]:
                splits[i] = split
            start += size
    return splits


def _source_names(source_or_spec):
    """The names a source answers to in ``leave_out`` and ``synthetic_soundfonts``."""
    spec = os.fspath(source_or_spec)
    names = {spec, os.path.basename(spec), os.path.splitext(os.path.basename(spec))[0]}
    try:
        info = source_info(spec)
    except ValueError:
        return names
    return names | {
        info.name,
        info.group,
        os.path.basename(info.path),
        os.path.splitext(os.path.basename(info.path))[0],
    }


def _matching(spec, names):
    return bool(_source_names(spec) & set(names))


def plan_corpus(
    sources,
    programs=None,
    seed=DEFAULT_SEED,
    fractions=DEFAULT_FRACTIONS,
    leave_out=None,
    synthetic_soundfonts=SYNTHETIC_SOUNDFONTS,
    survey=None,
    copy_threshold_db=COPY_THRESHOLD_DB,
    dropped=None,
):
    """Lists the instruments of a corpus with their NSynth names, sources and splits.

    Renders nothing itself; ``render_corpus`` takes the same arguments and
    passes a ``survey`` that renders a few notes of every candidate preset, so
    that splits are drawn over presets that sound and are not copies of an
    earlier one (:mod:`timbre_lobes.render.independence`).

    Arguments
    ---------
    sources : list of str
        Catalogue names or file paths of the sound sources
        (:func:`timbre_lobes.render.catalog.open_source`); the order fixes the
        instrument numbers, and copies are dropped from the later source.
    programs : list of int, optional
        Only presets of these GM programs (default: all with a family); sources
        without GM programs (STK, DX7) then give none.
    seed, fractions : see ``assign_splits``.
    leave_out : list of str, optional
        Names (catalogue name, file name or stem, or group) of sources whose
        instruments all go to test: a leave-one-source-out corpus.
    synthetic_soundfonts : list of str
        Names of SoundFonts outside the catalogue whose presets are all synthetic.
    survey : callable, optional
        ``survey(candidates) -> [(sounds, fingerprint), ...]``, one per
        candidate instrument dict (with ``source_spec`` and ``preset``):
        whether it sounds, and its fingerprint (``preset_fingerprint``) or None.
        Silent presets and copies are left out before the splits are drawn.
    copy_threshold_db : float
        A preset within this distance (dB) of a preset kept before it is a copy.
    dropped : list, optional
        Receives a dict per left-out candidate: ``sound_source``, ``preset``,
        ``preset_name``, ``reason`` (``silent`` or ``copy``), and for copies
        ``copy_of`` (the kept instrument's source and preset name) and
        ``distance_db``.

    Returns
    -------
    list of dict
        Per instrument: ``instrument``, ``instrument_str``, family and source
        (names and indices), ``sound_source``, ``source_group``, ``licence``,
        ``recorded``, ``source_spec``, ``preset`` (the fields ``render_note``
        takes before pitch and velocity), ``preset_name``, ``family_rule``,
        ``split``; SoundFonts add ``soundfont`` (file name), ``bank`` and
        ``program``, TiMidity++ patch sets ``bank`` and ``program``.

    Example
    -------
    >>> plan = plan_corpus(["/usr/share/sounds/sf2/TimGM6mb.sf2"], programs=[0, 1])
    >>> [(i["instrument_str"], i["preset_name"], i["sound_source"]) for i in plan]
    [('keyboard_acoustic_000', 'Piano 1', 'timgm6mb'), ('keyboard_acoustic_001', 'Piano 2', 'timgm6mb')]

    Raises
    ------
    ValueError
        No source, a source given twice, an unknown ``leave_out`` or
        ``programs`` entry, or no melodic preset to render (e.g. a SoundFont of
        drum kits only; the message lists what each source holds).
    FileNotFoundError
        A source that is not installed (the message names its package).
    """
    specs = [os.fspath(spec) for spec in sources]
    if not specs:
        raise ValueError("no sound source given")
    infos = [source_info(spec, _matching(spec, synthetic_soundfonts)) for spec in specs]
    for info in infos:
        check_installed(info)
    names = [info.name for info in infos]
    if len(set(names)) != len(names):
        raise ValueError(f"sound sources must be distinct, got {names}")
    leave_out = set(leave_out or ())
    unknown = leave_out - {n for spec in specs for n in _source_names(spec)}
    if unknown:
        raise ValueError(f"cannot leave out {sorted(unknown)}: not among {names}")
    if programs is not None:
        for program in programs:
            if gm_family_source(program) is None:
                raise ValueError(
                    f"GM program {program} ({gm_program_name(program)}) has no NSynth family and is never rendered"
                )
        programs = set(programs)

    without_programs = [info.name for info in infos if info.kind not in GM_KINDS]
    if programs is not None and without_programs:
        if len(without_programs) == len(infos):
            raise ValueError(
                f"{', '.join(without_programs)} have no General MIDI programs: --programs selects none of their "
                "presets (leave --programs out to render them all)"
            )
        warnings.warn(
            f"{', '.join(without_programs)} have no General MIDI programs: --programs leaves none of their presets",
            stacklevel=2,
        )
    candidates, found = [], {}
    for spec, info in zip(specs, infos):
        with open_source(spec, synthetic=not info.recorded) as source:
            presets = source.presets()
            samples = source.preset_samples() if survey is not None and info.kind == "soundfont" else {}
            without_family = 0
            for *preset, preset_name in presets:
                label = source.classify(*preset, preset_name)
                without_family += label is None
                program = preset[1] if info.kind in GM_KINDS else None
                if label is None or (programs is not None and program not in programs):
                    continue
                family, nsynth_source, rule = label
                candidate = {
                    "instrument_family_str": family,
                    "instrument_source_str": nsynth_source,
                    "sound_source": source.name,
                    "source_group": source.group,
                    "licence": source.licence,
                    "recorded": source.recorded,
                    "source_spec": source.spec,
                    "preset": list(preset),
                    "preset_name": preset_name,
                    "family_rule": rule,
                }
                if info.kind == "soundfont":
                    candidate["soundfont"] = os.path.basename(source.soundfont)
                    candidate["_samples"] = samples.get(tuple(preset), set())
                if program is not None:
                    candidate.update(bank=preset[0], program=program)
                candidates.append(candidate)
        found[source.name] = [len(presets), without_family, 0, 0]

    keep = [True] * len(candidates)
    if survey is not None and candidates:
        results = survey(candidates)
        sounding = [i for i, (sounds, _) in enumerate(results) if sounds]
        for i, (sounds, _) in enumerate(results):
            if not sounds:
                keep[i] = False
                found[candidates[i]["sound_source"]][2] += 1
                _drop(dropped, candidates[i], "silent")
        printed = [i for i in sounding if results[i][1] is not None]
        copies = find_copies(
            [results[i][1] for i in printed],
            copy_threshold_db,
            samples=[candidates[i].get("_samples", set()) for i in printed],
            groups=[candidates[i]["source_group"] for i in printed],
        )
        for i, copy in zip(printed, copies):
            if copy is not None:
                keep[i] = False
                found[candidates[i]["sound_source"]][3] += 1
                original = candidates[printed[copy[0]]]
                _drop(
                    dropped,
                    candidates[i],
                    "copy",
                    copy_of=f"{original['sound_source']}: {original['preset_name']}",
                    distance_db=copy[1],
                    shares_samples=bool(candidates[i].get("_samples", set()) & original.get("_samples", set())),
                )

    instruments, numbers = [], {}
    for candidate, kept in zip(candidates, keep):
        if not kept:
            continue
        family, source = candidate["instrument_family_str"], candidate["instrument_source_str"]
        number = numbers.get((family, source), 0)
        numbers[(family, source)] = number + 1
        candidate = {k: v for k, v in candidate.items() if k != "_samples"}
        instruments.append(
            dict(
                candidate,
                instrument=len(instruments),
                instrument_str=instrument_str(family, source, number),
                instrument_family=family_index(family),
                instrument_source=source_index(source),
            )
        )
    if not instruments:
        chosen = "" if programs is None else f" among programs {sorted(programs)}"
        summary = "; ".join(
            (f"{name}: " if len(found) > 1 else "")
            + f"{total} presets outside the drum bank, {none} of them with no NSynth family (sound effects), "
            f"{silent} silent, {copied} copies"
            for name, (total, none, silent, copied) in found.items()
        )
        raise ValueError(
            f"no melodic presets to render{chosen} in {', '.join(names)} ({summary}; drum kits are never rendered)"
        )
    # A source named in leave_out holds out its whole group: a copy in another source of
    # the group (MuseScore_General of FluidR3_GM) must not stay in training.
    held_groups = {i["source_group"] for i in instruments if _matching(i["source_spec"], leave_out)}
    held_out = [i["source_group"] in held_groups for i in instruments]
    if held_out and all(held_out):
        raise ValueError(
            f"leaving out {sorted(leave_out)} (source groups {sorted(held_groups)}) holds out every instrument: "
            "nothing is left to train on"
        )
    splits = assign_splits(
        [i["instrument_family_str"] for i in instruments],
        seed=seed,
        fractions=fractions,
        held_out=held_out,
    )
    for instrument, split in zip(instruments, splits):
        instrument["split"] = split
    return instruments


def _drop(dropped, candidate, reason, **details):
    if dropped is not None:
        dropped.append(
            {
                "sound_source": candidate["sound_source"],
                "preset": candidate["preset"],
                "preset_name": candidate["preset_name"],
                "reason": reason,
                **details,
            }
        )
