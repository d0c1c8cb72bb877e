"""Drives pusher-http-python (the `pusher` package) for the Node compat tests.

Usage: sdk_ops.py '<json list of operations>'
  each operation: {"op": "<client method>", "args": [...], "kwargs": {...}}
Connection settings come from the environment: HERALD_HOST, HERALD_PORT, PUSHER_APP_ID,
PUSHER_KEY, PUSHER_SECRET, PUSHER_ENCRYPTION_MASTER_KEY_BASE64.

Prints one JSON list to stdout, one entry per operation, in order:
  {"ok": true, "result": <the SDK's return value>}
  {"ok": false, "error": "<exception class>", "message": "<str(exception)>"}
"""

import json
import os
import sys

import pusher
from pusher import errors

ALLOWED = {
    "trigger",
    "trigger_batch",
    "channels_info",
    "channel_info",
    "users_info",
    "send_to_user",
    "terminate_user_connections",
    # validate_webhook(key, signature, body): the decoded body, or None when it is not valid
    "validate_webhook",
}


def main():
    ops = json.loads(sys.argv[1])
    client = pusher.Pusher(
        app_id=os.environ["PUSHER_APP_ID"],
        key=os.environ["PUSHER_KEY"],
        secret=os.environ["PUSHER_SECRET"],
        host=os.environ["HERALD_HOST"],
        port=int(os.environ["HERALD_PORT"]),
        ssl=False,
        timeout=5,
        encryption_master_key_base64=os.environ.get("PUSHER_ENCRYPTION_MASTER_KEY_BASE64"),
    )
    results = []
    for op in ops:
        name = op["op"]
        if name not in ALLOWED:
            results.append({"ok": False, "error": "UnknownOp", "message": name})
            continue
        try:
            result = getattr(client, name)(*op.get("args", []), **op.get("kwargs", {}))
            results.append({"ok": True, "result": result})
        except errors.PusherError as e:
            results.append({"ok": False, "error": type(e).__name__, "message": str(e)})
        except (ValueError, TypeError) as e:
            results.append({"ok": False, "error": type(e).__name__, "message": str(e)})
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
