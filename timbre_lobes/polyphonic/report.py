"""The polyphonic recipe's outputs: ``polyphonic.json``, ``polyphonic.md`` and the figure by number of sources.

``results`` maps a set name (e.g. ``rendered test``, ``real NSynth``) to
:func:`timbre_lobes.polyphonic.evaluate.score_mixture_set`'s output.
"""

import os

from timbre_lobes.atomic import atomic_open, save_figure, write_json

JSON_FILE = "polyphonic.json"
MD_FILE = "polyphonic.md"
FIGURE_FILE = "by_sources.png"


def _fmt(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _stat(stats, key, digits):
    return "n/a" if stats is None else _fmt(stats.get(key), digits)


def interval_text(res, key, digits):
    """`` [low, high]`` of ``res["intervals"][key]``, or nothing when the report has no intervals."""
    intervals = res.get("intervals")
    if not intervals or key not in intervals:
        return ""
    interval = intervals[key]
    if interval is None:  # too few instruments for the resamples to be scored
        return " [no interval]"
    return f" [{_fmt(interval[0], digits)}, {_fmt(interval[1], digits)}]"


def _presence_cell(stats, res=None):
    """``micro-F1 [interval] (mAP micro-mAP [interval])``; the intervals only with ``res`` (the overall cell)."""
    if stats is None:
        return "n/a"
    f1_ci = interval_text(res, "family_micro_f1_ci", 3) if res else ""
    map_ci = interval_text(res, "family_micro_mAP_ci", 3) if res else ""
    return f"{stats['micro_f1']:.3f}{f1_ci} (mAP {stats['micro_mAP']:.3f}{map_ci})"


def markdown(results, run):
    """The Markdown summary: one detection table and one family-presence table per set."""
    lines = [
        "# Polyphonic mixtures: instrument detection by enrolment and family presence",
        "",
        f"Model: `{run.get('model', '?')}`. {run.get('description', '')}".strip(),
        "",
    ]
    for name, by_method in results.items():
        info = run.get("sets", {}).get(name, {})
        lines += [f"## {name}", ""]
        if info:
            lines += [
                f"{info.get('n_mixtures')} mixtures of {info.get('n_instruments')} unseen instruments "
                f"({info.get('folder')}), {info.get('n_enrol')} enrolment notes per instrument.",
                "",
            ]
        counts = sorted({n for m in by_method.values() for n in m["detection"]["by_sources"]})
        head = " | ".join(f"{n} src" for n in counts)
        lines += [
            "Instrument detection by enrolment, EER % (minDCF of all trials):",
            "",
            f"| method | all | {head} | minDCF | miss / false alarm at {_fmt(run.get('threshold'), 3)} |",
            "|---|---:|" + "---:|" * len(counts) + "---:|---:|",
        ]
        for method, res in by_method.items():
            det = res["detection"]
            cells = " | ".join(_stat(det["by_sources"].get(n), "EER", 1) for n in counts)
            rates = res["at_threshold"]
            lines.append(
                f"| {method} | {_stat(det['all'], 'EER', 1)}{interval_text(res, 'EER_ci', 1)} | {cells} | "
                f"{_stat(det['all'], 'minDCF', 3)} | "
                f"{_fmt(rates['miss_rate'])} / {_fmt(rates['false_alarm_rate'])} % |"
            )
        lines += [
            "",
            "Family presence, micro-F1 (and micro-mAP), threshold chosen on validation mixtures:",
            "",
            f"| method | threshold | all | {head} |",
            "|---|---:|---:|" + "---:|" * len(counts),
        ]
        for method, res in by_method.items():
            fam = res["family_presence"]

            cells = " | ".join(_presence_cell(fam["by_sources"].get(n)) for n in counts)
            lines.append(f"| {method} | {fam['threshold']:.3f} | {_presence_cell(fam['all'], res)} | {cells} |")
        intervals = [res["intervals"] for res in by_method.values() if res.get("intervals")]
        if intervals:
            lines += [
                "",
                f"In square brackets: {100 * intervals[0]['ci_level']:.0f} % bootstrap intervals of the overall EER, "
                f"micro-F1 and micro-mAP, the set's {intervals[0]['ci_instruments']} instruments resampled (a mixture "
                "counts only when all its instruments are drawn: the family intervals are wide; 'no interval' when "
                "too few instruments leave too few resamples to score).",
            ]
        lines.append("")
    return "\n".join(lines)


def plot_by_sources(results, path, title="", styles=None):
    """EER and family micro-F1 against the number of sources: one line per set and method.

    ``styles`` (optional) maps a set name to ``(colour, linestyle)``; by default each set has
    its own colour and each method its own line style (``clip`` dashed, ``windows`` solid).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_eer, ax_f1) = plt.subplots(1, 2, figsize=(11, 4.2))
    method_styles = {"clip": "--", "windows": "-"}
    for k, (name, by_method) in enumerate(results.items()):
        for method, res in by_method.items():
            colour, style = (styles or {}).get(name, (f"C{k}", method_styles.get(method, ":")))
            label = name if styles else f"{name}, {method}"
            for ax, block, key in ((ax_eer, "detection", "EER"), (ax_f1, "family_presence", "micro_f1")):
                by = res[block]["by_sources"]
                counts = sorted(n for n in by if by[n] is not None)
                ax.plot(counts, [by[n][key] for n in counts], style, color=colour, marker="o", label=label)
    ax_eer.set(xlabel="sources in the mixture", ylabel="EER (%)", title="instrument detection by enrolment")
    ax_f1.set(xlabel="sources in the mixture", ylabel="micro-F1", title="family presence", ylim=(0, 1))
    for ax in (ax_eer, ax_f1):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_f1.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def write_report(results, output_folder, run):
    """Writes ``polyphonic.json``, ``polyphonic.md`` and ``by_sources.png``; returns the Markdown."""
    os.makedirs(output_folder, exist_ok=True)
    write_json(os.path.join(output_folder, JSON_FILE), {"run": run, "results": results})
    text = markdown(results, run)
    with atomic_open(os.path.join(output_folder, MD_FILE), "w") as handle:
        handle.write(text + "\n")
    plot_by_sources(results, os.path.join(output_folder, FIGURE_FILE), run.get("title", ""))
    return text
