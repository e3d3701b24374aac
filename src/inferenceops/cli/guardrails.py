"""``inferenceops guardrails list|show|apply|attach|detach|delete|attachments|records``.

Guardrail policies on a running server, through the admin API (``/guardrails/...``), with
the conventions of every operator command (``cli._client``): ``--url`` / ``INFERENCEOPS_URL``,
``--key`` / ``INFERENCEOPS_ADMIN_KEY``, tables for people, ``--json`` for scripts, exit 1 when
the server refuses (its message names the field: ``rules.0.regex``), 2 for a usage error.

``apply -f FILE`` takes the platform file's own ``guardrails:`` section (or a file that is only
that section): each policy is created or changed (``PUT``; the server adds one to the version
of a changed one and leaves an unchanged one alone), then each ``attach`` entry is made
(teams by name or id). A policy's ``version`` in the file is not sent: the server keeps the
version of what it stores. Nothing is deleted: ``detach`` and ``delete`` do that, by name.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml

from inferenceops.cli._client import (
    DEFAULT_URL,
    JsonOpt,
    KeyOpt,
    UrlOpt,
    _api,
    _emit_json,
    _emit_list,
    _fail,
    _list,
    _quote,
    format_record,
    team_id_of,
)
from inferenceops.cli.apply import _read

POLICY_COLUMNS = (("name", "NAME"), ("version", "VERSION"), ("source", "SOURCE"),
                  ("rule_count", "RULES"), ("description", "DESCRIPTION"))
POLICY_FIELDS = (("name", "name"), ("label", "label"), ("source", "source"),
                 ("description", "description"), ("created_at", "created"),
                 ("updated_at", "updated"))
ATTACHMENT_COLUMNS = (("id", "ID"), ("policy", "POLICY"), ("scope", "SCOPE"),
                      ("target", "TARGET"), ("source", "SOURCE"))
RECORD_COLUMNS = (("at", "AT"), ("request_id", "REQUEST"), ("team_id", "TEAM"),
                  ("key_id", "KEY"), ("model", "MODEL"), ("status", "STATUS"),
                  ("guardrails", "GUARDRAILS"))

guardrails_app = typer.Typer(no_args_is_help=True, help=(
    "Guardrail policies (PII, secrets, patterns, size and model rules) and where they are "
    "attached (admin API)."))


def _target(attachment: dict[str, Any]) -> str | None:
    return (attachment.get("team_name") or attachment.get("team_id") or attachment.get("model")
            or attachment.get("key_id"))


@guardrails_app.command("list")
def guardrails_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                    as_json: JsonOpt = False) -> None:
    """Every policy: the platform file's (read-only here) and the API's."""
    items = _list(url, key, "/guardrails/policies")
    if not as_json:
        items = [{**p, "rule_count": len(p["rules"])} for p in items]
    _emit_list(items, POLICY_COLUMNS, as_json, "guardrail policies")


@guardrails_app.command("show")
def guardrails_show(name: Annotated[str, typer.Argument(metavar="NAME")],
                    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                    as_json: JsonOpt = False) -> None:
    """A policy: its rules (as the platform file writes them) and where it is attached."""
    policy = _api(url, key, "GET", f"/guardrails/policies/{_quote(name)}")
    attached = _list(url, key, "/guardrails/attachments", {"policy": name})
    if as_json:
        _emit_json({**policy, "attachments": attached})
        return
    typer.echo(format_record(policy, POLICY_FIELDS))
    typer.echo("rules:")
    for rule in policy["rules"]:
        typer.echo("  - " + yaml.safe_dump(rule, default_flow_style=True, sort_keys=False).strip())
    typer.echo("attached:" + ("" if attached else " nowhere"))
    for attachment in attached:
        where = attachment["scope"] + (f" {_target(attachment)}" if _target(attachment) else "")
        typer.echo(f"  - {where}  ({attachment['source']}, {attachment['id'] or 'file'})")


def _section(text: str, source: str) -> dict[str, Any]:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _fail(f"{source}: not valid YAML: {exc}", exit_code=2)
    if isinstance(data, dict) and "guardrails" in data:
        data = data["guardrails"]
    if not isinstance(data, dict) or not ({"policies", "attach"} & set(data)):
        _fail(f"{source}: expected a 'guardrails:' section with 'policies:' and/or 'attach:'",
              exit_code=2)
    return data


@guardrails_app.command("apply")
def guardrails_apply(
    file: Annotated[str, typer.Option("--file", "-f", metavar="FILE",
                                      help="YAML with a guardrails: section; '-' reads stdin.")],
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create or change the file's policies, then make its attachments (nothing is deleted)."""
    text, source = _read(file)
    section = _section(text, source)
    done: list[dict[str, Any]] = []
    for index, policy in enumerate(section.get("policies") or []):
        if not isinstance(policy, dict) or not isinstance(policy.get("name"), str):
            _fail(f"{source}: policies[{index}]: a policy needs a name", exit_code=2)
        body = {k: v for k, v in policy.items() if k not in ("name", "version")}
        before = _current(url, key, policy["name"])
        after = _api(url, key, "PUT", f"/guardrails/policies/{_quote(policy['name'])}", body)
        change = ("created" if before is None else "unchanged"
                  if before["version"] == after["version"] else "changed")
        done.append({"policy": after["label"], "change": change})
    for index, attach in enumerate(section.get("attach") or []):
        if not isinstance(attach, dict) or not isinstance(attach.get("policy"), str):
            _fail(f"{source}: attach[{index}]: an attachment names a policy", exit_code=2)
        body = _attach_body(url, key, attach["policy"], attach.get("team"), attach.get("model"),
                            attach.get("key"))
        made = _api(url, key, "POST", "/guardrails/attachments", body)
        done.append({"attachment": made["id"], "policy": made["policy"],
                     "scope": made["scope"], "target": _target(made)})
    if as_json:
        _emit_json({"applied": done})
        return
    for item in done:
        if "change" in item:
            typer.echo(f"policy {item['policy']}: {item['change']}")
        else:
            where = item["scope"] + (f" {item['target']}" if item["target"] else "")
            typer.echo(f"attached {item['policy']} to {where} ({item['attachment']})")


