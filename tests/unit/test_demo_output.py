"""make demo's quiet output: what Airflow and the tasks write goes to the demo log, not the terminal."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import logging, os, sys
    from pathlib import Path
    from cutover.demo import output_to

    log_file = Path(sys.argv[1])
    handler = logging.StreamHandler(sys.stderr)  # a handler keeping the process's stream, as Airflow's do
    logging.getLogger("demo-test").addHandler(handler)
    print("before", flush=True)
    for step in (1, 2):  # twice: a logger configured in the first block must still work in the second
        with output_to(log_file):
            if step == 1:  # as structlog does: the stream is taken when the logger is configured
                logging.getLogger("demo-late").addHandler(logging.StreamHandler(sys.stdout))
            logging.getLogger("demo-late").warning("late logger %d", step)
            os.write(1, f"fd-level write {step}\\n".encode())
            print(f"print inside {step}", flush=True)
            logging.getLogger("demo-test").warning("log line inside %d", step)
        print(f"summary {step}", flush=True)
""")


def test_everything_written_during_a_run_lands_in_the_log(tmp_path: Path) -> None:
    log_file = tmp_path / "demo.log"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(log_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["before", "summary", "1", "summary", "2"]
    assert out.stderr == ""
    text = log_file.read_text()
    for step in (1, 2):
        assert f"fd-level write {step}" in text and f"print inside {step}" in text and f"log line inside {step}" in text
        assert f"late logger {step}" in text


def test_gx_info_chatter_is_lowered() -> None:
    from cutover.quality import gate

    assert logging.getLogger("great_expectations").getEffectiveLevel() >= logging.WARNING
    assert gate.GX_LOG_LEVEL == os.environ.get("CUTOVER_GX_LOG_LEVEL", "WARNING").upper()
