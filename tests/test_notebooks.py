"""Every notebook in notebooks/ runs from top to bottom with its small settings
(NNLAB_NOTEBOOK_SIZE=small), in a real Jupyter kernel: a notebook that no longer runs fails CI."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 9, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_small_settings(path, mnist_data, monkeypatch):
    monkeypatch.setenv("NNLAB_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's path-migration notice is a warning
    monkeypatch.setenv("NNLAB_COMPILATION_CACHE", "off")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "stream" and "size: small" in o.text for o in outputs)  # the small settings ran
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in outputs)  # plots inline
