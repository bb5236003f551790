"""Quick in-process training probe. usage: python train_exp.py name key=val ..."""

import csv
import json
import os
import random
import sys
import time

import numpy as np
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

from timbre_lobes.lobes.encoder import ResNetLDE
from timbre_lobes.lobes.frontend import GlobalNormalization, TransformLayer
from timbre_lobes.scoring.evaluation import family_scores
from timbre_lobes.scoring.verification import eer_and_min_dcf, read_trials, score_trials

torch.set_num_threads(int(os.environ.get("NT", "2")))
import os

EXP = os.environ.get("EXP_DIR", "/tmp/timbre-probes")  # cached audio, manifests and logs

name = sys.argv[1]
cfg = dict(
    front="fbank",
    enc="resnet",
    aug=0,
    steps=600,
    bs=32,
    lr=0.002,
    margin=0.2,
    scale=30.0,
    crop=1.5,
    maxstart=1.0,
    collapse="flatten",
    eval_every=200,
    fw=1.0,
    nfilt=80,
    ch="16,32,64,128",
    blocks="1,1,1,1",
    strides="2,2,2,2",
    emb=256,
    lde=8,
    seed=1,
    tout="log_energy",
    hop=10,
    pool="lde",
    pbn=0,
    loss="aam",
    wd=2e-5,
    sched="none",
    pw=0.0,
    holdout=0.0,
)  # pw: weight of a General MIDI program head (rendered corpora only), 0 = none
# holdout: fraction of each training instrument's notes kept out of training; the family head is
# then also scored on them (family identification of known instruments, as in issue #3's reference).
for a in sys.argv[2:]:
    k, v = a.split("=")
    cfg[k] = type(cfg[k])(v) if not isinstance(cfg[k], str) else v
torch.manual_seed(cfg["seed"])
random.seed(cfg["seed"])
np.random.seed(cfg["seed"])


def load(split):
    rows = list(csv.DictReader(open(f"{EXP}/prep/{split}.csv")))
    return rows, np.load(f"{EXP}/{split}_audio.npy", mmap_mode="r")


tr_rows, tr_audio = load("train")
va_rows, va_audio = load("valid")
tr_audio = np.asarray(tr_audio)
held = np.zeros(len(tr_rows), bool)
if cfg["holdout"] > 0:  # the selection of family_features.py: 20 % per instrument, notes in sorted-ID order
    rng = np.random.default_rng(0)
    for inst in sorted({r["instrument"] for r in tr_rows}):
        idx = sorted((r["ID"], i) for i, r in enumerate(tr_rows) if r["instrument"] == inst)
        pick = rng.choice(len(idx), max(1, int(len(idx) * cfg["holdout"])), replace=False)
        held[[idx[k][1] for k in pick]] = True
train_idx = np.flatnonzero(~held)
insts = sorted({r["instrument"] for r in tr_rows})
iidx = {n: i for i, n in enumerate(insts)}
y_inst = torch.tensor([iidx[r["instrument"]] for r in tr_rows])
y_fam = torch.tensor([int(r["family_id"]) for r in tr_rows])
# The family of each training instrument, to read a family from the instrument head's answer.
inst_family = torch.zeros(len(insts), dtype=torch.long)
for r in tr_rows:
    inst_family[iidx[r["instrument"]]] = int(r["family_id"])
# GM program of each training note and the family each program maps to: only a rendered corpus has them.
y_prog = torch.zeros(len(tr_rows), dtype=torch.long)
prog_family = torch.zeros(128, dtype=torch.long)
if cfg["pw"] > 0:
    corpus = os.environ.get("CORPUS", "corpora/soundfont-default")
    tr_meta = json.load(open(f"{corpus}/nsynth-train/examples.json"))
    y_prog = torch.tensor([int(tr_meta[r["ID"]]["program"]) for r in tr_rows])
    prog_family[y_prog] = y_fam
if cfg["front"] == "fbank":
    front = Fbank(sample_rate=16000, n_mels=cfg["nfilt"], n_fft=512, win_length=25, hop_length=cfg["hop"])
