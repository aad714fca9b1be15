"""examples/seed_example.ipynb runs in a real Jupyter kernel and shows the rich displays."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "examples" / "seed_example.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    import nbformat
    from nbclient import NotebookClient

    home = tmp_path_factory.mktemp("notebook") / "home"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Which Python the kernel runs: it must be the one mapdeploy is installed in.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    previous = os.environ.get("MAPDEPLOY_HOME")
    os.environ["MAPDEPLOY_HOME"] = str(home)  # the kernel inherits the environment
    try:
        NotebookClient(notebook, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(home.parent)}}).execute()
    finally:
        import mapdeploy as gl
        gl.deploy.stop_idle_workers()  # the kernel's warm workers, which outlive it
        if previous is None:
            os.environ.pop("MAPDEPLOY_HOME", None)
        else:
            os.environ["MAPDEPLOY_HOME"] = previous
    return notebook, home


def outputs(cell) -> dict[str, str]:
    """mime type (or 'stream') -> text of everything a cell produced."""
    found: dict[str, str] = {}
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            found["stream"] = found.get("stream", "") + output["text"]
        if output["output_type"] == "execute_result":
            found["result"] = output["data"].get("text/plain", "")
        for mime, data in output.get("data", {}).items():
            found[mime] = found.get(mime, "") + (data if isinstance(data, str) else str(data))
        assert output["output_type"] != "error", output
    return found


def code_cells(executed):
    return [cell for cell in executed[0].cells if cell.cell_type == "code"]


def test_results_as_in_the_original_document(executed):
    cells = code_cells(executed)
    assert outputs(cells[1])["stream"].strip().endswith("[40, 20, 10]")
    assert outputs(cells[5])["stream"].strip().endswith("[40, None, 10]")
    assert outputs(cells[6])["result"] == "70"


def test_waiting_shows_the_progress_widget(executed):
    found = outputs(code_cells(executed)[1])
    assert "application/vnd.jupyter.widget-view+json" in found


def test_job_displays_as_html_with_the_failed_task_highlighted(executed):
    page = outputs(code_cells(executed)[2])["text/html"]
    assert "notebook-failure" in page and "Completed" in page
    assert "3 total, 2 completed" in page
    assert 'class="mapdeploy-failed"' in page
    assert "unsupported operand type(s)" in page


def test_metrics_table_displays_as_html(executed):
    page = outputs(code_cells(executed)[3])["text/html"]
    assert "<th>exception_traceback</th>" in page and 'class="mapdeploy-failed"' in page


def test_traceback_shows_the_cells_own_line_and_output_is_kept(executed):
    cells = code_cells(executed)
    assert "return x + y" in outputs(cells[4])["stream"]
    assert "adding None and 10" in outputs(cells[5])["stream"]


def test_session_registries_display_as_html(executed):
    cells = code_cells(executed)
    assert "notebook-failure" in outputs(cells[7])["text/html"]
    assert "async" in outputs(cells[8])["text/html"]


def test_kernel_was_this_python(executed):
    printed = outputs(code_cells(executed)[-1])["stream"].strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()
