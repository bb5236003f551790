"""``python -m timbre_lobes detect MIXTURE [MIXTURE ...] --enrol NOTE [NOTE ...]``: is this instrument playing?

Enrols one instrument from a few of its isolated notes and scores each mixture
(a file, or the audio files of a folder) with
:meth:`timbre_lobes.serving.inference.TimbreEncoder.detect_files`: the best cosine
between the enrolment and the mixture's windows, and "present" when it reaches the
threshold. Unusable mixtures are skipped and listed at the end (exit status 1); an
unusable enrolment note stops the command, since the enrolment would not be what was asked.
"""

import json

from timbre_lobes.argtypes import non_negative_float, positive_float


def add_detect_parser(subparsers):
    """``detect MIXTURE ... --enrol NOTE ...``: enrolled-instrument detection in mixtures."""
    from timbre_lobes.serving.cli import add_model_folder_arguments

    parser = subparsers.add_parser(
        "detect",
        help="is an enrolled instrument playing in these (polyphonic) sounds?",
        description="Enrols an instrument from isolated notes (--enrol) and scores each mixture: the cosine "
        "between the enrolment and the mixture (a mixture-trained model: the whole clip; a single-note model: "
        "the best of the clip and its windows; a model with a slot head: the best of the clip's embedding and "
        "its slot embeddings), 'present' at or above the threshold. Give the mixtures first: "
        "--enrol takes every file after it.",
    )
    parser.add_argument("mixtures", nargs="+", metavar="MIXTURE", help="audio files or folders of them")
    parser.add_argument(
        "--enrol", nargs="+", required=True, metavar="NOTE", help="isolated notes of the instrument looked for"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default: the model's detection_threshold, else its verification threshold)",
    )
    parser.add_argument(
        "--window-seconds",
        type=non_negative_float,
        default=None,
        metavar="S",
        help="window length; 0 = the whole clip alone (default: the model's, 1.5 for a single-note model)",
    )
    parser.add_argument(
        "--hop-seconds", type=positive_float, default=0.5, metavar="S", help="window hop (default: 0.5)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per mixture")
    add_model_folder_arguments(parser)
    parser.set_defaults(func=run_detect)


def run_detect(args):
    from timbre_lobes.data.audio import AudioError
    from timbre_lobes.serving.cli import _exit, _missing_errors, find_audio_files, load_model, report_failures

    enrol, missing = find_audio_files(args.enrol)
    if missing:
        raise FileNotFoundError(f"enrolment file(s) not found: {', '.join(missing)}")
    files, missing = find_audio_files(args.mixtures)
    failures = _missing_errors(missing)
    if not files and not failures:
        raise FileNotFoundError(f"no audio files in {', '.join(args.mixtures)}")
    model = load_model(args)
    enrolled = model.enrol_files(enrol)
    threshold = args.threshold
    if threshold is None:
        threshold = model.detection_threshold if model.detection_threshold is not None else model.threshold
    window = model.detection_window_seconds if args.window_seconds is None else args.window_seconds
    for path in files:
        try:
            score, present = model.detect_files(path, enrolled, threshold, window, args.hop_seconds)
        except AudioError as error:
            failures.append(error)
            continue
        if args.json:
            record = {"mixture": path, "score": score, "threshold": threshold, "present": present}
            print(json.dumps({**record, "window_seconds": window, "enrolment": enrol}))
        else:
            verdict = "present" if present else "absent"
            print(f"{path}: score {score:.4f} (threshold {threshold:.4f}): {verdict}")
    _exit(report_failures(failures, len(files) + len(missing)))
