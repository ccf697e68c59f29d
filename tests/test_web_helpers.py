"""Helpers shared by the web tier's tests (no tests here).

`finish` writes a result the way a worker does (through ResultsTable.start/finish, worker-shaped
fields), for page and API tests that must not wait for the models. `QueueFinisher` plays a worker
for tests of the waiting endpoints through the Flask test client: it takes real jobs off the real
request queue and finishes them from the job alone, as a worker claims them (the web tier sends the
job before it writes the QUEUED row, so a fast worker may find no row yet). The end-to-end tests use the real stack instead.
"""
from __future__ import annotations

import io
import threading

from PIL import Image

from sightfleet.contracts import FAILED, PROCESSING, SUCCEEDED, Job, output_keys, owner_of, queued_result, utc_now

METADATA = {
    "created_at": "2008-05-30T15:56:01", "camera_make": "Canon", "camera_model": "Canon EOS 40D",
    "gps": {"latitude": {"degrees": 43, "minutes": 28, "seconds": 1.74, "direction": "N"},
            "longitude": {"degrees": 11, "minutes": 53, "seconds": 6.77, "direction": "W"},
            "latitude_decimal": 43.46715, "longitude_decimal": -11.885213},
    "width": 451, "height": 300, "file_size": 24813, "file_size_human": "24.2 KB", "format": "JPEG",
    "orientation": 1,
}
TIMINGS = {"decode": 3.1, "exif": 1.2, "thumbnail": 4.4, "detect": 41.3, "classify": 16.2, "total": 66.2}


def labels(top: str) -> list[dict]:
    return [
        {"Name": top, "Confidence": 91.25, "Source": "detector",
         "Instances": [{"BoundingBox": {"Width": 0.5, "Height": 0.6, "Left": 0.1, "Top": 0.2}, "Confidence": 91.25}]},
        {"Name": "tabby", "Confidence": 72.4, "Source": "classifier", "Instances": []},
    ]


def thumbnail(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    image.thumbnail((250, 250))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG")
    return out.getvalue()


def finish(resources, image_id: str, status: str = SUCCEEDED, top: str = "cat", data: bytes | None = None,
           **fields) -> dict:
    """Move a queued result to PROCESSING and then to a final state, as a worker would."""
    return finish_result(resources, resources.results.get(image_id), status, top, data, **fields)


def finish_job(resources, job: Job, status: str = SUCCEEDED, top: str = "cat") -> dict:
    """Finish a received job as a worker claims it: from the job alone, as its row may not be written yet."""
    return finish_result(resources, queued_result(job), status, top)


def finish_result(resources, result: dict, status: str, top: str, data: bytes | None = None, **fields) -> dict:
    """Write result PROCESSING (creating the row if there is none) and then final, through start/finish."""
    image_id = result["id"]
    result.update(status=PROCESSING, started_at=utc_now(), updated_at=utc_now(), instance_id="i-0123456789abcdef0",
                  attempts=1)
    resources.results.start(result)
    if status == SUCCEEDED:
        result.update(labels=labels(top), top_label=top, metadata=METADATA, timings=TIMINGS)
        if data:
            keys = output_keys(owner_of(result), image_id)
            key = keys["thumbnail"] + ".jpg"
            resources.outputs.put(key, thumbnail(data), "image/jpeg")
            resources.outputs.put(keys["annotated"], data, "image/jpeg")
            result.update(thumbnail_key=key, annotated_key=keys["annotated"])
    else:
        result.update(error={"code": "CORRUPT_IMAGE", "message": "the image data is damaged"})
    result.update(status=status, completed_at=utc_now(), updated_at=utc_now(), **fields)
    resources.results.finish(result)
    return result


class QueueFinisher(threading.Thread):
    """Takes jobs off the request queue and finishes them: FAILED for names starting 'bad', else SUCCEEDED."""

    def __init__(self, resources, count: int, top: str = "cat"):
        super().__init__(daemon=True)
        self.resources, self.count, self.top = resources, count, top
        self.done: list[str] = []

    def run(self) -> None:
        while len(self.done) < self.count:
            for message in self.resources.requests.receive(10, 1):
                job = Job.from_message(message.body)
                status = FAILED if job.filename.startswith("bad") else SUCCEEDED
                finish_job(self.resources, job, status, self.top)
                self.resources.requests.delete(message.receipt)
                self.done.append(job.id)
