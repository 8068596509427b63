"""Schemathesis hooks for scripts/schemathesis.

Two things a schema cannot say, and nothing else:

1. `Idempotency-Key` makes a retry safe: the same key with another body answers
   `422 idempotency_key_reused` (as the IETF idempotency-key draft asks). Schemathesis draws the
   same few keys for many different bodies, so every well-formed key it draws is replaced by a
   fresh one as it is drawn (where schemathesis applies `map_headers`), as a client makes a new
   key for each new request; malformed keys (negative tests) are sent as drawn. Where a reused
   key still reaches the server, its `422 idempotency_key_reused` is listed in REFUSALS. The reuse rule itself is tested in crates/api/tests.

2. `positive_data_acceptance` expects a schema-valid request to be accepted. Some schema-valid
   requests are refused for a reason that depends on the server's state or on what the bytes
   are, never on their shape. Those refusals, and only those, are listed in REFUSALS below
   (problem `code`, and a fragment of its `detail` — or a pattern its whole `detail` must match —
   where the code is the general `validation_failed`); a refusal not listed still fails the run. Dropped failures are counted
   in schemathesis's summary ("dropped by `filter_failure`").
"""

import json
import re
import uuid

import schemathesis

KEY = re.compile(r"^[!-~]{1,255}$")

# (problem code, fragment of the detail, a compiled pattern the whole detail must match, or None
# for any): why a schema-valid request is refused.
REFUSALS = [
    # A key reused with another body; the coverage phase sends its drawn headers as they are,
    # without `map_headers`.
    ("idempotency_key_reused", None),
    # A domain rule over the current state forbids it (the group is full, the child was moved,
    # the consent policy asks no such purpose, ...).
    ("rule_violated", None),
    # A position no write answered: the log's head is state, not schema.
    ("validation_failed", "is beyond the log's last position"),
    # Uploaded bytes must be the image or video their content type names (sniffed signature).
    ("unsupported_media_type", "their signature does not match"),
    ("validation_failed", "their signature does not match"),
    # A quiet period must not start and end at the same time: a relation of two values.
    ("validation_failed", "must not start and end at the same time"),
    # Staff give a reason for removing a post; the operator gives none: one schema, two roles.
    ("validation_failed", "reason: must not be empty"),
    # A policy names each purpose once: unique by a member of its items.
    ("validation_failed", "is listed twice"),
    # A token to revoke must be a token this server issued.
    ("validation_failed", "the token is not valid"),
    # Single sign-on is configured per installation; the demo trusts no issuer.
    ("validation_failed", "trusts no single sign-on issuer"),
    # JSON Schema counts `5.0` as an integer; the server reads integers written as integers
    # (serde), and refuses `5.0` with 422 rather than guessing.
    ("validation_failed", "invalid type: floating point"),
    # Meeting rounds: relations of two values and state, each refusal by its exact detail (a
    # pattern over the whole of it), so any other `validation_failed` of the planner still fails
    # the run. Relations: exactly one of `slots` and `generate`; an end after its start; a slot
    # of at most 240 minutes; a plan that makes 1 to 500 slots; a day whose `to` is after its
    # `from`; one staff member not in two slots at once. State: staff of this school, a slot of
    # this round, a child of its groups, a local time that exists once in the school's time
    # zone, a slot not begun yet, a round not full. And `HH:MM` with a trailing newline, which
    # the pattern's `$` lets through in Python's regular expressions.
    ("validation_failed", re.compile(r"^give exactly one of `slots` and `generate`$")),
    ("validation_failed", re.compile(r"^invalid slots\.ends_at: slot \d+: must be after starts_at$")),
    ("validation_failed", re.compile(r"^invalid slots: slot \d+: at most 240 minutes$")),
    ("validation_failed", re.compile(r"^invalid slots: 1 to 500 slots$")),
    ("validation_failed", re.compile(r"^invalid generate: makes more than 500 slots$")),
    ("validation_failed", re.compile(r"^invalid generate\.days: on \d{4}-\d{2}-\d{2}: `to` must be after `from`$")),
    ("validation_failed", re.compile(r"^invalid slots: slot \d+ overlaps slot \d+ with the same staff member$")),
    ("validation_failed", re.compile(r"^invalid slots\.staff: person [0-9a-f-]{36} is not staff of the school$")),
    ("validation_failed", re.compile(r"^invalid slot_id: round has no slot \d+$")),
    ("validation_failed", re.compile(r"^invalid child_id: child [0-9a-f-]{36} is not in a group of this round$")),
    ("validation_failed", re.compile(r"^invalid generate\.days: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} does not exist once in the school's time zone \S+$")),
    ("validation_failed", re.compile(r"^invalid slot_id: slot \d+ has already begun$")),
    ("validation_failed", re.compile(r"^invalid slots: a round has at most 500 slots$")),
    ("validation_failed", re.compile(r"^generate\.days\[\d+\]\.(from|to): \"[^\"]*\" is not a time of day such as 15:30$", re.S)),
    # A push subscription's endpoint must be an absolute https URL of a public host, and its
    # keys a P-256 point and a 16-byte secret: URL grammar, name resolution and curve
    # arithmetic, which no JSON Schema pattern says.
    ("validation_failed", "endpoint: not a URL"),
    ("validation_failed", "endpoint: must be an https URL"),
    ("validation_failed", "endpoint: the host is not a public"),
    ("validation_failed", "endpoint: must not hold credentials"),
    ("validation_failed", "keys.p256dh: must be a 65-byte uncompressed P-256 public key"),
    ("validation_failed", "keys.auth: must be 16 bytes"),
]


@schemathesis.hook
def map_headers(context, headers):
    if not headers:
        return headers
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and KEY.match(value):
            headers[name] = str(uuid.uuid4())
    return headers


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if "positive_data_acceptance" not in getattr(failure, "checks", ()):
        return True
    try:
        problem = json.loads(response.content)
    except (ValueError, TypeError):
        return True
    if not isinstance(problem, dict):
        return True
    code = problem.get("code")
    detail = str(problem.get("detail", ""))
    for want, fragment in REFUSALS:
        if code != want:
            continue
        if (
            fragment is None
            or (isinstance(fragment, re.Pattern) and fragment.fullmatch(detail))
            or (isinstance(fragment, str) and fragment in detail)
        ):
            return False
    return True
