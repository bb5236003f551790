"""Planning a rendered corpus: its pitch grid, its instruments, their NSynth names and splits.

Every melodic preset (SoundFont, bank, program) of the given SoundFonts is one
instrument. Family and source come from ``gm_programs``; a SoundFont named in
``synthetic_soundfonts`` (by default the OPL-3 FM SoundFont) makes all its
presets synthetic. Instruments are numbered in the order SoundFont (as given),
bank, program: ``instrument`` counts all of them, and the ``NNN`` of
``<family>_<source>_<NNN>`` counts within each family and source. Pitches lie
on a grid of ``pitch_step`` semitones through middle C within MIDI 21-108.

Splits are instrument-disjoint and drawn per family with a fixed seed, so that
every family with at least 3 instruments has some in each split.
``leave_out_soundfonts`` puts all instruments of those SoundFonts in ``test``
and splits the others into ``train`` and ``valid`` only, so ``test`` measures
generalisation to an unseen SoundFont. MuseScore_General is derived from
FluidR3_GM and reuses many of its samples: the two are not independent sources,
and leaving one out while training on the other is not a fair held-out test.

Nothing here renders audio; ``timbre_lobes.render.runner.render_corpus`` does.
"""

import os
import random

from timbre_lobes.data.nsynth_labels import SPLITS, family_index, instrument_str, source_index
from timbre_lobes.render.gm_programs import gm_family_source, gm_program_name
from timbre_lobes.render.sources import SoundFontSynth, check_soundfont

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


def pitch_grid(lowest=LOWEST_PITCH, highest=HIGHEST_PITCH, step=1):
    """Pitches from ``lowest`` to ``highest`` every ``step`` semitones through C4.

    Example
    -------
    >>> pitch_grid(21, 108, 12)
    [24, 36, 48, 60, 72, 84, 96, 108]
    """
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"pitch_step must be a positive integer, got {step!r}")
    if not 0 <= lowest <= highest < MIDI_VALUES:
        raise ValueError(f"pitch range must satisfy 0 <= lowest <= highest <= 127, got {lowest}-{highest}")
    pitches = [p for p in range(lowest, highest + 1) if (p - PITCH_ANCHOR) % step == 0]
    if not pitches:
        raise ValueError(f"no pitch of MIDI {lowest}-{highest} lies on the {step}-semitone grid through {PITCH_ANCHOR}")
    return pitches


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


def _soundfont_names(path):
    name = os.path.basename(path)
    return name, os.path.splitext(name)[0]


def _matching(path, names):
    return any(name in names for name in _soundfont_names(path))


def plan_corpus(
    soundfonts,
    programs=None,
    seed=DEFAULT_SEED,
    fractions=DEFAULT_FRACTIONS,
    leave_out_soundfonts=None,
    synthetic_soundfonts=SYNTHETIC_SOUNDFONTS,
    sounding=None,
):
    """Lists the instruments of a corpus with their NSynth names and splits.

    Renders nothing itself; ``render_corpus`` takes the same arguments and
    passes a ``sounding`` probe, so that splits are drawn over the presets that
    actually sound (a silent preset never takes a valid or test place).

    Arguments
    ---------
    soundfonts : list of str
        SoundFont paths; the order fixes the instrument numbers.
    programs : list of int, optional
        Only presets of these GM programs (default: all with a family).
    seed, fractions : see ``assign_splits``.
    leave_out_soundfonts : list of str, optional
        File names or stems of SoundFonts whose instruments all go to test.
    synthetic_soundfonts : list of str
        File names or stems of SoundFonts whose presets are all synthetic.
    sounding : callable, optional
        ``sounding(soundfont_path, bank, program) -> bool``; presets for which it
        is False are left out before the splits are drawn.

    Returns
    -------
    list of dict
        Per instrument: ``instrument``, ``instrument_str``, family and source
        (names and indices), ``soundfont``, ``soundfont_path``, ``bank``,
        ``program``, ``preset_name`` and ``split``.

    Example
    -------
    >>> plan = plan_corpus(["/usr/share/sounds/sf2/TimGM6mb.sf2"], programs=[0, 1])
    >>> [(i["instrument_str"], i["preset_name"]) for i in plan]
    [('keyboard_acoustic_000', 'Piano 1'), ('keyboard_acoustic_001', 'Piano 2')]

    Raises
    ------
    ValueError
        No SoundFont, duplicate names, an unknown ``leave_out_soundfonts`` or
        ``programs`` entry, or no melodic preset to render (e.g. a SoundFont of
        drum kits only; the message lists what each file holds).
    """
    paths = [check_soundfont(path) for path in soundfonts]
    if not paths:
        raise ValueError("no SoundFont given")
    names = [os.path.basename(path) for path in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"SoundFont file names must be distinct, got {names}")
    leave_out = set(leave_out_soundfonts or ())
    unknown = leave_out - {n for path in paths for n in _soundfont_names(path)}
    if unknown:
        raise ValueError(f"cannot leave out {sorted(unknown)}: not among {names}")
    if programs is not None:
        for program in programs:
            if gm_family_source(program) is None:
                raise ValueError(
                    f"GM program {program} ({gm_program_name(program)}) has no NSynth family and is never rendered"
                )
        programs = set(programs)

    instruments, numbers, found = [], {}, []
    for path in paths:
        synthetic = _matching(path, synthetic_soundfonts)
        synth = SoundFontSynth(path)
        presets = synth.presets()
        synth.close()
        without_family = 0
        silent = 0
        for bank, program, preset_name in presets:
            family_source = gm_family_source(program, synthetic=synthetic)
            without_family += family_source is None
            if family_source is None or (programs is not None and program not in programs):
                continue
            if sounding is not None and not sounding(path, bank, program):
                silent += 1
                continue
            family, source = family_source
            number = numbers.get(family_source, 0)
            numbers[family_source] = number + 1
            instruments.append(
                {
                    "instrument": len(instruments),
                    "instrument_str": instrument_str(family, source, number),
                    "instrument_family": family_index(family),
                    "instrument_family_str": family,
                    "instrument_source": source_index(source),
                    "instrument_source_str": source,
                    "soundfont": os.path.basename(path),
                    "soundfont_path": path,
                    "bank": bank,
                    "program": program,
                    "preset_name": preset_name,
                }
            )
        found.append(
            f"{os.path.basename(path)}: {len(presets)} presets outside the drum bank, "
            f"{without_family} of them with no NSynth family (sound effects), {silent} silent"
        )
    if not instruments:
        chosen = "" if programs is None else f" among programs {sorted(programs)}"
        raise ValueError(
            f"no melodic presets to render{chosen} in {', '.join(names)} ({'; '.join(found)}; drum kits are never "
            "rendered)"
        )
    splits = assign_splits(
        [i["instrument_family_str"] for i in instruments],
        seed=seed,
        fractions=fractions,
        held_out=[_matching(i["soundfont_path"], leave_out) for i in instruments],
    )
    for instrument, split in zip(instruments, splits):
        instrument["split"] = split
    return instruments
