"""`python -m web_tier.accounts`: create, list, revoke and delete accounts and keys; make sign-in links.

`delete` also deletes the account's images (as DELETE /api/images/<id> does, each one), unless
--keep-images.

Reads the same environment as the stack (AWS_ENDPOINT_URL, SIGHTFLEET_PREFIX, ...); with no credentials
and no other endpoint given, the running local stack's, from .run/local-aws.env. What a command
makes (an API key, a link) is the LAST line of stdout, so scripts can take it with `tail -n 1`;
everything else goes to stderr. Exit status 2 with a message when the command cannot be done.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import sys

from sightfleet.config import ConfigError, Settings
from sightfleet.local_access import use_local_aws_env
from sightfleet.errors import NotFound, SightfleetError, Unavailable
from sightfleet.logs import setup_logging
from sightfleet.secretbox import credentials_box
from sightfleet.webhooks import EVENTS, WebhookError
from sightfleet.aws.accounts import AccountsTable
from sightfleet.accounts import LINK_TTL_S, AccountError, Accounts

log = logging.getLogger("web_tier.accounts")
EXIT_OK, EXIT_REFUSED = 0, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m web_tier.accounts", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create an account; prints its first API key last")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may see /ops, /api/ops/* and /metrics")
    create.add_argument("--password", action="store_true", help="also set a password for the sign-in page (asked)")
    commands.add_parser("list", help="the accounts and their keys' ids")
    key = commands.add_parser("key", help="issue another API key to an account; prints it last")
    key.add_argument("name")
    key.add_argument("--label", default="", help="what the key is for")
    access = commands.add_parser("access-key", help="issue an access-key pair for AWS SDK and CLI clients "
                                                    "(SigV4); prints AWS_ACCESS_KEY_ID=... and "
                                                    "AWS_SECRET_ACCESS_KEY=... last")
    access.add_argument("name")
    access.add_argument("--label", default="", help="what the key is for")
    keep = commands.add_parser("keep-api-images", help="whether photos sent through the Rekognition endpoint "
                                                       "stay in the account's gallery (default: off, deleted "
                                                       "once answered)")
    keep.add_argument("name")
    keep.add_argument("state", choices=("on", "off"))
    hook = commands.add_parser("webhook-add", help="register a webhook endpoint for an account; prints its signing "
                                                   "secret last")
    hook.add_argument("name")
    hook.add_argument("url")
    hook.add_argument("--events", default=",".join(EVENTS), help=f"comma-separated, of {', '.join(EVENTS)}")
    hooks = commands.add_parser("webhooks", help="an account's webhook endpoints and their last deliveries")
    hooks.add_argument("name")
    unhook = commands.add_parser("webhook-remove", help="remove one of an account's webhook endpoints")
    unhook.add_argument("name")
    unhook.add_argument("hook_id")
    revoke = commands.add_parser("revoke", help="revoke an API key or access key by its id (at once)")
    revoke.add_argument("key_id")
    delete = commands.add_parser("delete", help="delete an account, its keys and its images (results, originals, "
                                                "thumbnails, annotated copies)")
    delete.add_argument("name")
    delete.add_argument("--keep-images", action="store_true",
                        help="keep the account's images (then only admins can reach them, by its account id)")
    password = commands.add_parser("password", help="set an account's password (asked); lists the keys made since "
                                                    "the last change")
    password.add_argument("name")
    password.add_argument("--revoke-new-keys", action="store_true",
                          help="also revoke every API key made since the password last changed")
    signout = commands.add_parser("signout", help="end every session of an account (its keys stay valid)")
    signout.add_argument("name")
    link = commands.add_parser("link", help="a one-time sign-in link for an account; prints it last")
    link.add_argument("name")
    link.add_argument("--url", help="the web tier's address (default http://127.0.0.1:$PORT)")
    link.add_argument("--ttl", type=int, default=LINK_TTL_S, help=f"seconds the link stays valid (default {LINK_TTL_S})")
    return parser


def _ask_password() -> str:
    """A new password: asked twice on a terminal, else the first line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the two passwords differ")
    return first


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _list(accounts: Accounts) -> None:
    for account in accounts.all():
        keys = ", ".join(k["key_id"] for k in accounts.keys(account)) or "none"
        _out(f"{account['name']}\t{'admin' if account.get('admin') else 'user'}\t"
             f"password {'set' if account.get('password_hash') else 'unset'}\tkeys: {keys}")


