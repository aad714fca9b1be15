"""The original document's example prints what the document shows (timings and dates aside)."""
import re
import subprocess
import sys
from pathlib import Path

from seed_document import DOC_METRICS

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed_example.py"

# The document's output, in the order the example prints it.
EXPECTED = f"[40, 20, 10]\n{DOC_METRICS}\n[40, None, 10]\n70\n"


def masked(text: str) -> str:
    """Dates and run times differ from run to run; everything else must match."""
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "DATE", text)
    # run_time cells are centred floats whose width varies; compare them as a token
    return re.sub(r"\|\s+\d[\d.e-]*\s+\|", "| TIME |", text)


def test_seed_example_prints_what_the_document_shows(tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert masked(out.stdout) == masked(EXPECTED), out.stdout
