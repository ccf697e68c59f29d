"""The label index on the real local endpoint: entries written once and counted once, replaced when the
result changes, gone after delete, searches and counts per owner and album (sightfleet/aws/labels.py).
"""
from __future__ import annotations

import pytest

from sightfleet import labelindex
from sightfleet.aws.labels import LabelsTable
from sightfleet.contracts import SUCCEEDED, iso, new_image_id
from sightfleet.labelindex import Entry, entries_for, plan, search_key_fits


def result(owner: str, album: str, second: int, *labels: tuple, filters: dict | None = None) -> dict:
    """A SUCCEEDED result with labels given as (name, confidence, parent names...)."""
    return {"id": new_image_id(), "owner": owner, "album": album, "status": SUCCEEDED,
            "submitted_at": iso(1_800_000_000 + second), "label_filters": filters,
            "labels": [{"Name": n, "Confidence": c, "Instances": [], "Parents": [{"Name": p} for p in parents]}
                       for n, c, *parents in labels]}


CAT = ("Tabby", 91.0, "Cat")
DOG = ("Beagle", 70.0, "Dog")


@pytest.fixture
def table(settings) -> LabelsTable:
    return LabelsTable(settings)


def counts(table, owner, album=None) -> dict:
    return {c["name"]: c["count"] for c in table.counts(owner, album)}


def test_entries_are_labels_and_parents_with_the_strongest_confidence():
    doc = result("alice", "pets", 1, CAT, ("Cat", 60.0), ("Egyptian cat", 80.0, "Cat"))
    found = {e.key: e.confidence for e in entries_for(doc)}
    # A name the vocabulary does not know stands for itself; a known one brings every ancestor.
    assert found == {"tabby": 91.0, "egyptian cat": 80.0,
                     **dict.fromkeys(["cat", "feline", "pet", "mammal", "animal"], 91.0)}
    assert entries_for({**doc, "status": "FAILED"}) == []


def test_only_labels_a_default_read_shows_are_indexed():
    doc = result("alice", "pets", 1, ("Cat", 91.0), ("Couch", 48.0))
    assert "couch" in {e.key for e in entries_for(doc)} and "couch" not in {e.key for e in entries_for(doc, 55)}
    stricter = {**doc, "label_filters": {"MinConfidence": 95}}   # the upload's own threshold, when higher
    assert entries_for(stricter, 55) == []


def test_the_uploads_exclusion_filter_keeps_a_label_out_of_the_index():
    doc = result("alice", "pets", 1, CAT, ("Dog", 70.0), filters={"LabelExclusionFilters": ["Dog"]})
    assert "dog" not in {e.key for e in entries_for(doc)} and {"tabby", "cat"} <= {e.key for e in entries_for(doc)}


@pytest.mark.parametrize("have, want, add, rewrite, remove", [
    ([], [("cat", "a", 90)], ["cat"], [], []),
    ([("cat", "a", 90)], [("cat", "a", 90)], [], [], []),
    ([("cat", "a", 90)], [("cat", "a", 80)], [], ["cat"], []),
    ([("cat", "a", 90), ("dog", "a", 70)], [("cat", "a", 90)], [], [], ["dog"]),
    ([("cat", "a", 90)], [("cat", "b", 90)], ["cat"], [], ["cat"]),   # moved album: both counts move
])
def test_plan(have, want, add, rewrite, remove):
    def entries(rows):
        return [Entry("i", "o", album, key, key, conf, "t") for key, album, conf in rows]
    steps = plan(entries(have), entries(want))
    assert [e.key for e in steps.add] == add and [e.key for e in steps.rewrite] == rewrite
    assert [e.key for e in steps.remove] == remove


def test_sync_twice_writes_and_counts_once_and_a_new_result_replaces_the_old(table):
    doc = result("alice", "pets", 1, CAT, DOG)
    assert labelindex.sync(table, doc)
    assert not labelindex.sync(table, doc)            # a redelivery: nothing to do
    assert not any(table.add(e) for e in entries_for(doc))   # and a racing writer adds nothing
    assert {"Tabby": 1, "Cat": 1, "Beagle": 1, "Dog": 1, "Animal": 1}.items() <= counts(table, "alice").items()
    reprocessed = {**doc, "labels": [{"Name": "Cat", "Confidence": 88.0, "Instances": [], "Parents": []}]}
    labelindex.sync(table, reprocessed)
    assert {(e.key, e.confidence) for e in table.entries(doc["id"])} == {
        (k, 88.0) for k in ("cat", "feline", "pet", "mammal", "animal")}
    assert counts(table, "alice") == counts(table, "alice", "pets") == dict.fromkeys(
        ["Cat", "Feline", "Pet", "Mammal", "Animal"], 1)
    assert labelindex.remove_all(table, doc["id"]) == 5 and labelindex.remove_all(table, doc["id"]) == 0
    assert table.entries(doc["id"]) == [] and counts(table, "alice") == {}


def test_search_is_one_owners_one_label_newest_first_by_album_and_confidence(table):
    mine = [result("alice", "trip" if i % 2 else "home", i, ("Cat", 50.0 + 10 * i)) for i in range(4)]
    theirs = result("bob", "trip", 9, ("Cat", 99.0))
    for doc in mine + [theirs]:
        labelindex.sync(table, doc)
    first, start = table.search("alice", "cat", limit=2)
    assert [e.image_id for e in first] == [mine[3]["id"], mine[2]["id"]] and start
    assert search_key_fits(start, "alice", "cat", None) and not search_key_fits(start, "bob", "cat", None)
    rest, start = table.search("alice", "cat", limit=2, start=start)
    assert [e.image_id for e in rest] == [mine[1]["id"], mine[0]["id"]]
    trip, _ = table.search("alice", "cat", album="trip")
    assert [e.image_id for e in trip] == [mine[3]["id"], mine[1]["id"]]
    strong, _ = table.search("alice", "cat", min_confidence=65)
    assert [e.image_id for e in strong] == [mine[3]["id"], mine[2]["id"]]
    assert counts(table, "alice")["Cat"] == 4 and counts(table, "alice", "trip")["Animal"] == 2
    assert counts(table, "bob")["Cat"] == 1
    assert table.forget_owner("bob") == 10 and counts(table, "bob") == {} and counts(table, "alice")["Cat"] == 4


def test_many_entries_go_in_few_transactions_and_a_partly_written_set_one_by_one(table, monkeypatch):
    labels = [(f"Thing {i}", 50.0 + i) for i in range(40)]     # names the vocabulary does not know: 40 entries
    doc = result("alice", "pets", 1, *labels)
    entries = entries_for(doc)
    assert table.add(entries[5])                                 # one is there already
    calls = []
    transact = table._client.transact_write_items
    monkeypatch.setattr(table._client, "transact_write_items", lambda **kw: calls.append(kw) or transact(**kw))
    assert table.add_many(entries) == 39
    assert len(calls) == 2 + 33                                  # the second chunk whole; the first failed, then each
    assert len(table.entries(doc["id"])) == 40 and counts(table, "alice")["Thing 5"] == 1
    calls.clear()
    assert labelindex.remove_all(table, doc["id"]) == 40 and len(calls) == 2
    assert counts(table, "alice") == {}