else:
    front = TransformLayer(
        out_channels=cfg["nfilt"],
        kernel_size=401,
        stride=int(cfg["hop"] * 16),
        init_type=cfg["front"],
        output=cfg["tout"],
    )
norm = GlobalNormalization(update_until_epoch=1000)
ints = lambda s: [int(x) for x in s.split(",")]
if cfg["enc"] == "resnet":
    enc = ResNetLDE(
        in_bins=cfg["nfilt"],
        channels=ints(cfg["ch"]),
        blocks=ints(cfg["blocks"]),
        strides=ints(cfg["strides"]),
        lde_components=cfg["lde"],
        lin_neurons=cfg["emb"],
        freq_collapse=cfg["collapse"],
    )
    if cfg["pool"] == "stats":
        from speechbrain.nnet.pooling import StatisticsPooling

        class SP(torch.nn.Module):
            def __init__(s, d):
                super().__init__()
                s.p = StatisticsPooling()
                s.d = d

            def get_out_dim(s):
                return 2 * s.d

            def forward(s, x, lengths=None):
                return s.p(x, lengths).squeeze(1)

        d = enc.pooling.in_channels
        enc.pooling = SP(d)
        enc.embedding = torch.nn.Linear(2 * d, cfg["emb"])
    if cfg["pbn"]:

        class PB(torch.nn.Module):
            def __init__(s, p):
                super().__init__()
                s.p = p
                s.bn = torch.nn.BatchNorm1d(p.get_out_dim())

            def forward(s, x, lengths=None):
                return s.bn(s.p(x, lengths))

        enc.pooling = PB(enc.pooling)
elif cfg["enc"] == "xvector":
    from speechbrain.lobes.models.Xvector import Xvector

    enc = Xvector(in_channels=cfg["nfilt"], lin_neurons=cfg["emb"])
elif cfg["enc"] == "ecapa":
    enc = ECAPA_TDNN(cfg["nfilt"], channels=[128, 128, 128, 128, 384], attention_channels=64, lin_neurons=cfg["emb"])
ih = Classifier(input_size=cfg["emb"], out_neurons=len(insts), lin_blocks=0)
fh = Classifier(input_size=cfg["emb"], out_neurons=11, lin_blocks=0)
if cfg["loss"] == "ce":
    ih = torch.nn.Sequential(
        torch.nn.Flatten(1), torch.nn.Linear(cfg["emb"], len(insts)), torch.nn.Unflatten(1, (1, -1))
    )
    fh = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(cfg["emb"], 11), torch.nn.Unflatten(1, (1, -1)))
    ce = lambda o, y: torch.nn.functional.cross_entropy(o.squeeze(1), y.squeeze(1))
loss_i = LogSoftmaxWrapper(AdditiveAngularMargin(margin=cfg["margin"], scale=cfg["scale"]))
loss_f = LogSoftmaxWrapper(AdditiveAngularMargin(margin=cfg["margin"], scale=cfg["scale"]))
if cfg["loss"] == "ce":
    loss_i = loss_f = ce
ph = torch.nn.Linear(cfg["emb"], 128)  # program head (used when pw > 0)
mods = torch.nn.ModuleList([front, enc, ih, fh] + ([ph] if cfg["pw"] > 0 else []))
params = [p for p in mods.parameters() if p.requires_grad]
print(name, cfg, "params enc", sum(p.numel() for p in enc.parameters()), flush=True)
opt = torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["wd"])
augment = None
if cfg["aug"]:
    from speechbrain.augment.augmenter import Augmenter
    from speechbrain.augment.time_domain import AddNoise, DropChunk, RandAmp

    augment = Augmenter(
        concat_original=False,
        min_augmentations=1,
        max_augmentations=2,
        augment_prob=0.8,
        augmentations=[
            AddNoise(snr_low=15, snr_high=40),
            DropChunk(drop_length_low=800, drop_length_high=3200, drop_count_low=1, drop_count_high=3),
            RandAmp(amp_low=0.25, amp_high=1.0),
        ],
    )
crop = int(cfg["crop"] * 16000)
ms = int(cfg["maxstart"] * 16000)


