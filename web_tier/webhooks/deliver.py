"""The webhook deliverer, `python -m web_tier.webhooks`: results out to their owners' endpoints, retried for a day.

It runs beside the web tier (a child of `scripts/run`; a systemd unit on each web instance) and is fed
by queues, so it scales with the web instances and survives like the workers: nothing is lost when it
dies, because a message leaves its queue only after its work is done.
- Fan-out: a response-queue message (a result became final, or an image was deleted) becomes one
  delivery message per endpoint of the owner that takes the event, and one for the upload's callback,
  on the webhooks queue. The response message is deleted after they are all sent; if it comes back
  (a crash in between) the same deliveries are made again with the same delivery ids.
- Delivery: one signed POST per message. Delivered or given up: logged on its endpoint and deleted.
  Failed: logged, and sent again with the next backoff delay (SQS delays at most 15 minutes: a longer
  wait takes several hops). A delivery that runs out of attempts (a receiver failing for more than a
  day) disables its endpoint; its owner sees why and can enable it again. A short outage disables
  nothing: every delivery keeps its own retries.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sightfleet.aws.sqs import Queue
from sightfleet.aws.webhooks import WebhookTable
from sightfleet.config import Settings, settings_or_exit
from sightfleet.contracts import iso, owner_of
from sightfleet.errors import Invalid, NoSuchResult, SightfleetError
from sightfleet.logs import setup_logging
from sightfleet.procs import stop_event_on_signals
from sightfleet.resources import Resources
from sightfleet.secretbox import SealError, SecretBox, credentials_box
from sightfleet.webhooks import (DELETED_EVENT, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, delivery_id,
                                 event_of, fate, signature_header)
from web_tier.webhooks.http import post

log = logging.getLogger(__name__)
MAX_SQS_DELAY_S = 900
RECEIVE_WAIT_S = 5
RECEIVE_BATCH = 10
IMAGE_FIELDS = ("id", "status", "album", "filename", "labels", "top_label", "metadata", "error", "completed_at",
                "label_model_version")
CALLBACK = "callback"


def payload(event: str, image: dict, the_delivery: str) -> dict:
    """The JSON a receiver gets: the event, a stable id, and the image as its owner sees it through the API."""
    shown = {"id": image["id"], "status": "DELETED"} if event == DELETED_EVENT else \
        {name: image.get(name) for name in IMAGE_FIELDS}
    return {"id": the_delivery, "event": event, "created_at": iso(time.time()), "image": shown}


class Deliverer:
    """The two loops (fan-out and delivery) over the stack's queues and tables."""

    def __init__(self, settings: Settings, resources, box: SecretBox | None, stop: threading.Event):
        self.settings, self.resources, self.box, self.stop = settings, resources, box, stop
        self.hooks = WebhookTable(settings)
        self.queue = Queue(settings, settings.names.webhook_queue)
        self.backoff = settings.webhook_backoff

    def _poll_forever(self, queue, handle, what: str, visibility_s: int | None = None) -> None:
        """Receive from queue and handle its messages side by side until told to stop (or a bug ends the process).

        Each message is handled on a thread of its own (at most RECEIVE_BATCH), so one slow receiver holds
        up only its own delivery, and a batch ends within an attempt's deadline, inside the visibility timeout.
        """
        with ThreadPoolExecutor(RECEIVE_BATCH, thread_name_prefix=what) as pool:
            while not self.stop.is_set():
                try:
                    messages = queue.receive(RECEIVE_BATCH, RECEIVE_WAIT_S, visibility_s=visibility_s)
                except SightfleetError as exc:
                    log.warning("cannot read the %s queue (%s); trying again", what, exc)
                    self.stop.wait(RECEIVE_WAIT_S)
                    continue
                for done in [pool.submit(self._guarded, handle, message, what) for message in messages]:
                    done.result()
        log.info("%s loop stopped", what)

    def _guarded(self, handle, message, what: str) -> None:
        """One message's work; a bug on one message is logged, and that message comes back to be tried again."""
        try:
            handle(message)
        except Exception:  # noqa: BLE001 - one message must not end the loop that serves every account
            log.exception("a %s message could not be handled; it comes back after its visibility timeout", what)

    # fan-out
    def fan_out_forever(self) -> None:
        """Turn response messages into deliveries until told to stop."""
        self._poll_forever(self.resources.responses, self._fan_out_one, "response")

    def _fan_out_one(self, message) -> None:
        try:
            for delivery in self.deliveries_for(json.loads(message.body)):
                self.queue.send(json.dumps(delivery))
            self.resources.responses.delete(message.receipt)
        except (ValueError, KeyError, TypeError, Invalid) as exc:   # it can never be fanned out: not kept
            log.error("dropping a response message that cannot be fanned out: %s", exc)
            self.resources.responses.delete(message.receipt)
        except SightfleetError as exc:   # left on the queue: it comes back after its visibility timeout
            log.warning("fan-out of a response message failed (%s); it will come back", exc)

    def deliveries_for(self, short: dict) -> list[dict]:
        """The delivery messages one response message makes (none when nobody asked for its event)."""
        event = event_of(short.get("status", ""))
        if event is None:
            return []
        image = self._image(short, event)
        if image is None:
            return []
        owner, occurred = owner_of(image if image.get("owner") else short), short.get("completed_at") or short["id"]
        targets = [(hook["hook_id"], None) for hook in self.hooks.hooks_of(owner)
                   if hook["status"] == "active" and event in hook["events"]]
        callback = self.hooks.callback(image["id"]) if event != DELETED_EVENT else None
        if callback and callback.get("owner") == owner:
            targets.append((CALLBACK, callback["url"]))
        found = []
        for target, url in targets:
            the_delivery = delivery_id(event, image["id"], target, str(occurred))
            found.append({"delivery_id": the_delivery, "target": target, "url": url, "owner": owner,
                          "event": event, "image_id": image["id"], "attempt": 0, "not_before": 0,
                          "payload": payload(event, image, the_delivery)})
        return found

    def _image(self, short: dict, event: str) -> dict | None:
        if event == DELETED_EVENT:
            return {"id": short["id"], "owner": short.get("owner")}
        try:
            image = self.resources.results.get(short["id"])
        except NoSuchResult:
            return None
        return image if image.get("status") == short["status"] else None   # deleted meanwhile, or redone

    # delivery
    def deliver_forever(self) -> None:
        """Make deliveries until told to stop."""
        self._poll_forever(self.queue, self._deliver_one, "webhooks", self.settings.webhook_visibility_s)

    def _deliver_one(self, message) -> None:
        try:
            delivery = json.loads(message.body)
            if delivery["not_before"] > time.time():
                self._send_later(delivery, delivery["not_before"] - time.time())
            else:
                self.attempt(delivery)
            self.queue.delete(message.receipt)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropping a webhooks message that is not a delivery: %s", exc)
            self.queue.delete(message.receipt)
        except SightfleetError as exc:
            log.warning("a delivery could not be handled (%s); it comes back after its visibility timeout", exc)

    def attempt(self, delivery: dict) -> None:
        """One try of a delivery, and what follows from it (done, again later, or given up)."""
        target = self._target(delivery)
        if target is None:
            return
        url, secret = target
        body = json.dumps(delivery["payload"], separators=(",", ":")).encode()
        answer = post(url, body, {"Content-Type": "application/json", "User-Agent": "Sightfleet-Webhooks/1",
                                  EVENT_HEADER: delivery["event"], DELIVERY_HEADER: delivery["delivery_id"],
                                  SIGNATURE_HEADER: signature_header(secret, body)},
                      allow_private=bool(self.settings.webhook_allow_private),
                      allow_loopback=self.settings.is_local)
        next_step = fate(answer.ok, delivery["attempt"], self.backoff)
        log.info("delivery %s (%s of %s) attempt %d to %s: %s %s", delivery["delivery_id"], delivery["event"],
                 delivery["image_id"], delivery["attempt"] + 1, delivery["target"], answer.status or "no answer",
                 "delivered" if answer.ok else ("given up" if next_step.give_up else "will retry"))
        self._record(delivery, answer, next_step)
        if not next_step.done:
            self._send_later({**delivery, "attempt": delivery["attempt"] + 1,
                              "not_before": time.time() + next_step.delay_s}, next_step.delay_s)

    def _target(self, delivery: dict) -> tuple[str, str] | None:
        """Where a delivery goes and the secret that signs it; None when it should no longer be made."""
        if self.box is None:
            raise SightfleetError("no credentials key: the signing secrets cannot be opened")
        try:
            if delivery["target"] == CALLBACK:
                sealed = self.hooks.callback_secret(delivery["owner"])
                return None if sealed is None else (delivery["url"],
                                                    self.box.open(sealed, bound_to=f"callback:{delivery['owner']}"))
            hook = self.hooks.get_hook(delivery["target"])
            if hook is None or hook["status"] != "active":
                log.info("delivery %s dropped: endpoint %s is gone or disabled", delivery["delivery_id"],
                         delivery["target"])
                return None
            return hook["url"], self.box.open(hook["secret_sealed"], bound_to=hook["hook_id"])
        except SealError:
            log.error("delivery %s dropped: its signing secret does not open with this credentials key",
                      delivery["delivery_id"])
            return None

    def _record(self, delivery: dict, answer, next_step) -> None:
        if delivery["target"] == CALLBACK:
            return
        status = "delivered" if answer.ok else ("gave up" if next_step.give_up else "retrying")
        entry = {"event": delivery["event"], "image_id": delivery["image_id"], "status": status,
                 "attempts": delivery["attempt"] + 1, "code": answer.status, "detail": answer.detail,
                 "at": iso(time.time())}
        failures = self.hooks.record(delivery["target"], delivery["delivery_id"], entry, failed=not answer.ok)
        if next_step.give_up:
            why = (f"delivery {delivery['delivery_id']} failed all {delivery['attempt'] + 1} attempts "
                   f"({failures} failed attempts in a row); last answer: {answer.status or 'none'} {answer.detail[:100]}")
            self.hooks.set_status(delivery["target"], "disabled", why)
            log.warning("webhook %s disabled: %s", delivery["target"], why)

    def _send_later(self, delivery: dict, wait_s: float) -> None:
        self.queue.send(json.dumps(delivery), delay_s=int(min(max(wait_s, 0), MAX_SQS_DELAY_S)))


def main() -> int:
    """Run both loops until SIGTERM or SIGINT; exit 1 when a loop dies (systemd or the stack starts it again)."""
    setup_logging("webhooks")
    settings = settings_or_exit(log)
    stop = stop_event_on_signals()
    deliverer = Deliverer(settings, Resources.connect(settings), credentials_box(settings), stop)
    loops = [threading.Thread(target=deliverer.fan_out_forever, name="fan-out", daemon=True),
             threading.Thread(target=deliverer.deliver_forever, name="deliver", daemon=True)]
    for loop in loops:
        loop.start()
    log.info("webhook deliverer running on %s", settings.names.webhook_queue)
    while not stop.wait(1.0):
        if not all(loop.is_alive() for loop in loops):
            log.error("a loop of the webhook deliverer died; exiting so that it is started again")
            stop.set()
            return 1
    for loop in loops:
        loop.join(timeout=30)
    return 0
