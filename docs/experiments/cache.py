import csv
import os
import sys

import numpy as np
import soundfile as sf

EXP = os.environ.get("EXP_DIR", "/tmp/timbre-probes")  # cached audio, manifests and logs

sys.path.insert(0, "recipes/NSynth")
from nsynth_prepare import prepare_nsynth

root = os.environ.get("CORPUS", "corpora/soundfont-default")
prepare_nsynth(data_folder=root, save_folder=EXP + "/prep")
for split in ("train", "valid", "test"):
    rows = list(csv.DictReader(open(f"{EXP}/prep/{split}.csv")))
    audio = np.zeros((len(rows), 64000), dtype=np.int16)
    for i, r in enumerate(rows):
        x, sr = sf.read(r["wav"].replace("$data_root", root), dtype="int16")
        audio[i, : len(x)] = x[:64000]
    np.save(f"{EXP}/{split}_audio.npy", audio)
    print(split, len(rows))
