"""Work notes ↔ comments, linked one by one (``syncline.journal_sync``): with both sandboxes,
the gateway on loopback and a real SQLite ledger (the ``World`` of tests/test_escalation.py).

An entry crosses once, in order, and never comes back; Syncline's own entries are recognised
by their marker even when the ledger lost their links; an append whose answer was lost is
settled by the next run without a second append.
"""

from __future__ import annotations

from sandboxes.core.faults import FaultConfig
from syncline.journal_sync import marker_of, with_marker
from tests.support.escalation_world import World, escalate
from tests.test_escalation import world as world  # the fixture


def test_markers_name_the_entry_copied_and_nothing_else() -> None:
    written = with_marker("Fix deployed.\n", "b", "10023")
    assert written == "Fix deployed.\n\n[Syncline: Jira comment 10023]"
    assert marker_of(written) == ("b", "10023")
    note = with_marker("Rollback done", "a", "0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    assert marker_of(note) == ("a", "0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    # A marker quoted inside a person's text is not at its end: theirs, carried as usual.
    assert marker_of("As Syncline wrote: [Syncline: Jira comment 1] - see above") is None
    assert marker_of("[Syncline: Confluence page 7]") is None


def test_a_jira_comment_becomes_one_work_note_and_a_work_note_one_comment(world: World) -> None:
    sys_id, key = escalate(world)
    world.comment(key, "Reproduced on staging; fix under review.")
    report = world.quiet()
    marker = f"[Syncline: Jira comment {_comment_id(world, key, 0)}]"
    assert world.work_notes(sys_id) == [f"Reproduced on staging; fix under review.\n\n{marker}"]
    assert report.journal.a_appended == 0  # the drain that carried it, and the quiet ones after
    assert len(world.comments(key)) == 1  # not echoed back to Jira

    world.sn(
        "PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "Customer confirms EU only."}
    )
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "Rollback done."})
    world.quiet()
    comments = world.comments(key)
    assert [c.split("\n\n[Syncline:")[0] for c in comments] == [
        "Reproduced on staging; fix under review.",
        "Customer confirms EU only.",
        "Rollback done.",
    ]
    assert len(world.work_notes(sys_id)) == 3  # one carried in, two written here: no echo
    # Nothing more on a poll either: every entry is linked.
    polled = world.run("poll")
    assert polled.journal.a_appended == polled.journal.b_appended == 0
    assert len(world.comments(key)) == 3 and len(world.work_notes(sys_id)) == 3


def _comment_id(world: World, key: str, index: int) -> str:
    page = world.jira_api("GET", f"/rest/api/3/issue/{key}/comment")
    return str(page["comments"][index]["id"])


def test_a_rerun_after_a_crash_between_append_and_link_appends_nothing_twice(world: World) -> None:
    sys_id, key = escalate(world)
    world.comment(key, "Deploying the fix.")
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "Thanks, watching."})
    world.quiet()
    # The ledger's journal links are lost (a crash before their save, or a restored ledger):
    # the markers on the entries Syncline wrote link them again, nothing is appended.
    with world.ledger.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM syncline_journal_links")
    report = world.run("poll")
    assert report.journal.recognised == 2
    assert report.journal.a_appended == report.journal.b_appended == 0
    assert len(world.comments(key)) == 2 and len(world.work_notes(sys_id)) == 2


def test_a_work_note_whose_answer_was_lost_is_not_appended_twice(world: World) -> None:
    sys_id, key = escalate(world)
    world.comment(key, "Needs a config change on the ServiceNow side.")
    world.settle()
    # The work note's PATCH is saved but its reply is lost: the run cannot know whether it
    # went through, so it does not send it again.
    world.servicenow.faults = FaultConfig(
        write_fault_every=1, write_fault_kinds=["drop_after_commit"]
    )
    report = world.run()
    world.servicenow.faults = FaultConfig()
    assert report.journal.in_doubt == 1 and report.journal.failed_pairs == [f"{sys_id}:{key}"]
    assert len(world.work_notes(sys_id)) == 1
    # The pair was parked as a dead letter, saying what and where, until its journal went through.
    (letter,) = world.ledger.dead_letters(world.spec.name, status=None)
    assert letter.source_key == f"journal:{sys_id}:{key}" and "may or may not" in letter.reason
    # The note's own webhook (the same drain's next batch, if it came in time) or the next run
    # finds the note by its marker and links it: one note, no echo.
    again = world.run("poll")
    assert report.journal.recognised + again.journal.recognised == 1
    assert again.journal.a_appended == 0
    assert world.ledger.dead_letters(world.spec.name, status="pending") == []
    world.quiet()
    assert len(world.work_notes(sys_id)) == 1 and len(world.comments(key)) == 1
