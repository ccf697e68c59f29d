"""The checks of a chaos run, after the load: every accepted image final once and right, the stack still serving."""
from __future__ import annotations

import json
import re
import time
from collections import Counter

import requests

from sightfleet.contracts import FINAL_STATUSES, SUCCEEDED
from sightfleet.errors import SightfleetError
from testkit.chaos.pids import module_pids, proc_state
from testkit.chaos.plan import ALBUM, PROCESSED_POISON, Photo
from testkit.chaos.report import CRASH_LINE
from testkit.chaos.run import ChaosRun, differences
from testkit.photos import jpeg_bytes

MAX_PAGES = 50              # of the album listing, 100 results each
CHILD_EXIT_LINE = re.compile(r"\b([\w-]+) \(pid (\d+)\) exited with code (-?\d+)")
TRACEBACK = "Traceback (most recent call last)"


def check_results(run: ChaosRun) -> None:
    """Every accepted image final once, with the right answer, and its result JSON equal to its row."""
    report, by_id = run.report, {u.image_id: u for u in run.uploads if u.image_id}
    try:
        rows = {r["id"]: r for r in run.resources.results.get_many(list(by_id))}
    except SightfleetError as exc:
        report.problem(f"results unreadable at the end ({exc}); judged by the last sample")
        rows = run.last_rows
    for image_id, item in by_id.items():
        row = rows.get(image_id)
        status = row["status"] if row else "NO ROW"
        report.final_states[status] += 1
        if row is None or status not in FINAL_STATUSES:
            report.lost.append(image_id)
            report.problem(f"accepted image {image_id} ({item.photo.name}) lost: {status} at the end")
            continue
        wrong = item.photo.wrong(row)
        if wrong:
            report.wrong.append(image_id)
            report.problem(f"image {image_id} ({item.photo.name}): {wrong}")
        _check_stored_json(run, row)


def _check_stored_json(run: ChaosRun, row: dict) -> None:
    try:
        stored = json.loads(run.resources.outputs.get(row["result_key"]))
    except (SightfleetError, KeyError, TypeError, ValueError) as exc:
        run.report.problem(f"image {row['id']}: no readable result JSON in the output bucket ({exc})")
        return
    if stored != row:
        run.report.rewritten.append(row["id"])
        run.report.problem(f"image {row['id']}: result JSON differs from its row ({differences(stored, row)})")


def check_door(run: ChaosRun) -> None:
    """Only broken images may be refused; a good photo refused at the door is a wrong answer."""
    for item in run.uploads:
        if item.refused and not item.photo.bad:
            run.report.wrong.append(item.number)
            run.report.problem(f"upload {item.number} ({item.photo.name}) refused: {item.refused}")
    unanswered = [item for item in run.uploads if not item.image_id and not item.refused]
    if unanswered:
        answers = sum((item.answers for item in unanswered), Counter())
        run.report.problem(f"{len(unanswered)} uploads never accepted, after {sum(answers.values())} attempts "
                           f"answered {dict(answers)}")


def check_unanswered_and_poison(run: ChaosRun) -> None:
    """Rows the clients never saw accepted (a lost answer) and poison ids must not stay unfinished."""
    accepted = set(run.accepted_ids())
    try:
        rows = _album_rows(run.resources)
    except SightfleetError as exc:
        run.report.problem(f"album unreadable at the end: {exc}")
        return
    for row in rows:
        if row["id"] in accepted:
            continue
        poison = run.poison_ids.get(row["id"])
        what = f"poison {poison!r}" if poison else "upload without a 202"
        run.report.orphans[f"{'poison' if poison else 'unanswered'} {row['status']}"] += 1
        if row["status"] not in FINAL_STATUSES or (
                poison and (row["status"] == SUCCEEDED) != (poison in PROCESSED_POISON)):
            run.report.problem(f"{what} {row['id']} ({row.get('filename')}) left {row['status']}")
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        run.report.problem(f"album lists {len(ids) - len(set(ids))} images twice")
    try:
        counts = run.resources.dead_letters.counts()
        run.report.dead_letters = counts["visible"] + counts["in_flight"]
    except SightfleetError as exc:
        run.report.problem(f"dead-letter queue unreadable: {exc}")
        return
    if run.report.dead_letters < run.report.poison_dead:
        run.report.problem(f"{run.report.poison_dead} poison messages that are no job sent, "
                           f"{run.report.dead_letters} in the dead-letter queue")


