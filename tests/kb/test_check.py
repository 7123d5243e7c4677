"""`switchboard check` reports broken articles with file and line, before anything runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_check_names_the_broken_article_and_its_line(tmp_path: Path) -> None:
    shutil.copy(ROOT / "config" / "gateway.yaml", tmp_path / "gateway.yaml")
    shutil.copytree(ROOT / "config" / "kb", tmp_path / "kb")
    ok = check(tmp_path / "gateway.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "20 articles" in ok.stdout
    (tmp_path / "kb" / "de" / "doppelt.md").write_text(
        "---\ntitle: Noch einmal\nslug: rueckerstattung\nlanguage: de\n---\nText\n"
    )
    (tmp_path / "kb" / "en" / "untitled.md").write_text("---\ntags: [x]\n---\nText\n")
    bad = check(tmp_path / "gateway.yaml")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    # Files are read in name order: the demo article comes second and is the duplicate.
    assert (
        "kb/de/rueckerstattung.md (line 4): duplicate slug 'rueckerstattung' in language de"
        " (also kb/de/doppelt.md)"
    ) in bad.stderr
    assert "kb/en/untitled.md (line 1): missing title" in bad.stderr


def test_check_warns_when_the_folder_is_missing(tmp_path: Path) -> None:
    shutil.copy(ROOT / "config" / "gateway.yaml", tmp_path / "gateway.yaml")
    res = check(tmp_path / "gateway.yaml")
    assert res.returncode == 0, res.stderr
    assert "note: knowledge_base.path: no folder 'kb/'" in res.stderr
    assert "0 articles" in res.stdout