def _current(url: str, key: str | None, name: str) -> dict[str, Any] | None:
    for policy in _list(url, key, "/guardrails/policies"):
        if policy["name"] == name:
            return dict(policy)
    return None


def _attach_body(url: str, key: str | None, policy: str, team: str | None, model: str | None,
                 key_id: str | None) -> dict[str, Any]:
    if sum(x is not None for x in (team, model, key_id)) > 1:
        _fail("an attachment names at most one of --team, --model, --key-id "
              "(none: the whole platform)", exit_code=2)
    if team is not None:
        return {"policy": policy, "scope": "team", "team_id": team_id_of(url, key, team)}
    if model is not None:
        return {"policy": policy, "scope": "model", "model": model}
    if key_id is not None:
        return {"policy": policy, "scope": "key", "key_id": key_id}
    return {"policy": policy, "scope": "global"}


@guardrails_app.command("attach")
def guardrails_attach(
    policy: Annotated[str, typer.Argument(metavar="POLICY")],
    team: Annotated[str | None, typer.Option("--team", help="A team, by name or id.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="A model's name.")] = None,
    key_id: Annotated[str | None, typer.Option("--key-id", help="An API key's id.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Attach a policy to a team, a model or a key (none of them: the whole platform)."""
    made = _api(url, key, "POST", "/guardrails/attachments",
                _attach_body(url, key, policy, team, model, key_id))
    if as_json:
        _emit_json(made)
    else:
        where = made["scope"] + (f" {_target(made)}" if _target(made) else "")
        typer.echo(f"attached {made['policy']} to {where} ({made['id']})")


@guardrails_app.command("attachments")
def guardrails_attachments(
    policy: Annotated[str | None, typer.Option("--policy", help="Of this policy only.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Where policies are attached (the platform file's have no id: change the file)."""
    items = _list(url, key, "/guardrails/attachments", {"policy": policy})
    if not as_json:
        items = [{**a, "target": _target(a)} for a in items]
    _emit_list(items, ATTACHMENT_COLUMNS, as_json, "attachments")


@guardrails_app.command("detach")
def guardrails_detach(attachment_id: Annotated[str, typer.Argument(metavar="ATTACHMENT_ID")],
                      url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                      as_json: JsonOpt = False) -> None:
    """Remove one attachment (its id: see ``guardrails attachments``)."""
    _api(url, key, "DELETE", f"/guardrails/attachments/{_quote(attachment_id)}")
    if as_json:
        _emit_json({"id": attachment_id, "deleted": True})
    else:
        typer.echo(f"detached {attachment_id}")


@guardrails_app.command("delete")
def guardrails_delete(name: Annotated[str, typer.Argument(metavar="NAME")],
                      url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                      as_json: JsonOpt = False) -> None:
    """Delete a policy attached nowhere (detach it first)."""
    _api(url, key, "DELETE", f"/guardrails/policies/{_quote(name)}")
    if as_json:
        _emit_json({"name": name, "deleted": True})
    else:
        typer.echo(f"deleted guardrail policy {name}")


@guardrails_app.command("records")
def guardrails_records(
    action: Annotated[str | None, typer.Option("--action", help="allow, flag, redact, block.")] = None,
    entity: Annotated[str | None, typer.Option(help="card, email, secret, custom, …")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="A policy's name.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="ISO 8601 time or date.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="ISO 8601 time or date.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Usage records where a guardrail policy found something, newest first (never text)."""
    page = _api(url, key, "GET", "/usage/records", query={
        "guarded": True, "guardrail_action": action, "entity": entity, "policy": policy,
        "from": start, "to": to, "limit": limit})
    _emit_list(page["data"], RECORD_COLUMNS, as_json, "records")


GUARDRAIL_APPS = (("guardrails", guardrails_app),)