def _album_rows(resources) -> list[dict]:
    rows, cursor = [], None
    for _ in range(MAX_PAGES):
        page, cursor = resources.results.page(ALBUM, limit=100, cursor=cursor)
        rows += page
        if not cursor:
            break
    return rows


def check_still_serving(run: ChaosRun) -> None:
    """/healthz answers 200 and a fresh cat is recognised."""
    if not run.stack_alive():
        run.report.problem(f"the stack exited (code {run.stack.proc.returncode}) during the run")
        return
    try:
        health = run.stack.get("/healthz", timeout=10)
        fresh = run.stack.post("/api/images", params={"album": ALBUM, "wait": 60},
                               files={"file": ("fresh-chelsea.jpg", jpeg_bytes("chelsea"), "image/jpeg")},
                               timeout=90)
    except requests.RequestException as exc:
        run.report.problem(f"the web tier does not answer after the run: {exc}")
        return
    if health.status_code != 200:
        run.report.problem(f"/healthz {health.status_code} after the run: {health.text[:300]}")
    images = fresh.json().get("images", [{}]) if fresh.headers.get("content-type", "").startswith(
        "application/json") else [{}]
    wrong = Photo("chelsea", b"", label_words=("cat",)).wrong(images[0]) if images[0].get("status") else \
        f"answer {fresh.status_code}: {fresh.text[:300]}"
    if fresh.status_code != 200 or wrong:
        run.report.problem(f"a fresh upload after the run did not succeed: {wrong}")


def check_fleet_back_to_zero(run: ChaosRun) -> None:
    """No instance and no worker process within idle grace + the bound."""
    if not run.stack_alive():
        return   # reported already: the stack exited
    started, bound = time.monotonic(), run.config.idle_grace_s + run.config.zero_bound_s
    while time.monotonic() - started < bound and run.stack_alive():
        run.stack.track()
        try:
            # Workers frozen in the warm pool (state T, their instance stopped) are not running.
            empty = not run.resources.fleet.instances() and not [
                pid for pid in module_pids(run.stack, "app_tier") if proc_state(pid) != "T"]
        except SightfleetError:
            empty = False
        if empty and run.stack_alive():   # a stopping stack empties its fleet too
            run.report.zero_s = round(time.monotonic() - started, 1)
            return
        time.sleep(0.5)
    run.report.problem(f"the fleet was not back to zero within {bound:.0f} s (idle grace + "
                       f"{run.config.zero_bound_s:.0f} s)")


def check_log(run: ChaosRun) -> None:
    """Every worker or child exit in the stack log is one of our kills; no traceback anywhere."""
    text = run.stack.log_text()
    for line in unexplained_deaths(text, run.killed):
        run.report.unexplained_exits.append(line)
        run.report.problem(f"a process died that no fault killed: {line}")
    for excerpt in tracebacks(text):
        run.report.tracebacks.append(excerpt)
        run.report.problem(f"traceback in the stack log:\n{excerpt}")


def unexplained_deaths(text: str, killed: set[int]) -> list[str]:
    """Lines of the stack log where a worker or a supervised child died and no kill of ours explains it."""
    found = []
    for line in text.splitlines():
        crash, child = CRASH_LINE.search(line), CHILD_EXIT_LINE.search(line)
        pid = int(crash.group(1)) if crash else int(child.group(2)) if child else None
        if pid is not None and pid not in killed:
            found.append(line.strip())
    return found


def tracebacks(text: str, context: int = 2, frames: int = 2, limit: int = 8) -> list[str]:
    """Each traceback in text, short: a few lines before it, its innermost frames and its exception line."""
    lines, found = text.splitlines(), []
    for n, line in enumerate(lines):
        if TRACEBACK in line and len(found) < limit:
            end = n + 1
            while end < len(lines) and lines[end].startswith((" ", "\t")):
                end += 1
            frame_lines = [each for each in lines[n + 1:end] if each.lstrip().startswith("File ")]
            found.append("\n".join([*lines[max(0, n - context):n + 1], *frame_lines[-frames:],
                                    *lines[end:end + 1]]))
    return found
