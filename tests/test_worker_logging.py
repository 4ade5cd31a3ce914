"""A worker's log says what it does (queues, jobs), not RQ's routine maintenance every few seconds."""

from dataclasses import replace

from tests.conftest import run_burst


def test_a_worker_log_leaves_out_routine_maintenance(settings):
    result = run_burst(replace(settings, log_level="INFO"))
    log = result.stdout + result.stderr
    assert "Listening on convert, analysis, mail" in log
    assert "cleaning registries" not in log and "subscribing to channel" not in log
