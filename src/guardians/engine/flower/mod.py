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

For a consortium whose model is the app's own (genesis ``model: "external"``), the mod also
runs the app's ``@app.train`` function when the member's node asks for a local update: the
function receives the global ``"arrays"`` and a ``"config"`` record (``server-round``,
``local-epochs``, ``batch-size``, ``lr``, ``optimizer``, ``proximal-mu``) and returns its
arrays and a ``MetricRecord`` with ``num-examples`` (and ``train_loss``), as any Flower train
function does; the member's node masks, proves and sends the resulting update.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from guardians.engine import member_service
from guardians.engine.flower import envelope
from guardians.errors import ConfigError
from guardians.node.deployment import flatten, unflatten

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
        if "train" in response and "error" not in response:
            response = _train_with_app(msg, context, call_next, path, request, response)
    except (envelope.EnvelopeError, member_service.ServiceError, ConfigError) as exc:
        response = {"error": str(exc), "error_type": type(exc).__name__}
    return Message(envelope.pack(response), reply_to=msg)


def _train_with_app(
    msg: Message,
    context: Context,
    call_next: ClientAppCallable,
    path: str,
    request: dict[str, Any],
    response: dict[str, Any],
) -> dict[str, Any]:
    """The member trains with the Flower app's own ``@app.train`` function: it gets the
    global arrays and the round's settings as Flower train messages carry them, and its
    resulting arrays go back to the member's node, which turns them into the member's masked
    and proven update. Only the update's protected form ever leaves the member."""
    train = response["train"]
    layout = tuple((str(n), tuple(int(d) for d in shape)) for n, shape in train["layout"])
    flat = np.frombuffer(train["params"], "<f4")
    cfg = train["config"]
    msg.content = RecordDict({
        "arrays": ArrayRecord({n: Array(a) for n, a in unflatten(layout, flat).items()}),
        "config": ConfigRecord({
            "server-round": int(train["round"]), "local-epochs": int(cfg["epochs"]),
            "batch-size": int(cfg["batch_size"]), "lr": float(cfg["learning_rate"]),
            "optimizer": str(cfg["optimizer"]), "proximal-mu": float(cfg["proximal"]),
        }),
    })  # fmt: skip
    out = call_next(msg, context)
    if out.has_error():
        raise ConfigError(f"the app's train function failed: {out.error.reason}")
    content = out.content
    records = list(content.array_records.values())
    if len(records) != 1:
        raise ConfigError(f"the app's train reply must hold one ArrayRecord, not {len(records)}")
    arrays = {k: v.numpy() for k, v in records[0].items()}
    metrics = next(iter(content.metric_records.values()), {})
    samples = metrics.get("num-examples")
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError("the app's train reply must report 'num-examples' in a MetricRecord")
    loss = metrics.get("train_loss", metrics.get("loss", float("nan")))
    trained = {"op": "trained", "run_id": request["run_id"], "round": int(train["round"]),
               "params": flatten(layout, arrays).astype("<f4").tobytes(),
               "samples": samples, "loss": float(loss)}  # fmt: skip
    final = member_service.call(path, trained)
    # The replies to the instruction itself (none under secure aggregation) come first.
    if "error" not in final:
        final["replies"] = list(response.get("replies", [])) + list(final.get("replies", []))
    return final
