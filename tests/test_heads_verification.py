"""Angular-margin heads and losses; trial protocol and metrics."""

import math
import os

import numpy as np
import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

from timbre_lobes.lobes.heads import AngularSoftmaxMargin
from timbre_lobes.scoring.verification import eer_and_min_dcf, make_trials, read_trials, score_trials, write_trials


def test_asoftmax_target_logit_matches_sphereface_formula():
    margin = AngularSoftmaxMargin(margin=4, scale=1.0, lambda_base=0.0, lambda_min=0.0)
    theta = torch.tensor([0.3, 1.0, 2.0])
    cos = torch.cos(theta)
    logits = margin(torch.stack([cos, cos], dim=1), torch.tensor([[1.0, 0.0]] * 3))
    k = torch.floor(theta * 4 / math.pi)
    psi = (-1) ** k * torch.cos(4 * theta) - 2 * k
    torch.testing.assert_close(logits[:, 0], psi, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[:, 1], cos)  # non-targets untouched


def test_asoftmax_margin_penalises_target_and_lambda_anneals():
    margin = AngularSoftmaxMargin(margin=4, scale=10.0, lambda_base=100.0, lambda_min=5.0, gamma=1.0)
    cos = torch.tensor([[0.8, 0.1]])
    target = torch.tensor([[1.0, 0.0]])
    first = margin.current_lambda()
    out = margin(cos, target)
    assert out[0, 0] < 10.0 * 0.8  # psi(theta) < cos(theta): a harder target
    for _ in range(1000):
        margin(cos, target)
    assert margin.current_lambda() == 5.0 < first
    margin.eval()
    step = int(margin.step)
    margin(cos, target)
    assert int(margin.step) == step  # evaluation does not advance the schedule


