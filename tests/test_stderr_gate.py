"""The stderr gate: a thread inside ``dropped()`` writes nothing to stderr; others do."""

import sys
import threading

from datahub_tokenize_action import _stderr_gate


def test_only_the_thread_inside_the_gate_is_silenced_and_stderr_is_restored_after(capsys):
    original = sys.stderr
    inside, leave = threading.Event(), threading.Event()

    def driver() -> None:
        with _stderr_gate.dropped():
            print("psycopg2.errors.AdminShutdown ... CONTEXT: COPY t, line 1: \"alice@example.com\"",
                  file=sys.stderr)
            inside.set()
            leave.wait(10)
            print("still dropped", file=sys.stderr)
        print("after the gate", file=sys.stderr)

    worker = threading.Thread(target=driver)
    worker.start()
    assert inside.wait(10)
    print("the main thread's line", file=sys.stderr)  # while the worker is inside
    leave.set()
    worker.join(10)
    assert sys.stderr is original
    assert capsys.readouterr().err.splitlines() == ["the main thread's line", "after the gate"]


def test_nested_and_overlapping_users_restore_stderr_once_the_last_leaves(capsys):
    original = sys.stderr
    with _stderr_gate.dropped():
        gate = sys.stderr
        assert gate is not original
        with _stderr_gate.dropped():
            assert sys.stderr is gate
        print("dropped", file=sys.stderr)
    assert sys.stderr is original
    print("kept", file=sys.stderr)
    assert capsys.readouterr().err == "kept\n"
