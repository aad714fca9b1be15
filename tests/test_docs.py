"""The docs stay true: the API reference matches the docstrings, the site builds with
warnings as errors, and every code example in README.md and docs/ runs.

Which fenced blocks run: ```python blocks, in order, as one script per page (a
page is a tutorial: later blocks use what earlier ones defined); and the
`$ ` lines of ```console blocks, run in a shell at that point of the script,
which must exit 0 unless the line ends with `# exits N`. Other fences (sh,
text, py) are shown, not run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
EXPECTED_EXIT = re.compile(r"#\s*exits\s+(\d+)")


def test_api_reference_is_generated_from_current_docstrings():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-api-docs"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_site_builds_with_warnings_as_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                          "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "quickstart" / "index.html").is_file()
    assert "get_task_output" in (tmp_path / "site" / "api" / "index.html").read_text()


def script_of(page: Path) -> str:
    """The page's runnable blocks as one Python script."""
    parts = ["import subprocess as _subprocess\n",
             "def _console(command, expected):\n"
             "    done = _subprocess.run(command, shell=True)\n"
             "    assert done.returncode == expected, "
             "f'{command!r} exited {done.returncode}, the page says {expected}'\n"]
    for language, body in FENCE.findall(page.read_text()):
        if language == "python":
            parts.append(body)
        elif language == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    command = line[2:]
                    match = EXPECTED_EXIT.search(command)
                    expected = int(match.group(1)) if match else 0
                    command = command.split(" #", 1)[0].strip()
                    parts.append(f"print('$ ' + {command!r}, flush=True)\n"
                                 f"_console({command!r}, {expected})\n")
    return "\n".join(parts)


def runnable(page: Path) -> bool:
    return any(lang in ("python", "console") for lang, _ in FENCE.findall(page.read_text()))


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: p.name)
def test_code_examples_run(page, tmp_path):
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text(script_of(page))
    scripts_dir = sysconfig.get_path("scripts")
    env = dict(os.environ, PATH=os.pathsep.join(
        [scripts_dir, str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=240, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"{page.name}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def test_every_page_with_python_is_tested():
    """Guards the fence rule: a page with examples is not silently skipped."""
    names = {p.name for p in PAGES if runnable(p)}
    assert {"README.md", "quickstart.md", "user-guide.md", "migration.md"} <= names
