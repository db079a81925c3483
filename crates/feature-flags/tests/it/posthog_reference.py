"""Reference evaluator for the differential test: PostHog's own Python SDK.

Reads {"definitions": {...}, "cases": [{"flag": KEY, "distinct_id": ID, "properties": {...}}]}
on stdin and prints {"version": ..., "results": [true|false|"variant"|null, ...]} where
null means the SDK's local evaluation was inconclusive.
"""
import json
import logging
import sys
import warnings

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)

import posthog  # noqa: E402
from posthog.client import Client  # noqa: E402
from posthog.feature_flags import InconclusiveMatchError, RequiresServerEvaluation  # noqa: E402

request = json.load(sys.stdin)
client = Client("phc_differential_test", send=False, sync_mode=True, enable_local_evaluation=False)
definitions = request["definitions"]
client.feature_flags = definitions.get("flags", [])
client.group_type_mapping = definitions.get("group_type_mapping", {})
client.cohorts = definitions.get("cohorts", {})
results = []
for case in request["cases"]:
    flag = client.feature_flags_by_key[case["flag"]]
    try:
        value = client._compute_flag_locally(
            flag, case["distinct_id"], person_properties=case["properties"]
        )
    except (InconclusiveMatchError, RequiresServerEvaluation):
        value = None
    results.append(value)
print(json.dumps({"version": posthog.VERSION, "results": results}))
