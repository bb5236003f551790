"""Synthesizers other than FluidSynth: TiMidity++ patches, STK physical models, DX7 FM voices.

Each is a :class:`~timbre_lobes.render.sources.SoundSource`: it lists its
presets, renders one note of one to 16 kHz mono ``int16`` (``NOTE_SECONDS``
long, the key held ``HOLD_SECONDS``, no reverb or chorus) and says which NSynth
family and source each preset belongs to and how that was decided.

* :class:`TimiditySynth`: Gravis Ultrasound patches (Debian ``freepats``) played
  by TiMidity++ (Debian ``timidity``) from a one-note MIDI file. Only the
  programs the patch set's configuration defines are presets: TiMidity++ always
  reads its system configuration first (Debian's sources FluidR3_GM), so a
  program the patch set lacks would sound FluidR3's sample.
* :class:`StkSynth`: the Synthesis ToolKit's instruments (Debian ``stk``), driven
  by ``stk-demo`` with a SKINI score; a preset is an instrument with a setting
  of its controllers (``STK_PRESETS``).
* :class:`Dx7Synth`: the DX7, TX7 and FB-01 factory voices of Debian ``hexter``
  (``.dx7`` banks of 32 packed voices each) played by the Dexed emulator
  (PyPI ``dexed-py``). Families come from the voice names (``DX7_FAMILY_WORDS``);
  a voice whose name says nothing (most sound effects) has none and is left out.

Renders by TiMidity++ and STK run one short process per note (about 20 ms).
"""

import os
import shutil
import struct
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from timbre_lobes.data.nsynth_labels import NOTE_SECONDS
from timbre_lobes.render.gm_programs import NUM_PROGRAMS
from timbre_lobes.render.sources import HOLD_SECONDS, SoundSource, gm_classify, to_note

#: MIDI file resolution and tempo of the one-note files given to TiMidity++.
MIDI_TICKS_PER_BEAT = 480
MIDI_TEMPO_US = 500_000
#: TiMidity++'s amplification (percent). Freepats' loudest velocity-127 notes
#: peak near 0.9 of full scale with it (its default, 70, leaves them near 0.2).
TIMIDITY_AMPLIFICATION = 300


def _need_program(program, package):
    path = shutil.which(program)
    if path is None:
        raise FileNotFoundError(f"{program} not found; install it with `apt-get install {package}`")
    return path


def _vlq(value):
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def one_note_midi(program, pitch, velocity, bank=0):
    """A Standard MIDI File (format 0) playing one note: held ``HOLD_SECONDS``, ending at ``NOTE_SECONDS``.

    Example
    -------
    >>> one_note_midi(40, 60, 100)[:4]
    b'MThd'
    """
    beats_per_second = 1e6 / MIDI_TEMPO_US
    held = round(HOLD_SECONDS * beats_per_second * MIDI_TICKS_PER_BEAT)
    rest = round((NOTE_SECONDS - HOLD_SECONDS) * beats_per_second * MIDI_TICKS_PER_BEAT)
    events = (
        b"\x00\xff\x51\x03"
        + MIDI_TEMPO_US.to_bytes(3, "big")
        + bytes([0x00, 0xB0, 0, bank, 0x00, 0xC0, program, 0x00, 0x90, pitch, velocity])
        + _vlq(held)
        + bytes([0x80, pitch, 0])
        + _vlq(rest)
        + b"\xff\x2f\x00"
    )
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, MIDI_TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(events)) + events


def _read_mono(path):
    audio, rate = sf.read(path, dtype="float64", always_2d=True)
    return audio.mean(axis=1), rate


