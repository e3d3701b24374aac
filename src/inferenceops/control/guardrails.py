"""The guardrails a snapshot serves: the platform file's policies and the store's, merged. Pure.

**The merge rule.** Policies come from two places: the platform file (``guardrails:``,
read-only through the admin API: change them in the file) and the store (made through
the admin API or ``inferenceops guardrails``). Names are unique across both: the API
refuses a name the file uses, and should a file later define a name the store has too,
the file's policy is served and the stored one left out (logged). Attachments from both
places all apply; a stored attachment may name a file policy (attach the file's ``pii``
to one more team without editing the file). Then ``platform.guardrails``'s combining rule
decides per request: every attached policy applies, the strictest action wins.

A stored row that no longer parses (written by a newer version, edited by hand) is left
out with an error in the log, as the catalog's are: one bad row never takes guardrails
down; an attachment whose policy is not served is left out the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import ValidationError

from inferenceops.guardrails.spec import GuardrailsSpec, PolicySpec
from inferenceops.platform.guardrails import Attachment, GuardrailPolicy, Guardrails
from inferenceops.store.records_guardrails import GuardrailAttachmentRecord, StoredGuardrails

log = logging.getLogger("inferenceops.control")


def merge_guardrails(file: GuardrailsSpec | None, stored: StoredGuardrails | None,
                     team_ids: Mapping[str, str]) -> Guardrails | None:
    """The served ``Guardrails`` (see the module doc); None when neither place has a policy."""
    served = file.guardrails(dict(team_ids)) if file is not None else Guardrails()
    if stored is None or not (stored.policies or stored.attachments):
        return served if served.policies else None
    policies: dict[str, GuardrailPolicy] = dict(served.policies)
    for row in stored.policies:
        if row.name in policies:
            log.error("stored guardrail policy %r left out: the platform file defines a policy "
                      "of that name, and the file's applies", row.name)
            continue
        try:
            spec = PolicySpec.model_validate({"name": row.name, "version": row.version,
                                              "description": row.description,
                                              "rules": list(row.rules)})
        except ValidationError as exc:
            log.error("stored guardrail policy %r left out: %s", row.name, exc)
            continue
        policies[row.name] = spec.policy()
    attachments = dict.fromkeys(served.attachments)
    for found in stored.attachments:
        if found.policy not in policies:
            log.error("guardrail attachment %s left out: policy %r is not served", found.id,
                      found.policy)
            continue
        attachments[_attachment(found)] = None
    if not policies:
        return None
    return Guardrails(policies, tuple(attachments))


def _attachment(row: GuardrailAttachmentRecord) -> Attachment:
    if row.scope == "global":
        return Attachment(row.policy, "global")
    return Attachment(row.policy, row.scope, row.team_id or row.model or row.key_id)
