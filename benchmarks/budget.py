#!/usr/bin/env python3
"""Prints one system's train.py overrides from a CPU budget file (``benchmarks/cpu_budget.yaml``).

    python benchmarks/budget.py benchmarks/cpu_budget.yaml transMel --demo   # what make demo trains
    python benchmarks/budget.py benchmarks/cpu_budget.yaml ecapa             # what the benchmark trains

A budget file is plain YAML with lists of ``--key=value`` train.py overrides:
``common`` (every system, demo and benchmark), ``benchmark`` (the benchmark's own),
``systems`` (one list per system) and ``demo`` (``make demo``'s own), plus the
benchmark's ``leave_out_source`` and ``profile`` settings. A system's overrides
are, in this order, with a later ``--key=...`` replacing an earlier one in place:

* benchmark: ``common``, ``benchmark``, ``systems.<system>``;
* demo (``--demo``): ``common``, ``systems.<system>``, ``demo``.

The overrides are printed on one line, separated by spaces, for a shell to split
(the Makefile's demo target reads them so); a value holding white space is refused.
Needs only PyYAML, so it runs before the rest of the requirements are installed.
"""

import argparse

import yaml

#: Lists of overrides a budget file may hold (``systems`` holds one per system).
OVERRIDE_SECTIONS = ("common", "benchmark", "demo")
#: Set by whoever runs train.py (the benchmark, the Makefile), never by a budget file.
RESERVED_KEYS = ("data_folder", "output_folder")


class BudgetError(ValueError):
    """A budget file, or an override in it, that cannot be used as it is."""


def override_key(arg):
    """``--key=value`` -> ``key`` (``--flag`` -> ``flag``).

    Raises
    ------
    BudgetError
        ``arg`` does not start with ``--``.

    Example
    -------
    >>> override_key("--resnet_channels=[16,32]")
    'resnet_channels'
    """
    if not arg.startswith("--"):
        raise BudgetError(f"overrides must read --key=value, got {arg!r}")
    return arg[2:].split("=", 1)[0]


def merge_overrides(*groups):
    """Concatenates override lists, a later ``--key=...`` replacing an earlier one in place.

    SpeechBrain turns overrides into one YAML mapping, where a repeated key is an error.

    Example
    -------
    >>> merge_overrides(["--lr=0.1", "--emb_dim=8"], ["--lr=0.2"])
    ['--lr=0.2', '--emb_dim=8']
    """
    merged = {}
    for group in groups:
        for arg in group:
            merged[override_key(arg)] = arg
    return list(merged.values())


def _override_list(path, name, group):
    if group is None:
        return []
    if not isinstance(group, list):
        raise BudgetError(f"{path}: {name} must be a list of --key=value strings")
    group = [str(arg) for arg in group]
    reserved = [arg for arg in group if override_key(arg) in RESERVED_KEYS]
    if reserved:
        raise BudgetError(f"{path}: {name} sets {reserved}; whoever runs train.py chooses data and output folders")
    return group


def load_budget(path):
    """Reads a budget file and checks its shape.

    Arguments
    ---------
    path : str
        The YAML file.

    Returns
    -------
    dict
        ``common``, ``benchmark``, ``demo``: lists of ``--key=value`` strings (empty
        when absent); ``systems``: {system: list}; and the file's other keys as they are.

    Raises
    ------
    BudgetError
        A section that is not a list of ``--key=value`` strings, or one that sets
        :data:`RESERVED_KEYS`.
    """
    with open(path) as handle:
        budget = yaml.safe_load(handle) or {}
    if not isinstance(budget, dict):
        raise BudgetError(f"{path}: a budget file is a mapping (common, systems, ...)")
    systems = budget.get("systems") or {}
    if not isinstance(systems, dict):
        raise BudgetError(f"{path}: 'systems' must be a mapping of lists")
    budget = dict(budget)
    for name in OVERRIDE_SECTIONS:
        budget[name] = _override_list(path, name, budget.get(name))
    budget["systems"] = {str(k): _override_list(path, f"systems.{k}", v) for k, v in systems.items()}
    return budget


def system_overrides(budget, system, demo=False):
    """A system's train.py overrides under a budget (see the module's docstring for the order).

    Arguments
    ---------
    budget : dict
        From :func:`load_budget`.
    system : str
        A key of ``budget["systems"]`` (``hparams/<system>.yaml``).
    demo : bool
        The demo's overrides instead of the benchmark's.

    Returns
    -------
    list of str

    Raises
    ------
    BudgetError
        The budget has no ``systems`` entry for ``system``.

    Example
    -------
    >>> budget = {"common": ["--lr=0.1", "--n_filters=80"], "benchmark": ["--number_of_epochs=8"],
    ...           "systems": {"leaf": ["--n_filters=40"]}, "demo": ["--number_of_epochs=12"]}
    >>> system_overrides(budget, "leaf")
    ['--lr=0.1', '--n_filters=40', '--number_of_epochs=8']
    >>> system_overrides(budget, "leaf", demo=True)
    ['--lr=0.1', '--n_filters=40', '--number_of_epochs=12']
    """
    if system not in budget["systems"]:
        raise BudgetError(f"the budget has no overrides for {system!r} (its systems: {list(budget['systems'])})")
    if demo:
        return merge_overrides(budget["common"], budget["systems"][system], budget["demo"])
    return merge_overrides(budget["common"], budget["benchmark"], budget["systems"][system])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("budget", help="budget file, e.g. benchmarks/cpu_budget.yaml")
    parser.add_argument("system", help="a system of its systems: section (hparams/<system>.yaml)")
    parser.add_argument("--demo", action="store_true", help="make demo's overrides instead of the benchmark's")
    args = parser.parse_args(argv)
    try:
        overrides = system_overrides(load_budget(args.budget), args.system, demo=args.demo)
    except (BudgetError, OSError, yaml.YAMLError) as err:
        parser.exit(2, f"budget.py: error: {err}\n")
    spaced = [arg for arg in overrides if any(c.isspace() for c in arg)]
    if spaced:
        parser.exit(2, f"budget.py: error: {spaced} hold white space, which a shell would split\n")
    print(" ".join(overrides))
    return overrides


if __name__ == "__main__":
    main()
