"""Running a recipe or benchmark script as a command: known errors, Ctrl-C and SIGTERM as one line, no traceback.

Light on purpose (no torch, no SpeechBrain): a script's ``--help`` stays fast.
"""

import signal
import sys

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_STATUS = 130
#: Exit status of a run stopped by SIGTERM (128 + 15): ``kill``, a job scheduler, torchrun.
TERMINATED_STATUS = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it unwinds (data-loader workers, open files) as on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


#: What :func:`run_script` says on Ctrl-C of a training run.
TRAINING_INTERRUPTED = (
    "Any checkpoint already saved is kept; the same command resumes from the latest "
    "(ckpt_interval_minutes sets how often one is saved within an epoch)."
)


#: What :func:`run_script` says on Ctrl-C of an evaluation (its outputs are written whole or not at all).
RERUN = "Nothing half-written is left; run the same command again (cached embeddings are read back)."


def run_script(main, argv, script, errors=(FileNotFoundError,), interrupted=TRAINING_INTERRUPTED):
    """Runs a recipe's ``main(argv)`` as a command: known errors, Ctrl-C and SIGTERM as one message, no traceback.

    Arguments
    ---------
    main : callable
        The recipe's ``main(argv)``.
    argv : list of str
        Its arguments (``sys.argv[1:]``).
    script : str
        The name the messages start with (``train.py``).
    errors : tuple of type
        Exceptions whose message is the whole story (a folder that does not fit, a missing file).
    interrupted : str
        What to say on Ctrl-C (default: a training run's checkpoints are kept). Outputs written
        atomically are whole or absent, so an interrupted evaluation is simply run again.

    Returns
    -------
    object
        What ``main`` returned.

    Raises
    ------
    SystemExit
        ``script: error: ...`` (status 1) for ``errors``; status 130 on Ctrl-C and 143 on SIGTERM
        (``kill``, a job scheduler's time limit), after ``interrupted``.
    """
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return main(argv)
    except errors as err:
        sys.exit(f"{script}: error: {err}")
    except Terminated:
        sys.stderr.write(f"\n{script}: terminated (SIGTERM). {interrupted}\n")
        sys.exit(TERMINATED_STATUS)
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{script}: interrupted. {interrupted}\n")
        sys.exit(INTERRUPTED_STATUS)
    finally:
        signal.signal(signal.SIGTERM, previous)
