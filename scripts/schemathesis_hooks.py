"""Schemathesis hooks for CertHub (loaded with SCHEMATHESIS_HOOKS=schemathesis_hooks).

- `no_secrets`: a check that fails when an answer carries a secret the test planted (a user's
  password, a device token, the PFX file, its password, the master key) or anything shaped like
  one (a bcrypt hash, a PEM private key), outside the one route documented to reveal it.
- Half the generated `{id}` path parameters become ids of rows that exist, so the runs reach
  past "404 not found" into the handlers' real work.
- The agent's long-poll waits at most one second, so a run spends its time on requests.

CERTHUB_SCHEMATHESIS_FIXTURES names a JSON file: {"secrets": [{label, value, allowed_in?}],
"ids": [uuid, ...]}. The secrets' values are never printed, only their labels.
"""

import json
import os
import random
import re

import schemathesis

with open(os.environ["CERTHUB_SCHEMATHESIS_FIXTURES"], encoding="utf-8") as f:
    _FIXTURES = json.load(f)

_SECRETS = [s for s in _FIXTURES["secrets"] if s["value"]]
_IDS = _FIXTURES["ids"]
_RANDOM = random.Random(20261203)
_SHAPES = [
    ("a bcrypt hash", re.compile(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")),
    ("a PEM private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
]


@schemathesis.check
def no_secrets(ctx, response, case):
    text = response.text or ""
    where = f"{case.method} {case.path}"
    for secret in _SECRETS:
        if secret["value"] in text and case.path not in secret.get("allowed_in", []):
            raise AssertionError(f"{secret['label']} in the answer of {where}")
    for label, shape in _SHAPES:
        if shape.search(text):
            raise AssertionError(f"{label} in the answer of {where}")
    return None


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    if path_parameters and "id" in path_parameters and _RANDOM.random() < 0.5:
        path_parameters["id"] = _RANDOM.choice(_IDS)
    return path_parameters


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict) and "wait" in query:
        wait = query["wait"]
        if isinstance(wait, int) and wait > 1:
            query["wait"] = 1
        elif isinstance(wait, str) and wait.strip().lstrip("+").isdigit():
            query["wait"] = "1"
    return query