def embed_all(rows, audio):
    """-> embeddings by ID, true families, and the families from the family, program and instrument heads."""
    mods.eval()
    embs = {}
    fp = []
    ft = []
    fpp = []
    fpi = []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            w = torch.from_numpy(np.asarray(audio[i : i + 64]).astype(np.float32) / 32768)
            f = norm(front(w), torch.ones(len(w)))
            e = enc(f)
            fp += fh(e).squeeze(1).argmax(-1).tolist()
            ft += [int(r["family_id"]) for r in rows[i : i + 64]]
            if cfg["pw"] > 0:
                fpp += prog_family[ph(e.squeeze(1)).argmax(-1)].tolist()
            fpi += inst_family[ih(e).squeeze(1).argmax(-1)].tolist()
            for r, x in zip(rows[i : i + 64], e.squeeze(1)):
                embs[r["ID"]] = x
    mods.train()
    return embs, ft, fp, fpp, fpi


enr, trials = read_trials(EXP + "/prep/valid_enrolments.txt", EXP + "/prep/valid_trials.txt")


def evaluate():
    embs, ft, fp, fpp, _ = embed_all(va_rows, va_audio)
    l, s = score_trials(embs, enr, trials)
    out = (
        100 * eer_and_min_dcf(l, s)["eer"],
        family_scores(ft, fp)["family_micro_f1"],
        family_scores(ft, fpp)["family_micro_f1"] if fpp else None,
    )
    if held.any():
        h = np.flatnonzero(held)
        _, ht, hp, _, hi = embed_all([tr_rows[i] for i in h], tr_audio[h])
        print(
            f"  held-out notes of training instruments ({len(h)}): family micro-F1 "
            f"{family_scores(ht, hp)['family_micro_f1']:.3f} (family head), "
            f"{family_scores(ht, hi)['family_micro_f1']:.3f} (family of the instrument head's answer)",
            flush=True,
        )
    return out


t0 = time.time()
n = len(tr_rows)
accs = []
losses = []
log = []
for step in range(1, cfg["steps"] + 1):
    if cfg["sched"] == "lin":
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * (1 - 0.9 * step / cfg["steps"])
    idx = train_idx[np.random.randint(0, len(train_idx), cfg["bs"])]
    starts = np.random.randint(0, ms + 1, cfg["bs"])
    w = torch.from_numpy(np.stack([tr_audio[i, s : s + crop] for i, s in zip(idx, starts)]).astype(np.float32) / 32768)
    yi, yf, yp = y_inst[idx].unsqueeze(1), y_fam[idx].unsqueeze(1), y_prog[idx]
    lens = torch.ones(len(w))
    if augment is not None:
        w, lens = augment(w, lens)
        yi = augment.replicate_labels(yi)
        yf = augment.replicate_labels(yf)
        yp = augment.replicate_labels(yp)
    f = norm(front(w), lens, epoch=0)
    e = enc(f, lens)
    oi, of = ih(e), fh(e)
    loss = loss_i(oi, yi) + cfg["fw"] * loss_f(of, yf)
    if cfg["pw"] > 0:
        loss = loss + cfg["pw"] * torch.nn.functional.cross_entropy(ph(e.squeeze(1)), yp)
    opt.zero_grad()
    loss.backward()
    opt.step()
    accs.append((oi.squeeze(1).argmax(-1) == yi.squeeze(1)).float().mean().item())
    losses.append(loss.item())
    if step % 50 == 0:
        print(
            f"step {step} loss {np.mean(losses[-50:]):.2f} inst_acc {np.mean(accs[-50:]):.3f} t {time.time() - t0:.0f}s",
            flush=True,
        )
    if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
        eer, f1, f1p = evaluate()
        log.append((step, eer, f1, f1p, time.time() - t0))
        via_program = f" famF1_via_program {f1p:.3f}" if f1p is not None else ""
        print(f"EVAL step {step} validEER {eer:.2f} famF1 {f1:.3f}{via_program} t {time.time() - t0:.0f}s", flush=True)
json.dump(dict(cfg=cfg, log=log), open(f"{EXP}/{name}.json", "w"))
