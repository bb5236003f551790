"""Bad input to the preparation: its warning names the report that lists what was skipped."""

import json
import logging
import shutil

# ---------------------------------------------------------------------------
# Preparation: the warning names the report
# ---------------------------------------------------------------------------


def test_the_preparation_warning_names_its_report(tiny_corpus, tmp_path, caplog):
    from nsynth_prepare import prepare_nsynth

    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    path = data / "nsynth-train" / "examples.json"
    examples = json.loads(path.read_text())
    examples[next(iter(examples))]["pitch"] = "C4"
    path.write_text(json.dumps(examples))
    with caplog.at_level(logging.WARNING):
        prepare_nsynth(str(data), str(tmp_path / "save"))
    report = str(tmp_path / "save" / "prepare_report.txt")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(report in message and "1 notes skipped" in message for message in warnings), warnings
    assert "field 'pitch' is a str" in open(report).read()
