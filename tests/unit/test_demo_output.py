"""make demo's quiet output: what Airflow and the tasks write goes to the demo log, not the terminal."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from cutover.demo import output_to


def test_everything_written_during_a_run_lands_in_the_log(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "demo.log"
    # a handler holding the process's own stderr (fd 2), as Airflow's handlers hold the stream they got
    stream = open(2, "w", closefd=False)  # noqa: SIM115 - closed below
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("cutover.test.demo")
    logger.addHandler(handler)
    try:
        print("before", flush=True)
        with output_to(log_file):
            os.write(1, b"fd-level write\n")
            print("print inside", flush=True)
            logger.warning("log line inside")
        print("after", flush=True)
    finally:
        logger.removeHandler(handler)
        stream.close()
    text = log_file.read_text()
    assert "fd-level write" in text and "print inside" in text and "log line inside" in text
    out, err = capfd.readouterr()
    assert "before" in out and "after" in out
    assert "inside" not in out + err and "fd-level" not in out + err


def test_gx_info_chatter_is_lowered() -> None:
    from cutover.quality import gate

    assert logging.getLogger("great_expectations").getEffectiveLevel() >= logging.WARNING
    assert gate.GX_LOG_LEVEL == os.environ.get("CUTOVER_GX_LOG_LEVEL", "WARNING").upper()
