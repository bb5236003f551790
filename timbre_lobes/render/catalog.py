"""The catalogue of installable sound sources, and opening a source by name or path.

A corpus names its sources as catalogue names (``--source generaluser``) or
files (a ``.sf2``/``.sf3`` SoundFont, a TiMidity++ ``.cfg``). Each catalogue
entry says where its sounds lie, which Debian or PyPI package installs them,
their licence, their *independence group* and whether they are recordings:

=============  ======================  ================  ====================  =========
name           sounds                  package(s)        licence               group
=============  ======================  ================  ====================  =========
fluidr3        FluidR3_GM SoundFont    fluid-soundfont-gm  MIT                 fluidr3
musescore      MuseScore_General       musescore-general-soundfont  MIT        fluidr3
timgm6mb       TimGM6mb SoundFont      timgm6mb-soundfont  GPL-2               timgm6mb
opl3           OPL-3 FM SoundFont      opl3-soundfont    CC-BY-SA-4.0          opl3
generaluser    GeneralUser GS 1.47     minuet-data       GeneralUser GS licence  generaluser
airfont        Airfont 320 (A320U)     denemo-data       GPL-2                 airfont
freepats       Freepats Gravis patches freepats, timidity  GPL-2+ with exception  freepats
stk            STK physical models     stk, faketime     STK licence (MIT-like)  stk
dx7            DX7/TX7/FB-01 voices    hexter, dexed-py  GPL-2+ (voice data: Yamaha)  dx7
=============  ======================  ================  ====================  =========

MuseScore_General is built from FluidR3_GM's samples, hence one group: splits
and leave-one-source-out never separate a group. Groups are a first guess from
provenance; :mod:`timbre_lobes.render.independence` measures the rest (Airfont
320 reuses many TimGM6mb samples; such presets are dropped as copies).
"""

import importlib.util
import os
import shutil
from dataclasses import dataclass

from timbre_lobes.render.sources import DEFAULT_GAIN, SoundFontSynth


@dataclass(frozen=True)
class SourceInfo:
    """One installable sound source of the catalogue.

    Attributes
    ----------
    name : str
        Catalogue name, as given to ``--source``.
    kind : str
        ``soundfont``, ``timidity``, ``stk`` or ``dx7``.
    path : str
        File or folder the sounds are read from (empty for ``stk``).
    packages : str
        What installs it (Debian packages, ``pip:`` for PyPI).
    licence : str
        Licence of the sounds.
    group : str
        Independence group.
    recorded : bool
        A bank of recordings (True) or a synthesizer (False).
    description : str
        One line for the corpus table.
    """

    name: str
    kind: str
    path: str
    packages: str
    licence: str
    group: str
    recorded: bool
    description: str


CATALOG = {
    info.name: info
    for info in (
        SourceInfo(
            "fluidr3",
            "soundfont",
            "/usr/share/sounds/sf2/FluidR3_GM.sf2",
            "fluid-soundfont-gm",
            "MIT",
            "fluidr3",
            True,
            "FluidR3_GM General MIDI SoundFont (Frank Wen)",
        ),
        SourceInfo(
            "musescore",
            "soundfont",
            "/usr/share/sounds/sf3/MuseScore_General.sf3",
            "musescore-general-soundfont",
            "MIT",
            "fluidr3",
            True,
            "MuseScore_General SoundFont, built from FluidR3_GM's samples",
        ),
        SourceInfo(
            "timgm6mb",
            "soundfont",
            "/usr/share/sounds/sf2/TimGM6mb.sf2",
            "timgm6mb-soundfont",
            "GPL-2",
            "timgm6mb",
            True,
            "TimGM6mb General MIDI SoundFont (Tim Brechbill)",
        ),
        SourceInfo(
            "opl3",
            "soundfont",
            "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",
            "opl3-soundfont",
            "CC-BY-SA-4.0",
            "opl3",
            False,
            "OPL-3 FM chip sounds as a SoundFont",
        ),
        SourceInfo(
            "generaluser",
            "soundfont",
            "/usr/share/minuet/soundfonts/GeneralUser-v1.47.sf2",
            "minuet-data",
            "GeneralUser GS licence v2.0 (free, commercial use allowed; S. Christian Collins)",
            "generaluser",
            True,
            "GeneralUser GS 1.47 SoundFont",
        ),
        SourceInfo(
            "airfont",
            "soundfont",
            "/usr/share/sounds/sf2/A320U.sf2",
            "denemo-data",
            "GPL-2",
            "airfont",
            True,
            "Airfont 320 SoundFont (Milton Paredes)",
        ),
        SourceInfo(
            "freepats",
            "timidity",
            "/etc/timidity/freepats.cfg",
            "freepats timidity",
            "GPL-2+ with a font exception",
            "freepats",
            True,
            "Freepats Gravis Ultrasound patches, played by TiMidity++",
        ),
        SourceInfo(
            "stk",
            "stk",
            "",
            "stk faketime",
            "STK licence (MIT-like)",
            "stk",
            False,
            "Synthesis ToolKit physical and FM models (stk-demo, its clock frozen by faketime)",
        ),
        SourceInfo(
            "dx7",
            "dx7",
            "/usr/share/hexter",
            "hexter pip:dexed-py",
            "GPL-2+ (hexter); Yamaha DX7/TX7/FB-01 factory voice data",
            "dx7",
            False,
            "DX7, TX7 and FB-01 factory FM voices, played by Dexed",
        ),
    )
}
#: The sources of the default corpus, in numbering order (MuseScore_General is
#: left out: it is a copy of FluidR3_GM).
DEFAULT_SOURCES = ("fluidr3", "timgm6mb", "opl3", "generaluser", "airfont", "freepats", "stk", "dx7")


