"""docs/runbook.md without a stack: anchors, alert sections, and its shell blocks.

`scripts/docs_check.py` runs the blocks against a live stack (`make docs-check`);
here they are only extracted and syntax-checked.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from monitoring.promrules import REPO, Rule, all_rules, kebab

RUNBOOK = REPO / "docs" / "runbook.md"
DOCS_CHECK = REPO / "scripts" / "docs_check.py"
TEXT = RUNBOOK.read_text(encoding="utf-8")
ALERTS = [r for r in all_rules() if r.kind == "alert"]

SECTIONS = [
    "startup-checks",
    "readiness",
    "shutdown",
    "engine-died",
    "patch-upgrade",
    "manual-cleanup",
    "drift-after-docker-restart",
    "diagnostic-queries",
]


def _load_docs_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_check", DOCS_CHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_check"] = module
    spec.loader.exec_module(module)
    return module


docs_check = _load_docs_check()
BLOCKS = docs_check.extract(TEXT)
RUNNABLE = [b for b in BLOCKS if b.runnable]


def anchors(markdown: str) -> set[str]:
    explicit = set(re.findall(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']""", markdown))
    headings = {
        docs_check.slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M)
    }
    return explicit | headings


def _heading_after_anchor(anchor: str) -> str:
    match = re.search(rf"""<a\s+id="{re.escape(anchor)}"></a>\s*\n#{{2,3}}\s+(.+)""", TEXT)
    assert match, f'no heading right after <a id="{anchor}">'
    return match.group(1).strip()


def test_required_sections_exist() -> None:
    assert set(SECTIONS) <= anchors(TEXT)


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_alert_runbook_url_anchor_exists(alert: Rule) -> None:
    url = alert.annotations["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path.endswith("docs/runbook.md"), url
    assert anchor in anchors(TEXT), f"{alert.name}: #{anchor} missing in docs/runbook.md"
    assert anchor == kebab(alert.name)
    assert _heading_after_anchor(anchor) == alert.name


def test_internal_links_resolve() -> None:
    for target in re.findall(r"\]\(#([\w-]+)\)", TEXT):
        assert target in anchors(TEXT), f"broken link #{target}"


def test_extractor_finds_blocks_in_order() -> None:
    assert len(RUNNABLE) >= 20
    lines = [b.line for b in BLOCKS]
    assert lines == sorted(lines)
    covered = {b.anchor for b in RUNNABLE}
    assert set(SECTIONS) - {"drift-after-docker-restart"} <= covered
    assert {kebab(a.name) for a in ALERTS} <= covered


def test_list_mode_prints_blocks_and_runs_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, str(DOCS_CHECK), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\nrun ") + proc.stdout.startswith("run ") == len(RUNNABLE)
    assert "[readiness]" in proc.stdout
    assert "PASS" not in proc.stdout and "FAIL" not in proc.stdout


def test_no_block_feeds_the_service_dsn_to_psql() -> None:
    # libpq refuses search_path= in a URI; the DSN is RTM's, not psql's.
    for block in BLOCKS:
        assert not re.search(r"psql\s+[\"']?\$\{?RTMANAGER_POSTGRES_PRIMARY_DSN", block.code), (
            block.title
        )
        for line in block.code.splitlines():
            if re.search(r"\bpsql\b", line) and not line.lstrip().startswith("#"):
                assert "-U rtmanagerservice -d galaxy" in line, f"{block.title}: {line}"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.index}-{b.anchor}")
def test_block_is_valid_bash(block: Any) -> None:
    proc = subprocess.run(
        ["bash", "-n", "-c", block.code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, f"{block.title}\n{proc.stderr}"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: f"{b.index}-{b.anchor}")
def test_block_sets_its_variables_first(block: Any) -> None:
    """Blocks run one by one under `set -u`: each defines what it uses."""
    for var, definition in (
        ("GAME_ID", "GAME_ID=${GAME_ID:-"),
        ("DC", "DC="),
        ("API", "API="),
        ("AUTH", "AUTH="),
        ("IMAGE_REF", "IMAGE_REF=${IMAGE_REF:-"),
        ("PATCH_IMAGE_REF", "PATCH_IMAGE_REF=${PATCH_IMAGE_REF:-"),
    ):
        use = re.search(rf"\$\{{?{var}\b(?!:-)", block.code)
        if use is None:
            continue
        defined_at = next(
            (m.start() for m in re.finditer(rf"(?m)^{re.escape(definition)}", block.code)), None
        )
        assert defined_at is not None and defined_at < use.start(), f"{block.title}: ${var}"


def test_blocks_only_use_compose_options_both_clis_know() -> None:
    # deploy/scripts/compose.sh may run Debian's docker-compose 1.29.
    for block in RUNNABLE:
        for line in block.code.splitlines():
            if "$DC" in line:
                assert "--format" not in line and "--since" not in line, f"{block.title}: {line}"


def test_docs_check_runs_blocks_and_reports_failures(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n"
        '<a id="first"></a>\n## First part\n\n```sh\necho one\n```\n\n'
        "## Second part\n\n```sh no-check\nexit 3\n```\n\n"
        "```bash\nexit 4\n```\n\n"
        "~~~sh\nundefined_var_is_fatal=$NOPE_NOT_SET\n~~~\n\n"
        "````sh\nprintf '```\\n' | grep -c '```'\n````\n",
        encoding="utf-8",
    )
    blocks = docs_check.extract(doc.read_text())
    assert [(b.anchor, b.heading, b.info, b.runnable) for b in blocks] == [
        ("first", "First part", "sh", True),
        ("second-part", "Second part", "sh no-check", False),
        ("second-part", "Second part", "sh", True),
        ("second-part", "Second part", "sh", True),
    ]
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(DOCS_CHECK), str(doc)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^PASS #1 \[first\] First part", proc.stdout, re.M)
    assert re.search(r"^SKIP #2 \[second-part\]", proc.stdout, re.M)
    assert re.search(r"^FAIL #3 \[second-part\]", proc.stdout, re.M)
    assert "NOPE_NOT_SET: unbound variable" in proc.stdout
    assert re.search(r"^PASS #4 ", proc.stdout, re.M)
    assert "2 passed, 1 failed, 1 skipped" in proc.stdout

    only = subprocess.run(
        [sys.executable, str(DOCS_CHECK), str(doc), "--only", "first"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert only.returncode == 0, only.stdout
    assert "1 passed, 0 failed, 0 skipped" in only.stdout
