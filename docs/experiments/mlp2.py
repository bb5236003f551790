import csv
import os

import numpy as np
import torch
from speechbrain.lobes.features import Fbank

from timbre_lobes.scoring.verification import eer_and_min_dcf, read_trials, score_trials

EXP = os.environ.get("EXP_DIR", "/tmp/timbre-probes")  # cached audio, manifests and logs

torch.set_num_threads(2)
torch.manual_seed(0)
fb = Fbank(sample_rate=16000, n_mels=80)


def feats(split):
    rows = list(csv.DictReader(open(f"{EXP}/prep/{split}.csv")))
    a = np.load(f"{EXP}/{split}_audio.npy")
    with torch.no_grad():
        F = torch.cat(
            [
                torch.cat([f.mean(1), f.std(1)], 1)
                for f in (
                    fb(torch.from_numpy(a[i : i + 256].astype(np.float32) / 32768)) for i in range(0, len(rows), 256)
                )
            ]
        )
    return rows, F


tr, F = feats("train")
va, V = feats("valid")
mu, sd = F.mean(0), F.std(0)
F = (F - mu) / sd
V = (V - mu) / sd
enr, trials = read_trials(EXP + "/prep/valid_enrolments.txt", EXP + "/prep/valid_trials.txt")


def eer(E):
    l, s = score_trials({r["ID"]: e for r, e in zip(va, E)}, enr, trials)
    return 100 * eer_and_min_dcf(l, s)["eer"]


print("raw stats EER", eer(V))
insts = sorted({r["instrument"] for r in tr})
y = torch.tensor([insts.index(r["instrument"]) for r in tr])
m = torch.nn.Sequential(
    torch.nn.Linear(160, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(), torch.nn.Linear(512, 256)
)
head = torch.nn.Linear(256, 266)
opt = torch.optim.Adam(list(m.parameters()) + list(head.parameters()), lr=0.002)
for step in range(1, 6001):
    i = torch.randint(0, len(F), (32,))
    l = torch.nn.functional.cross_entropy(head(m(F[i])), y[i])
    opt.zero_grad()
    l.backward()
    opt.step()
    if step in (300, 1500, 3000, 6000):
        m.eval()
        with torch.no_grad():
            print(step, "train acc", (head(m(F)).argmax(1) == y).float().mean().item(), "valid EER", eer(m(V)))
        m.train()
