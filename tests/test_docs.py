"""The docs stay true: the API reference matches the docstrings."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_api_reference_is_generated_from_current_docstrings():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-api-docs"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