@pytest.mark.parametrize("loss_fn", [AdditiveAngularMargin(margin=0.2, scale=30), AngularSoftmaxMargin()])
def test_dual_cosine_heads_learn_both_tasks(loss_fn):
    torch.manual_seed(0)
    emb = torch.nn.Linear(8, 16)
    inst_head, fam_head = Classifier(16, lin_blocks=0, out_neurons=6), Classifier(16, lin_blocks=0, out_neurons=3)
    inst_loss, fam_loss = LogSoftmaxWrapper(loss_fn), LogSoftmaxWrapper(AdditiveAngularMargin(0.2, 30))
    x = torch.randn(60, 8)
    inst = torch.arange(60) % 6
    fam = inst // 2
    x = x + 3 * torch.nn.functional.one_hot(inst, 8).float()
    params = [*emb.parameters(), *inst_head.parameters(), *fam_head.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(150):
        e = emb(x).unsqueeze(1)
        loss = inst_loss(inst_head(e), inst.unsqueeze(1)) + 0.5 * fam_loss(fam_head(e), fam.unsqueeze(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    e = emb(x).unsqueeze(1)
    assert (inst_head(e).squeeze(1).argmax(-1) == inst).float().mean() > 0.95
    assert (fam_head(e).squeeze(1).argmax(-1) == fam).float().mean() > 0.95


def _notes(n_instruments=6, per=10):
    return {f"inst{i}-{n:03d}": f"inst{i}" for i in range(n_instruments) for n in range(per)}


def test_trials_follow_the_protocol():
    notes = _notes()
    enrol, trials = make_trials(
        notes, enrol_notes=5, enrolments_per_instrument=20, targets_per_note=20, nontargets_per_note=20, seed=3
    )
    assert len(enrol) == 6 * 20
    assert all(len(set(v)) == 5 and {notes[n] for n in v} == {k.split("#")[0]} for k, v in enrol.items())
    for label, enrol_id, note in trials:
        same = enrol_id.split("#")[0] == notes[note]
        assert same == bool(label)
        assert note not in enrol[enrol_id], "a note is never scored against an enrolment containing it"
    per_note_nontarget = {}
    for label, _, note in trials:
        per_note_nontarget[note] = per_note_nontarget.get(note, 0) + (1 - label)
    assert set(per_note_nontarget.values()) == {20}
    assert sum(t[0] for t in trials) > 0.5 * len(notes) * 5


def test_trials_are_deterministic_and_seeded():
    notes = _notes()
    assert make_trials(notes, seed=1) == make_trials(notes, seed=1)
    assert make_trials(notes, seed=1)[1] != make_trials(notes, seed=2)[1]


def test_trials_need_two_instruments():
    with pytest.raises(ValueError, match="at least 2 instruments"):
        make_trials({f"a-{i}": "a" for i in range(10)})


def test_trials_round_trip_through_files(tmp_path):
    enrol, trials = make_trials(_notes(3, 8), enrolments_per_instrument=3)
    write_trials(enrol, trials, tmp_path / "e.txt", tmp_path / "t.txt")
    assert read_trials(tmp_path / "e.txt", tmp_path / "t.txt") == (enrol, trials)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_scores_separate_instruments_with_distinct_embeddings():
    notes = _notes(4, 8)
    rng = np.random.default_rng(0)
    centres = {f"inst{i}": rng.standard_normal(16) * 3 for i in range(4)}
    emb = {n: torch.tensor(centres[i] + rng.standard_normal(16) * 0.5) for n, i in notes.items()}
    enrol, trials = make_trials(notes, enrolments_per_instrument=5)
    labels, scores = score_trials(emb, enrol, trials)
    assert eer_and_min_dcf(labels, scores)["eer"] < 0.02
    shuffled = dict(zip(emb, rng.permutation(list(emb.values()))))
    labels, scores = score_trials(shuffled, enrol, trials)
    assert eer_and_min_dcf(labels, scores)["eer"] > 0.25


def test_eer_and_min_dcf_match_speechbrain():
    from speechbrain.utils.metric_stats import EER, minDCF

    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1.0, 1.0, 300), rng.normal(-0.5, 1.0, 900)
    ours = eer_and_min_dcf(np.r_[np.ones(300), np.zeros(900)], np.r_[pos, neg])
    sb_eer, _ = EER(torch.tensor(pos), torch.tensor(neg))
    sb_dcf, _ = minDCF(torch.tensor(pos), torch.tensor(neg))
    assert abs(ours["eer"] - sb_eer) < 0.005
    assert abs(ours["min_dcf"] * 0.01 - sb_dcf) < 1e-4  # ours is normalised by p_target = 0.01


def test_adaptive_s_norm_standardises_each_side_against_its_top_cohort_scores():
    from timbre_lobes.scoring.verification import adaptive_s_norm

    g = torch.Generator().manual_seed(1)
    enrol, test, cohort = (torch.nn.functional.normalize(torch.randn(n, 6, generator=g), dim=1) for n in (4, 4, 30))
    raw = (enrol * test).sum(dim=1)
    got = adaptive_s_norm(raw, enrol, test, cohort, top_k=5)
    e_top = np.sort((enrol @ cohort.T).numpy(), axis=1)[:, -5:]
    t_top = np.sort((test @ cohort.T).numpy(), axis=1)[:, -5:]
    want = 0.5 * (
        (raw.numpy() - e_top.mean(1)) / e_top.std(1, ddof=1) + (raw.numpy() - t_top.mean(1)) / t_top.std(1, ddof=1)
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_s_norm_removes_an_enrolments_score_offset():
    """A hub enrolment (high scores against everyone): s-norm shrinks its offset; its enrolment half removes it."""
    from timbre_lobes.scoring.verification import score_trials

    rng = np.random.default_rng(0)
    hub = np.ones(16)
    cohort = rng.standard_normal((200, 16)) + 0.8 * hub  # the population leans towards the hub
    notes = {f"n{i}": rng.standard_normal(16) + 0.8 * hub for i in range(40)}
    notes["hub"] = 2 * hub + 0.3 * rng.standard_normal(16)
    notes["plain"] = rng.standard_normal(16)
    enrolments = {"hub": ["hub"], "plain": ["plain"]}
    trials = [(0, e, f"n{i}") for e in enrolments for i in range(40)]
    _, raw = score_trials(notes, enrolments, trials)
    _, normed = score_trials(notes, enrolments, trials, cohort=cohort, top_k=50)
    gap_raw = abs(raw[:40].mean() - raw[40:].mean())
    gap_norm = abs(normed[:40].mean() - normed[40:].mean()) / normed.std()
    assert gap_raw / raw.std() > 1.0 and gap_norm < 0.6 * gap_raw / raw.std()


def test_instrument_bootstrap_widens_with_fewer_instruments_and_weights_count_trials():
    from timbre_lobes.scoring.evaluation import instrument_bootstrap

    rng = np.random.default_rng(0)

    def fake_test(n_instruments, notes=8):
        """Each instrument's target scores sit at its own level: instruments, not notes, vary."""
        labels, scores, owner = [], [], []
        for i in range(n_instruments):
            level = rng.normal(0.6, 0.15)
            labels += [1] * notes + [0] * notes
            scores += list(level + 0.05 * rng.standard_normal(notes)) + list(0.4 + 0.1 * rng.standard_normal(notes))
            owner += [f"i{i}"] * (2 * notes)
        truth = [i % 3 for i in range(n_instruments) for _ in range(notes)]
        pred = [t if rng.random() < 0.6 else (t + 1) % 3 for t in truth[::notes] for _ in range(notes)]
        notes_of = [f"i{i}" for i in range(n_instruments) for _ in range(notes)]
        return instrument_bootstrap(labels, scores, owner, truth, pred, notes_of, n_resamples=300)

    few, many = fake_test(10), fake_test(200)
    width = {
        k: (r["EER_ci"][1] - r["EER_ci"][0], r["family_micro_f1_ci"][1] - r["family_micro_f1_ci"][0])
        for k, r in (("few", few), ("many", many))
    }
    assert width["few"][0] > 2 * width["many"][0] and width["few"][1] > 2 * width["many"][1]
    assert few["ci_instruments"] == 10
    # A trial weight of 2 counts it twice: the same EER as duplicating it.
    labels, scores = np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.3, 0.5, 0.2, 0.1])
    weighted = eer_and_min_dcf(labels, scores, sample_weight=np.array([2, 1, 1, 1, 0]))
    repeated = eer_and_min_dcf(np.array([1, 1, 1, 0, 0]), np.array([0.9, 0.9, 0.3, 0.5, 0.2]))  # 0.1 weighs 0
    assert weighted["eer"] == repeated["eer"]
    with pytest.raises(ValueError, match="both target and non-target"):
        eer_and_min_dcf(labels, scores, sample_weight=np.array([0, 0, 1, 1, 1]))
