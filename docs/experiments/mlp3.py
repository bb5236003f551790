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


def spec(split):
    rows = list(csv.DictReader(open(f"{EXP}/prep/{split}.csv")))
    a = np.load(f"{EXP}/{split}_audio.npy")
    with torch.no_grad():
        S = torch.cat(
            [fb(torch.from_numpy(a[i : i + 256].astype(np.float32) / 32768)) for i in range(0, len(rows), 256)]
        )
    return rows, S


tr, S = spec("train")
va, SV = spec("valid")
enr, trials = read_trials(EXP + "/prep/valid_enrolments.txt", EXP + "/prep/valid_trials.txt")
insts = sorted({r["instrument"] for r in tr})
y = torch.tensor([insts.index(r["instrument"]) for r in tr])


def run(name, stat, crop):
    def f(S, s0=None):
        if crop:
            st = torch.randint(0, 101, (len(S),)) if s0 is None else torch.full((len(S),), s0)
            S = torch.stack([x[s : s + 150] for x, s in zip(S, st)])
        return torch.cat([S.mean(1), S.std(1)], 1) if stat == "ms" else S.mean(1)

    V = f(SV)
    F0 = f(S) if not crop else f(S, 50)
    mu, sd = F0.mean(0), F0.std(0)
    m = torch.nn.Sequential(
        torch.nn.Linear(F0.shape[1], 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(), torch.nn.Linear(512, 256)
    )
    head = torch.nn.Linear(256, 266)
    opt = torch.optim.Adam(list(m.parameters()) + list(head.parameters()), lr=0.002)
    out = []
    for step in range(1, 1501):
        i = torch.randint(0, len(S), (32,))
        x = (f(S[i]) - mu) / sd
        l = torch.nn.functional.cross_entropy(head(m(x)), y[i])
        opt.zero_grad()
        l.backward()
        opt.step()
        if step in (300, 1500):
            m.eval()
            with torch.no_grad():
                E = m((V - mu) / sd)
                lab, sc = score_trials({r["ID"]: e for r, e in zip(va, E)}, enr, trials)
                out.append((step, round(100 * eer_and_min_dcf(lab, sc)["eer"], 1)))
            m.train()
    print(name, out, flush=True)


run("mean_full", "m", False)
run("meanstd_crop1.5", "ms", True)
run("mean_crop1.5", "m", True)