def _delete(accounts: Accounts, settings: Settings, name: str, keep_images: bool, resources=None) -> None:
    """Delete an account: lock it out (keys, sessions), then its images and quota count (unless kept), then itself.

    Locked out first, so that nothing is uploaded behind the deletion. An image that cannot be deleted
    keeps the account, with the image's id, so that running the command again finishes it first.
    """
    account = accounts.get(name)
    keys = accounts.lock_out(name)
    _webhooks_service(settings).forget_account(account["account_id"])   # no event of the deletion goes out
    if not keep_images:
        from sightfleet.aws.limits import LimitsTable
        if resources is None:
            from sightfleet.resources import Resources
            resources = Resources.connect(settings)
        limits = LimitsTable(settings)
        _erase_images(resources, accounts, account, lambda: _released(limits, account["account_id"]))
        limits.forget(account["account_id"])
    accounts.delete(name)
    log.info("deleted account %s and %d keys%s", name, keys, "; its images are kept" if keep_images else "")


def _released(limits, owner: str) -> None:
    """One image fewer in owner's quota (so a kept account is not left counting deleted images)."""
    try:
        limits.release(owner, 1)
    except SightfleetError as exc:
        log.warning("quota: could not count a deleted image of %s off: %s", owner, exc)


def _erase_images(resources, accounts: Accounts, account: dict, on_tombstoned) -> None:
    from tqdm import tqdm

    from sightfleet.deletion import delete_images_by_id, delete_owner_images
    seen = []
    with tqdm(desc=f"deleting the images of {account['name']}", unit="image", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        def each() -> None:
            seen.append(1)
            bar.update()
        failed = delete_images_by_id(resources, account.get("pending_purge") or [], on_tombstoned)
        failed += delete_owner_images(resources, account["account_id"], on_each=each, on_tombstoned=on_tombstoned)
    if failed:
        accounts.set_pending_purge(account["name"], [image_id for image_id, _ in failed])
        named = ", ".join(image_id for image_id, _ in failed[:5]) + (" and more" if len(failed) > 5 else "")
        raise AccountError(
            f"{len(failed)} images of {account['name']} could not be deleted ({named}; first error: {failed[0][1]}); "
            "the account is kept, locked out, and remembers them: run the command again once storage answers")
    log.info("deleted the %d images of %s", len(seen), account["name"])


def _change_password(accounts: Accounts, name: str, revoke_new_keys: bool) -> None:
    """Set the password; the keys made since the last change are revoked with it, or listed to decide on."""
    account = accounts.get(name)
    new_keys = accounts.keys_since_password_change(account)
    accounts.set_password(name, _ask_password())
    log.info("password of %s set; every session of it has ended", name)
    for key in new_keys:
        if revoke_new_keys:
            accounts.revoke(key["key_id"], account)
        log.info("%s key %s (%r, made %s, last used %s) made since the last password change",
                 "revoked" if revoke_new_keys else "kept", key["key_id"], key["label"], key["created_at"],
                 key["last_used_at"] or "never")
    if new_keys and not revoke_new_keys:
        log.info("revoke any you did not make: python -m web_tier.accounts revoke KEY_ID (or --revoke-new-keys)")


def run(args: argparse.Namespace, accounts: Accounts, settings: Settings) -> None:
    """Do one command; AccountError or the project's errors when it cannot be done."""
    if args.command == "create":
        password = _ask_password() if args.password else None
        account, issued = accounts.create(args.name, admin=args.admin, password=password)
        log.info("account %s created; its API key %s is shown once, below", account["name"], issued.key_id)
        _out(issued.key)
    elif args.command == "list":
        _list(accounts)
    elif args.command == "key":
        issued = accounts.issue_key(accounts.get(args.name), args.label)
        log.info("API key %s issued; it is shown once, below", issued.key_id)
        _out(issued.key)
    elif args.command == "access-key":
        issued = accounts.issue_access_key(accounts.get(args.name), args.label)
        log.info("access key %s issued; its secret is shown once, below (export both lines)", issued.key_id)
        _out(f"AWS_ACCESS_KEY_ID={issued.key_id}")
        _out(f"AWS_SECRET_ACCESS_KEY={issued.secret}")
    elif args.command == "keep-api-images":
        accounts.set_keep_api_images(args.name, args.state == "on")
        log.info("photos of %s's Rekognition calls are %s", args.name,
                 "kept in its gallery" if args.state == "on" else "deleted once answered")
    elif args.command.startswith("webhook"):
        _webhooks(args, accounts.get(args.name)["account_id"], settings)
    elif args.command == "revoke":
        if not accounts.revoke(args.key_id):
            raise AccountError(f"no API key with id {args.key_id!r}")
        log.info("revoked key %s", args.key_id)
    elif args.command == "delete":
        _delete(accounts, settings, args.name, args.keep_images)
    elif args.command == "password":
        _change_password(accounts, args.name, args.revoke_new_keys)
    elif args.command == "signout":
        accounts.end_sessions(args.name)
        log.info("every session of %s has ended", args.name)
    elif args.command == "link":
        token = accounts.make_link(args.name, args.ttl)
        base = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
        log.info("a sign-in link for %s, valid once within %d s:", args.name, args.ttl)
        _out(f"{base}/signin/link?token={token}")


def _webhooks_service(settings: Settings):
    from sightfleet.aws.webhooks import WebhookTable
    from web_tier.webhooks.service import Webhooks
    return Webhooks(WebhookTable(settings), credentials_box(settings), settings.is_local)


def _webhooks(args: argparse.Namespace, account_id: str, settings: Settings) -> None:
    service = _webhooks_service(settings)
    if args.command == "webhook-add":
        try:
            issued = service.register(account_id, args.url, [e.strip() for e in args.events.split(",") if e.strip()])
        except WebhookError as exc:
            raise AccountError(str(exc)) from None
        log.info("webhook %s registered for %s; its signing secret is shown once, below", issued.hook["hook_id"],
                 args.url)
        _out(issued.secret)
    elif args.command == "webhooks":
        for hook in service.hooks(account_id):
            last = hook["deliveries"][0] if hook["deliveries"] else {}
            _out(f"{hook['hook_id']}\t{hook['status']}\t{','.join(hook['events'])}\t{hook['url']}\t"
                 f"last: {last.get('status', 'none')} {last.get('code', '')} {last.get('at', '')}".rstrip())
    elif not service.remove(account_id, args.hook_id):
        raise AccountError(f"{args.name} has no webhook {args.hook_id!r}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging("accounts")
    try:
        use_local_aws_env()
        settings = Settings.from_env()
        run(args, Accounts(AccountsTable(settings), credentials_box(settings)), settings)
    except (AccountError, ConfigError) as exc:
        log.error("%s", exc)
        return EXIT_REFUSED
    except NotFound as exc:
        log.error("the accounts table %s does not exist on %s (%s): start the stack (scripts/run) or provision it "
                  "(python -m sightfleet.provision) first", settings.names.accounts_table, _where(settings), exc)
        return EXIT_REFUSED
    except Unavailable as exc:
        log.error("cannot reach the stack's DynamoDB on %s: %s", _where(settings), exc)
        return EXIT_REFUSED
    except SightfleetError as exc:
        log.error("%s", exc)
        return EXIT_REFUSED
    return EXIT_OK


def _where(settings: Settings) -> str:
    return settings.endpoint_url or f"AWS {settings.region}"


if __name__ == "__main__":
    sys.exit(main())