def read_timidity_config(path):
    """The melodic programs of a TiMidity++ configuration's ``bank 0``: ``{program: patch path}``.

    Follows ``dir`` lines; ``source`` lines (other files) are not followed, so
    only what this file defines counts.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it defines no program of bank 0.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TiMidity++ configuration not found: {path}")
    directory, section, programs = os.path.dirname(path), None, {}
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] == "dir" and len(words) > 1:
                directory = words[1]
            elif words[0] in ("bank", "drumset"):
                section = (words[0], int(words[1])) if len(words) > 1 and words[1].isdigit() else None
            elif section == ("bank", 0) and words[0].isdigit() and len(words) > 1:
                program = int(words[0])
                if 0 <= program < NUM_PROGRAMS:
                    programs[program] = os.path.join(directory, words[1])
    if not programs:
        raise ValueError(f"{path} defines no melodic program (no `bank 0` entries)")
    return programs


class TimiditySynth(SoundSource):
    """Gravis patches played by TiMidity++, one process per note.

    Presets are ``(0, program, name)`` for every program of the configuration's
    ``bank 0`` whose patch file exists; families follow the GM program
    (:func:`~timbre_lobes.render.sources.gm_classify`).

    Arguments
    ---------
    config : str
        A TiMidity++ configuration, e.g. ``/etc/timidity/freepats.cfg``.
    name, group, licence : str, optional
        Names for the corpus metadata (default: the configuration's stem).
    sample_rate : int
        Output rate in Hz.
    amplification : int
        TiMidity++'s ``-A`` (percent).

    Raises
    ------
    FileNotFoundError
        If ``timidity`` or the configuration is missing.
    """

    def __init__(
        self, config, name=None, group=None, licence=None, sample_rate=16000, amplification=TIMIDITY_AMPLIFICATION
    ):
        self.timidity = _need_program("timidity", "timidity")
        self.config = os.path.abspath(config)
        self.programs = read_timidity_config(self.config)
        stem = os.path.splitext(os.path.basename(self.config))[0]
        self.name, self.group, self.licence = name or stem, group or stem, licence
        self.spec = self.config
        self.sample_rate, self.amplification = sample_rate, amplification

    def presets(self):
        """``(0, program, patch name)`` of every program whose patch file exists."""
        return [
            (0, program, os.path.splitext(os.path.basename(path))[0].split("_", 1)[-1].replace("_", " "))
            for program, path in sorted(self.programs.items())
            if os.path.isfile(path)
        ]

    def classify(self, bank, program, preset_name):
        """The NSynth family and source of the GM program."""
        return gm_classify(program)

    def render_note(self, bank, program, pitch, velocity):
        """Renders one note (``int16``, ``NOTE_SECONDS`` long); ``ValueError`` for an unknown program."""
        if bank != 0 or program not in self.programs:
            raise ValueError(f"{self.config} has no program {program} in bank {bank}")
        with tempfile.TemporaryDirectory(prefix="timidity-") as folder:
            midi, wav = os.path.join(folder, "note.mid"), os.path.join(folder, "note.wav")
            with open(midi, "wb") as f:
                f.write(one_note_midi(program, pitch, velocity))
            command = [self.timidity, "-c", self.config, "-Ow", "-o", wav, "--output-mono"]
            command += [f"-s{self.sample_rate}", f"-A{self.amplification}", "-EFreverb=d", "-EFchorus=d", "-EFdelay=d"]
            subprocess.run(command + [midi], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            audio, rate = _read_mono(wav)
        return to_note(audio, rate)


#: STK presets: ``(name, stk-demo instrument, {controller: value}, family)``. Every STK
#: instrument is a physical or FM model, so NSynth source ``synthetic``. Controllers
#: (STK's documentation of each class): ModalBar's and BandedWG's 16 selects a modal
#: preset; Clarinet/Brass/Flute 2 is reed stiffness / lip tension / jet delay; Bowed 4
#: bow position; Mandolin 2 body size; StifKarp 4 pickup position. Shakers, Drummer,
#: Mesh2D, Resonate and Whistle are unpitched or noise and are left out.
STK_PRESETS = (
    ("Clarinet", "Clarinet", {}, "reed"),
    ("Clarinet soft reed", "Clarinet", {2: 30}, "reed"),
    ("Clarinet stiff reed", "Clarinet", {2: 110}, "reed"),
    ("BlowHole", "BlowHole", {}, "reed"),
    ("Saxofony", "Saxofony", {}, "reed"),
    ("Flute", "Flute", {}, "flute"),
    ("Flute short jet", "Flute", {2: 30}, "flute"),
    ("Recorder", "Recorder", {}, "flute"),
    ("BlowBotl", "BlowBotl", {}, "flute"),
    ("PercFlut", "PercFlut", {}, "flute"),
    ("Brass", "Brass", {}, "brass"),
    ("Brass tight lips", "Brass", {2: 100}, "brass"),
    ("Bowed", "Bowed", {}, "string"),
    ("Bowed near bridge", "Bowed", {4: 10}, "string"),
    ("Plucked", "Plucked", {}, "guitar"),
    ("StifKarp", "StifKarp", {}, "guitar"),
    ("StifKarp bridge pickup", "StifKarp", {4: 10}, "guitar"),
    ("Sitar", "Sitar", {}, "guitar"),
    ("Mandolin", "Mandolin", {}, "guitar"),
    ("Mandolin small body", "Mandolin", {2: 20}, "guitar"),
    ("Rhodey", "Rhodey", {}, "keyboard"),
    ("Wurley", "Wurley", {}, "keyboard"),
    ("BeeThree", "BeeThree", {}, "organ"),
    ("FMVoices", "FMVoices", {}, "vocal"),
    ("VoicForm", "VoicForm", {}, "vocal"),
    ("TubeBell", "TubeBell", {}, "mallet"),
    ("HevyMetl", "HevyMetl", {}, "synth_lead"),
    ("Moog", "Moog", {}, "synth_lead"),
    ("Simple", "Simple", {}, "synth_lead"),
    *(
        (f"ModalBar {name}", "ModalBar", {16: number}, "mallet")
        for number, name in enumerate(
            ("marimba", "vibraphone", "agogo", "wood 1", "reso", "wood 2", "beats", "two fixed", "clump")
        )
    ),
    *(
        (f"BandedWG {name}", "BandedWG", {16: number}, "mallet")
        for number, name in enumerate(("uniform bar", "tuned bar", "glass harmonica", "tibetan bowl"))
    ),
)


#: The clock stk-demo reads (through ``faketime``, frozen): it seeds STK's noise generator.
STK_CLOCK = "2000-01-01 00:00:00"


class StkSynth(SoundSource):
    """STK instruments rendered by ``stk-demo`` from a SKINI score, one process per note.

    Presets are ``(number, name)``, ``number`` indexing ``STK_PRESETS``.

    Raises
    ------
    FileNotFoundError
        If ``stk-demo`` is missing (Debian ``stk``).
    """

    name = "stk"
    group = "stk"
    recorded = False
    licence = "STK licence (MIT-like; Perry R. Cook and Gary P. Scavone)"

    def __init__(self, sample_rate=16000, presets=STK_PRESETS):
        self.stk_demo = _need_program("stk-demo", "stk")
        self.faketime = _need_program("faketime", "faketime")
        self.sample_rate, self._presets = sample_rate, presets
        self.spec = "stk"

    def presets(self):
        """``(number, name)`` of every entry of ``STK_PRESETS``."""
        return [(number, name) for number, (name, *_) in enumerate(self._presets)]

    def classify(self, number, preset_name):
        """The family written in ``STK_PRESETS``; source synthetic."""
        name, instrument, controls, family = self._presets[number]
        return family, "synthetic", f"STK instrument {instrument}: a {family} model (STK_PRESETS)"

    def render_note(self, number, pitch, velocity):
        """Renders one note (``int16``, ``NOTE_SECONDS`` long); ``ValueError`` for an unknown preset.

        Bit-reproducible: the wind models' (Clarinet, BlowHole, Flute, ...) breath noise
        comes from STK's ``Noise``, which stk-demo seeds from the clock; run without a
        fixed clock, a note rendered a second later differs sample by sample and its mean
        log-mel spectrum by up to 3.8 dB (Saxofony at MIDI 60, measured), near the
        independence check's 4 dB, so the default corpus changed between renders (996 or
        997 instruments). stk-demo therefore runs under ``faketime -f`` with the clock
        frozen at :data:`STK_CLOCK` (Debian ``faketime``, libfaketime). The ``-f`` matters:
        without it faketime starts a running clock at that date plus the real clock's
        fraction of a second, so about one note in 40 was seeded a second later and
        came out different.
        """
        if not 0 <= number < len(self._presets):
            raise ValueError(f"no STK preset {number}")
        _, instrument, controls, _ = self._presets[number]
        score = [f"ControlChange 0.0 1 {cc} {value}" for cc, value in controls.items()]
        score += [f"NoteOn 0.0 1 {pitch} {velocity}", f"NoteOff {HOLD_SECONDS} 1 {pitch} 64"]
        with tempfile.TemporaryDirectory(prefix="stk-") as folder:
            skini, wav = os.path.join(folder, "note.ski"), os.path.join(folder, "note.wav")
            with open(skini, "w") as f:
                f.write("\n".join(score) + "\n")
            command = [self.faketime, "-f", STK_CLOCK, self.stk_demo, instrument, "-s", str(self.sample_rate)]
            command += ["-ow", wav, "-if", skini]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            audio, rate = _read_mono(wav)
        return to_note(audio, rate)


#: Folder of Debian hexter's factory voice banks.
HEXTER_BANKS = "/usr/share/hexter"
#: Bytes of one packed DX7 voice, and voices per bank.
DX7_VOICE_BYTES, DX7_BANK_VOICES = 128, 32
#: Linear gain on Dexed's output: its loudest factory voices peak near 4 of full scale.
DX7_GAIN = 0.2
#: Words of a DX7 voice name, upper-cased, and the NSynth family each gives; the
#: first that occurs in the name decides (order matters: BASSOON before BASS,
#: HARPSI before HARP, TIMPANI before PAN). All DX7 voices are synthesized (source synthetic).
DX7_FAMILY_WORDS = (
    ("TIMPANI", "mallet"),
    ("HARPSI", "keyboard"),
    ("CLAV", "keyboard"),
    ("PIANO", "keyboard"),
    ("PNO", "keyboard"),
    ("E.P", "keyboard"),
    ("RHODE", "keyboard"),
    ("NEWEP", "keyboard"),
    ("GRAND", "keyboard"),
    ("HONK", "keyboard"),
    ("CLV", "keyboard"),
    ("PF", "keyboard"),
    ("ORGAN", "organ"),
    ("ORGN", "organ"),
    ("BASSOON", "reed"),
    ("CLARI", "reed"),
    ("OBOE", "reed"),
    ("SAX", "reed"),
    ("HARMONI", "reed"),
    ("HRMNCA", "reed"),
    ("HARMON", "reed"),
    ("REED", "reed"),
    ("ACCORD", "reed"),
    ("BRASS", "brass"),
    ("HORN", "brass"),
    ("TRUMP", "brass"),
    ("TRPT", "brass"),
    ("TROMB", "brass"),
    ("TUBA", "brass"),
    ("FLUGEL", "brass"),
    ("TMPT", "brass"),
    ("BRS", "brass"),
    ("HARDBR", "brass"),
    ("HRADBR", "brass"),
    ("PERCBR", "brass"),
    ("FLUTE", "flute"),
    ("FLUT", "flute"),
    ("FLT", "flute"),
    ("PICCOLO", "flute"),
    ("RECORDER", "flute"),
    ("PAN", "flute"),
    ("OCARINA", "flute"),
    ("SHAKU", "flute"),
    ("STRING", "string"),
    ("STRIG", "string"),
    ("STRG", "string"),
    ("ZITHER", "string"),
    ("PIZZIC", "string"),
    ("RICHST", "string"),
    ("VIO", "string"),
    ("VIOLIN", "string"),
    ("VIOLA", "string"),
    ("CELLO", "string"),
    ("HARP", "string"),
    ("GUITAR", "guitar"),
    ("GUIT", "guitar"),
    ("GTR", "guitar"),
    ("GT", "guitar"),
    ("BANJO", "guitar"),
    ("SITAR", "guitar"),
    ("KOTO", "guitar"),
    ("MANDOL", "guitar"),
    ("LUTE", "guitar"),
    ("BASS", "bass"),
    ("BAS", "bass"),
    ("FRETLES", "bass"),
    ("MARIMB", "mallet"),
    ("KARIMBA", "mallet"),
    ("MALLET", "mallet"),
    ("TUBEBE", "mallet"),
    ("VIBE", "mallet"),
    ("XYLO", "mallet"),
    ("GLOCK", "mallet"),
    ("GLOKEN", "mallet"),
    ("CELESTE", "mallet"),
    ("STEEL DR", "mallet"),
    ("STEELDR", "mallet"),
    ("CELESTA", "mallet"),
    ("BELL", "mallet"),
    ("CHIME", "mallet"),
    ("KALIMBA", "mallet"),
    ("STR", "string"),
    ("CHOIR", "vocal"),
    ("VOICE", "vocal"),
    ("VOX", "vocal"),
    ("SYN", "synth_lead"),
    ("LEAD", "synth_lead"),
)


def dx7_family(name):
    """``(family, word)`` from a DX7 voice name (``DX7_FAMILY_WORDS``), or None.

    Example
    -------
    >>> dx7_family("E.ORGAN  A"), dx7_family("FB:Bassoon"), dx7_family("TAKE OFF")
    (('organ', 'ORGAN'), ('reed', 'BASSOON'), None)
    """
    upper = name.upper()
    for word, family in DX7_FAMILY_WORDS:
        if word in upper:
            return family, word
    return None


def _import_dexed():
    try:
        import dexed
    except ImportError as error:
        raise ImportError("DX7 voices need the Dexed emulator: `pip install dexed-py`") from error
    return dexed


class Dx7Synth(SoundSource):
    """DX7-format FM voices (``.dx7`` banks) played by Dexed.

    Presets are ``(bank file stem, voice index, voice name)``; a bank file holds
    one or more 4,096-byte banks of 32 packed voices.

    Arguments
    ---------
    folder : str
        Folder of ``.dx7`` files (default: Debian hexter's factory banks).
    sample_rate : int
        Output rate in Hz.

    Raises
    ------
    FileNotFoundError
        If the folder holds no ``.dx7`` file.
    ImportError
        If ``dexed-py`` is missing.
    """

    recorded = False
    licence = "GPL-2+ (Debian hexter); Yamaha DX7, TX7 and FB-01 factory voice data"

    def __init__(self, folder=HEXTER_BANKS, sample_rate=16000, name="dx7", group="dx7"):
        self.folder = os.path.abspath(folder)
        files = sorted(f for f in os.listdir(self.folder) if f.endswith(".dx7")) if os.path.isdir(folder) else []
        if not files:
            raise FileNotFoundError(f"no .dx7 voice bank in {self.folder}; install them with `apt-get install hexter`")
        dexed = _import_dexed()
        self._voices = {}
        for file in files:
            with open(os.path.join(self.folder, file), "rb") as f:
                data = f.read()
            stem = os.path.splitext(file)[0]
            for index in range(len(data) // DX7_VOICE_BYTES):
                packed = data[index * DX7_VOICE_BYTES : (index + 1) * DX7_VOICE_BYTES]
                self._voices[(stem, index)] = dexed.Patch.from_packed(packed)
        self._synth = dexed.DexedSynth(sample_rate=sample_rate)
        self._loaded = None
        self.name, self.group, self.spec, self.sample_rate = name, group, name, sample_rate

    def presets(self):
        """``(bank file stem, voice index, voice name)`` of every voice."""
        return [(stem, index, patch.name.strip()) for (stem, index), patch in self._voices.items()]

    def classify(self, stem, index, preset_name):
        """The family of the voice name's first family word (``DX7_FAMILY_WORDS``); None without one."""
        found = dx7_family(preset_name)
        if found is None:
            return None
        family, word = found
        return family, "synthetic", f"DX7 voice name {preset_name!r} contains {word!r}"

    def render_note(self, stem, index, pitch, velocity):
        """Renders one note (``int16``, ``NOTE_SECONDS`` long); ``ValueError`` for an unknown voice."""
        patch = self._voices.get((stem, index))
        if patch is None:
            raise ValueError(f"no DX7 voice {index} in bank {stem} of {self.folder}")
        if self._loaded != (stem, index):
            self._synth.load_patch(patch)
            self._loaded = (stem, index)
        audio = np.asarray(self._synth.render(int(pitch), int(velocity), HOLD_SECONDS, NOTE_SECONDS))
        return to_note(audio, self.sample_rate, DX7_GAIN)

    def close(self):
        self._synth = None
