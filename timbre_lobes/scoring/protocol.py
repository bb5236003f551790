"""The verification protocol's settings, defined once (plain Python: the command lines import it cheaply)."""

#: The verification protocol of every recipe and of ``evaluate``: notes per enrolment,
#: enrolments per instrument, target and non-target trials per note, and the seed
#: (see :func:`timbre_lobes.scoring.verification.make_trials`).
DEFAULT_PROTOCOL = {
    "enrol_notes": 5,
    "enrolments_per_instrument": 20,
    "targets_per_note": 20,
    "nontargets_per_note": 20,
    "trial_seed": 1234,
}
