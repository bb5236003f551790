#!/usr/bin/env python3
"""Calibrates the corpus's independence check: how far apart do copies and independent banks measure?

    PYTHONPATH=. python docs/experiments/independence_calibration.py [--out docs/results/independence_calibration.json]

For a set of General MIDI programs, the fingerprint distance
(:func:`timbre_lobes.render.independence.distances`) between

* a FluidR3_GM preset and a second render of it (a copy by construction),
* FluidR3_GM and MuseScore_General (built from FluidR3_GM's samples: known copies),
* FluidR3_GM and each independent recorded bank (GeneralUser GS, TimGM6mb,
  Airfont 320, Freepats), same program,
* two different programs of FluidR3_GM (different instruments of one bank);

and, for every pair of catalogue SoundFonts, how many presets of the later one
play a byte-identical sample of the earlier one (sf2utils; ``.sf3`` files are
compressed and not read). Prints a table and writes the numbers as JSON.
"""

import argparse
import itertools
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from timbre_lobes.render import open_source  # noqa: E402
from timbre_lobes.render.independence import distances, preset_fingerprint  # noqa: E402

#: Piano, e-piano, organ, nylon guitar, bass, violin, strings, trumpet, alto sax,
#: clarinet, flute, synth lead, vibraphone.
PROGRAMS = (0, 4, 19, 24, 33, 40, 48, 56, 65, 71, 73, 80, 11)
INDEPENDENT = ("generaluser", "timgm6mb", "airfont", "freepats")
SOUNDFONTS = ("fluidr3", "timgm6mb", "opl3", "generaluser", "airfont")


def _fingerprint(source, program):
    presets = {tuple(p[:-1]) for p in source.presets()}
    return preset_fingerprint(source, (0, program)) if (0, program) in presets else None


def measure():
    rows = []
    sources = {name: open_source(name) for name in ("fluidr3", "musescore", *INDEPENDENT)}
    reference = {p: _fingerprint(sources["fluidr3"], p) for p in PROGRAMS}
    for program in PROGRAMS:
        row = {
            "program": program,
            "rerender": float(distances(reference[program], _fingerprint(sources["fluidr3"], program)[None])[0]),
        }
        for name in ("musescore", *INDEPENDENT):
            other = _fingerprint(sources[name], program)
            row[name] = None if other is None else round(float(distances(reference[program], other[None])[0]), 2)
        rows.append(row)
    pairs = [
        round(float(distances(reference[a], reference[b][None])[0]), 2) for a, b in itertools.combinations(PROGRAMS, 2)
    ]
    for source in sources.values():
        source.close()
    sharing = {}
    samples = {}
    for name in SOUNDFONTS:
        with open_source(name) as source:
            samples[name] = source.preset_samples()
    for earlier, later in itertools.combinations(SOUNDFONTS, 2):
        pool = set().union(*samples[earlier].values()) if samples[earlier] else set()
        shared = sum(bool(digests & pool) for digests in samples[later].values())
        sharing[f"{later} plays samples of {earlier}"] = f"{shared} of {len(samples[later])} presets"
    return {"programs": rows, "different_programs_of_fluidr3_db": pairs, "shared_samples": sharing}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/results/independence_calibration.json")
    args = parser.parse_args(argv)
    result = measure()
    columns = ["rerender", "musescore", *INDEPENDENT]
    print("| GM program | " + " | ".join(columns) + " |")
    print("|---:|" + "---:|" * len(columns))
    for row in result["programs"]:
        cells = ["-" if row[c] is None else f"{row[c]:.2f}" for c in columns]
        print(f"| {row['program']} | " + " | ".join(cells) + " |")
    pairs = np.array(result["different_programs_of_fluidr3_db"])
    print(f"different programs of FluidR3_GM: min {pairs.min():.1f}, median {np.median(pairs):.1f} dB")
    for pair, count in result["shared_samples"].items():
        print(f"{pair}: {count}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
