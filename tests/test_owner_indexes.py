"""The results table's owner indexes on the real local endpoint: per-owner listing, albums by query,
tombstones out of every listing, and indexes added to a table made before owners existed.
"""
from __future__ import annotations

import boto3
import pytest

from sightfleet.aws.dynamodb import OWNER_ALBUM_INDEX, OWNER_INDEX, ResultsTable, results_table_spec
from sightfleet.config import Settings
from sightfleet.contracts import Job, Result, iso, new_image_id, tombstone
from sightfleet.resources import provision
from tests.support import unique_prefix


def queued(owner: str, album: str, second: int) -> dict:
    job = Job(id=new_image_id(), album=album, filename="x.jpg", content_type="image/jpeg",
              submitted_at=iso(1_800_000_000 + second), size=1, inline_b64="", owner=owner)
    return Result.queued(job).to_dict()


@pytest.fixture
def table(settings) -> ResultsTable:
    return ResultsTable(settings)


def test_albums_are_one_owners_by_query_whatever_their_names_sort_like(table, settings, monkeypatch):
    # "a b" and "a,b" sort before "a/..." and "a0" after it: the skip from album to album must see them all.
    names = ["a", "a b", "a,b", "a0", "Zoo", "default"]
    for second, name in enumerate(names * 2):
        table.create(queued("alice", name, second))
    table.create(queued("bob", "bobs only", 99))
    calls = []
    query = table._table.query
    monkeypatch.setattr(table._table, "query", lambda **kw: calls.append(kw) or query(**kw))
    assert sorted(table.albums("alice")) == sorted(names)
    assert len(calls) == len(names) + 1 and all(c["Limit"] == 1 for c in calls)   # one read per album
    assert table.albums("bob") == ["bobs only"] and table.albums("carol") == []


def test_one_owners_listing_pages_newest_first_and_leaves_out_tombstones(table):
    mine = [queued("alice", "trip" if i % 2 else "home", i) for i in range(5)]
    for result in mine + [queued("bob", "trip", 50)]:
        table.create(result)
    table.replace_with_tombstone(tombstone(mine[4]))
    first, cursor = table.page(limit=2, owner="alice")
    second, cursor = table.page(limit=2, cursor=cursor, owner="alice")
    assert [r["id"] for r in first + second] == [r["id"] for r in mine[3::-1]] and cursor is None
    trip, _ = table.page(album="trip", owner="alice")
    assert [r["id"] for r in trip] == [mine[3]["id"], mine[1]["id"]]
    every, _ = table.page(limit=100)
    assert mine[4]["id"] not in {r["id"] for r in every} and len(every) == 5


def test_provisioning_adds_the_owner_indexes_to_a_table_made_before_them(moto_server):
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix())
    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name=settings.region)
    old = results_table_spec(settings.names.results_table)
    old["GlobalSecondaryIndexes"] = [i for i in old["GlobalSecondaryIndexes"]
                                     if i["IndexName"] not in (OWNER_INDEX, OWNER_ALBUM_INDEX)]
    old["AttributeDefinitions"] = [a for a in old["AttributeDefinitions"] if a["AttributeName"] not in ("owner", "album_at")]
    ddb.create_table(**old)
    provision(settings)
    provision(settings)   # and again: nothing left to add
    table = ddb.describe_table(TableName=settings.names.results_table)["Table"]
    assert {OWNER_INDEX, OWNER_ALBUM_INDEX} <= {i["IndexName"] for i in table["GlobalSecondaryIndexes"]}
    ttl = ddb.describe_time_to_live(TableName=settings.names.results_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    results = ResultsTable(settings)
    results.create(queued("alice", "trip", 1))
    assert results.albums("alice") == ["trip"]