def source_info(spec, synthetic=False):
    """The :class:`SourceInfo` of a catalogue name or a file path.

    A ``.sf2``/``.sf3`` path that is not a catalogue file becomes its own
    group, named after its stem, with an unknown licence; a ``.cfg`` path a
    TiMidity++ patch set. ``synthetic`` marks such a SoundFont as synthesized.

    Raises
    ------
    ValueError
        For a name that is not in the catalogue and not a SoundFont or
        TiMidity++ configuration path.
    """
    spec = os.fspath(spec)
    if spec in CATALOG:
        return CATALOG[spec]
    path = os.path.abspath(spec)
    for info in CATALOG.values():
        if info.path and os.path.abspath(info.path) == path:
            return info
    stem, ext = os.path.splitext(os.path.basename(path))
    kinds = {".sf2": "soundfont", ".sf3": "soundfont", ".cfg": "timidity"}
    if ext.lower() not in kinds:
        raise ValueError(
            f"unknown sound source {spec!r}: give a catalogue name ({', '.join(CATALOG)}), "
            "a .sf2/.sf3 SoundFont or a TiMidity++ .cfg file"
        )
    return SourceInfo(stem, kinds[ext.lower()], path, "", None, stem, not synthetic, f"{stem}{ext}")


#: The programs each kind of source runs, and the Debian package that installs each.
PROGRAMS = {"timidity": (("timidity", "timidity"),), "stk": (("stk-demo", "stk"), ("faketime", "faketime"))}
#: The Python module each kind of source imports, and the PyPI package that installs it.
MODULES = {"dx7": ("dexed", "dexed-py")}


def missing(info):
    """What of a source is not installed (a one-line message naming the package), or None."""
    if info.path and not os.path.exists(info.path):
        install = " ".join(p for p in info.packages.split() if not p.startswith("pip:"))
        hint = f"; install it with `apt-get install {install}`" if install else ""
        return f"sound source {info.name}: {info.path} not found{hint}"
    for program, package in PROGRAMS.get(info.kind, ()):
        if shutil.which(program) is None:
            return f"sound source {info.name}: {program} not found; install it with `apt-get install {package}`"
    if info.kind in MODULES and importlib.util.find_spec(MODULES[info.kind][0]) is None:
        module, package = MODULES[info.kind]
        return f"sound source {info.name}: Python module {module} not found; install it with `pip install {package}`"
    return None


def check_installed(info):
    """Raises ``FileNotFoundError`` naming the package when a source's sounds or player are missing."""
    problem = missing(info)
    if problem:
        raise FileNotFoundError(problem)


def open_source(spec, gain=DEFAULT_GAIN, synthetic=False):
    """Opens a :class:`~timbre_lobes.render.sources.SoundSource` by catalogue name or path.

    Arguments
    ---------
    spec : str
        A catalogue name (:data:`CATALOG`) or a file path.
    gain : float
        FluidSynth's master gain (SoundFonts only).
    synthetic : bool
        For a SoundFont outside the catalogue: are all its presets synthesized?

    Returns
    -------
    SoundSource
        With ``name``, ``spec``, ``group``, ``licence`` and ``recorded`` set.

    Raises
    ------
    FileNotFoundError
        If the sounds, or the program that plays them, are not installed.
    ValueError
        For an unknown name.
    """
    info = source_info(spec, synthetic)
    check_installed(info)
    if info.kind == "soundfont":
        source = SoundFontSynth(
            info.path, gain=gain, synthetic=not info.recorded, group=info.group, licence=info.licence
        )
    elif info.kind == "timidity":
        from timbre_lobes.render.synths import TimiditySynth

        source = TimiditySynth(info.path, name=info.name, group=info.group, licence=info.licence)
    elif info.kind == "stk":
        from timbre_lobes.render.synths import StkSynth

        source = StkSynth()
    else:
        from timbre_lobes.render.synths import Dx7Synth

        source = Dx7Synth(info.path, name=info.name, group=info.group)
    known = CATALOG.get(info.name) == info
    source.name, source.group, source.recorded = info.name, info.group, info.recorded
    source.licence = info.licence or source.licence
    source.spec = info.name if known else info.path
    return source
