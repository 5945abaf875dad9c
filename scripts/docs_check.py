#!/usr/bin/env python3
"""Run the shell blocks of docs/runbook.md, in order, against a live stack.

    scripts/docs_check.py                 # run every ```sh block
    scripts/docs_check.py --list          # print the blocks, run nothing
    scripts/docs_check.py --only readiness --only manual-cleanup
    scripts/docs_check.py path/to/other.md

A block is a fenced code block whose info string is exactly `sh` (one word).
Blocks marked `sh no-check` (destructive, e.g. restarting Docker, or needing
a cluster) and blocks in any other language are skipped and listed as such.
Each block runs on its own in `bash -euo pipefail` from the repository root,
with the caller's environment (so `GAME_ID=... scripts/docs_check.py`
reaches the blocks' `GAME_ID=${GAME_ID:-docs-check-game}` lines). A block
passes when bash exits 0. The report names each block by its heading;
the exit status is 1 when any block failed, 2 on usage errors.

Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DOC = REPO / "docs" / "runbook.md"

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_HEADING = re.compile(r"^ {0,3}(?P<level>#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
_ANCHOR = re.compile(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']""")


@dataclass
class Block:
    index: int  # 1-based, over every fenced block with a shell info string
    line: int  # 1-based line of the opening fence
    heading: str  # nearest heading above the block
    anchor: str  # section anchor: nearest <a id> or heading slug above it
    info: str
    code: str

    @property
    def runnable(self) -> bool:
        return self.info.split() == ["sh"]

    @property
    def title(self) -> str:
        return f"#{self.index} [{self.anchor}] {self.heading} (line {self.line})"


def slug(heading: str) -> str:
    """GitHub-style anchor of a heading text."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def extract(markdown: str) -> list[Block]:
    """Every fenced block whose info string starts with `sh`, in document order."""
    blocks: list[Block] = []
    heading, anchor = "(top)", ""
    lines = markdown.splitlines()
    i = 0
    shell_index = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is None:
            if h := _HEADING.match(line):
                heading = h["text"]
                # An explicit <a id> right above the heading wins over its slug.
                anchor = anchor if _pending_anchor(lines, i) else slug(heading)
            elif a := _ANCHOR.search(line):
                anchor = a.group(1)
            i += 1
            continue
        marker = fence["fence"]
        info = fence["info"].strip()
        body: list[str] = []
        start = i + 1
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(marker[0] * len(marker)) and set(close) == {marker[0]}:
                break
            body.append(lines[i])
            i += 1
        i += 1  # past the closing fence (or the end)
        if info.split()[:1] == ["sh"]:
            shell_index += 1
            blocks.append(Block(shell_index, start, heading, anchor, info, "\n".join(body) + "\n"))
    return blocks


def _pending_anchor(lines: list[str], heading_at: int) -> bool:
    """True when the nearest non-blank line above a heading is an <a id> tag."""
    j = heading_at - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j >= 0 and _ANCHOR.search(lines[j]) is not None


def run_block(block: Block, timeout: float) -> tuple[bool, str, float]:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            cwd=REPO,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode()
        return False, out + f"\n(timed out after {timeout:.0f} s)", time.monotonic() - started
    return proc.returncode == 0, proc.stdout, time.monotonic() - started


def _indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("doc", nargs="?", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--list", action="store_true", help="print the blocks, run nothing")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ANCHOR",
        help="run only blocks of this section anchor (repeatable)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per block (default 300)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show output of passes")
    args = parser.parse_args(argv)

    if not args.doc.is_file():
        print(f"docs_check: {args.doc}: no such file", file=sys.stderr)
        return 2
    blocks = extract(args.doc.read_text(encoding="utf-8"))
    if args.only:
        blocks = [b for b in blocks if b.anchor in args.only]
    if not blocks:
        print(f"docs_check: no sh blocks found in {args.doc}", file=sys.stderr)
        return 2

    if args.list:
        for block in blocks:
            tag = "run " if block.runnable else "skip"
            print(f"{tag} {block.title}  ```{block.info}")
            print(_indent(block.code))
        return 0

    failed = passed = skipped = 0
    for block in blocks:
        if not block.runnable:
            skipped += 1
            print(f"SKIP {block.title}  ({block.info})", flush=True)
            continue
        ok, output, seconds = run_block(block, args.timeout)
        status = "PASS" if ok else "FAIL"
        print(f"{status} {block.title}  {seconds:.1f}s", flush=True)
        if not ok or args.verbose:
            print(_indent(block.code, "    $ "))
            if output.strip():
                print(_indent(output))
        passed += ok
        failed += not ok
    print(f"docs_check: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
