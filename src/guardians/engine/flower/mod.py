"""The ClientApp side: a Flower mod that hands Guardians messages to the member's node.

``guardians_mod`` intercepts every Flower message carrying a Guardians envelope and forwards
its frame, with the transport's run and node ids added, to the member service named by the
SuperNode's node config
(``guardians-socket``); the service's answer goes back as the reply. Any other message goes on
to the app's own handlers, so an existing Flower app keeps working::

    from flwr.clientapp import ClientApp
    from guardians.engine.flower import guardians_mod

    app = ClientApp(mods=[guardians_mod])

The mod holds no keys, no records and no protocol state: a ClientApp process lives for one
message, so all of that stays in the member's long-lived node (``guardians member serve``).
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from guardians.engine import member_service
from guardians.engine.flower import envelope

SOCKET_KEY = "guardians-socket"


def guardians_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    if not envelope.is_guardians(msg):
        return call_next(msg, context)
    path = context.node_config.get(SOCKET_KEY)
    if not isinstance(path, str) or not path:
        response = {"error": f"this SuperNode has no '{SOCKET_KEY}' in its node config",
                    "error_type": "ServiceError"}  # fmt: skip
        return Message(envelope.pack(response), reply_to=msg)
    try:
        request = envelope.unpack(msg.content)
        # What only the transport knows and the member must see: which run this is (a new run
        # is a new session) and which node it answers from (the node it signs it runs on).
        request["run_id"] = int(msg.metadata.run_id)
        if request.get("op") == "hello":
            request["node_id"] = int(context.node_id)
        response = member_service.call(path, request)
    except (envelope.EnvelopeError, member_service.ServiceError) as exc:
        response = {"error": str(exc), "error_type": type(exc).__name__}
    return Message(envelope.pack(response), reply_to=msg)
