"""Where runs' reports live and how they are written: one folder per run beside the data docs, served by
the UI app under ``/cutover/reports/<run id>/<file>`` (the schema diff of tenant_split, the type mapping
of mysql_to_postgres).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cutover.identifiers import slugify

URL_PREFIX = "/cutover"  # where plugins/cutover_plugin.py mounts the UI app


def reports_root(docs: Path | None = None) -> Path:
    """Where run reports live: ``reports/`` beside the data docs site (``docs``, default
    :func:`cutover.quality.gate.docs_dir`), i.e. ``<GX root>/uncommitted/data_docs/reports`` (ignored by git)."""
    if docs is None:
        from cutover.quality.gate import docs_dir

        docs = docs_dir()
    return Path(docs).parent / "reports"


def safe_run_dir(run_id: str) -> str:
    """The folder name of a run's reports: ``[a-z0-9_]`` only, with a hash of the run id whenever that
    changed it (``manual__2024-01-01T00:00:00+00:00`` → ``manual__2024_01_01t00_00_00_00_00_<hash>``),
    so two run ids never share a folder and no run id reaches outside the reports root. Raises
    ``ValueError`` for an empty run id."""
    if not run_id:
        raise ValueError("a run id is needed to name the report's folder")
    return slugify(run_id, max_bytes=120)


def report_dir(run_id: str, *, root: Path | None = None) -> Path:
    """The folder of ``run_id``'s reports under ``root`` (default :func:`reports_root`)."""
    return (root if root is not None else reports_root()) / safe_run_dir(run_id)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file beside it, then a rename."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as fh:
        fh.write(text)
    os.replace(fh.name, path)
