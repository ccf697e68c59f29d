"""A job that exhausts its receives is dead-lettered and then shown FAILED with a reason."""
from __future__ import annotations

import pytest

from controller import dead_letters
from sightfleet.errors import NoSuchObject
from sightfleet.resources import Resources
from tests.support import jpeg_bytes, wait_for
from web_tier.submit import Submitter, Upload


def test_dead_lettered_job_is_marked_failed_once(settings_factory):
    resources = Resources.connect(settings_factory(max_receive_count=1))
    accepted = Submitter(resources, 10 << 20).submit(Upload(jpeg_bytes(), "poison.jpg"))
    # A worker that dies on the job: receive it and never delete it.
    [message] = resources.requests.receive(1, 1)
    resources.requests.set_visibility([message.receipt], 0)
    wait_for(lambda: resources.requests.receive(1, 1) == [] and resources.dead_letters.counts()["visible"] == 1,
             15, what="redrive to the dead-letter queue")
    assert dead_letters.sweep(resources) == [accepted["id"]]
    result = resources.results.get(accepted["id"])
    assert result["status"] == "FAILED" and result["error"]["code"] == "PROCESSING_FAILED"
    assert "dead-letter" in result["error"]["message"]
    # The message stays for inspection; sweeping it again changes nothing.
    resources.dead_letters.set_visibility([m.receipt for m in resources.dead_letters.receive(10, 1)], 0)
    assert dead_letters.sweep(resources) == []
    assert resources.results.get(accepted["id"]) == result


def test_dead_letters_under_inspection_still_count():
    """The sweep hides each dead letter for RECHECK_S; the controller's count (and the dashboard's) keeps it."""
    from controller.observe import Observer
    from sightfleet.config import Settings
    from sightfleet.memory import memory_resources
    resources, _ = memory_resources(Settings(prefix="mem"))
    resources.dead_letters.send("not a job")
    dead_letters.sweep(resources)
    assert resources.dead_letters.counts()["visible"] == 0
    assert Observer(resources, resources.settings).observe(0.0).dead_letters == 1


def test_a_dead_lettered_job_of_a_deleted_image_has_its_leftover_files_purged(settings_factory):
    """A worker stored the files, the owner deleted the image, the worker died: nothing redelivers, the sweep purges."""
    from sightfleet.contracts import output_keys, tombstone
    resources = Resources.connect(settings_factory(max_receive_count=1))
    accepted = Submitter(resources, 10 << 20).submit(Upload(jpeg_bytes(), "gone.jpg"))
    [message] = resources.requests.receive(1, 1)   # the worker's last receive
    row = resources.results.get(accepted["id"])
    left_behind = output_keys(row["owner"], row["id"])["result"]
    resources.outputs.put(left_behind, b"{}", "application/json")   # stored before it died
    resources.inputs.put(row["input_key"], jpeg_bytes(), "image/jpeg")
    assert resources.results.replace_with_tombstone(tombstone(row))   # the owner deleted it meanwhile
    resources.requests.set_visibility([message.receipt], 0)
    wait_for(lambda: resources.requests.receive(1, 1) == [] and resources.dead_letters.counts()["visible"] == 1,
             15, what="redrive to the dead-letter queue")
    assert dead_letters.sweep(resources) == []
    assert resources.results.get(accepted["id"])["status"] == "DELETED"   # still a tombstone, not FAILED
    for bucket, key in ((resources.outputs, left_behind), (resources.inputs, row["input_key"])):
        with pytest.raises(NoSuchObject):
            bucket.get(key)
