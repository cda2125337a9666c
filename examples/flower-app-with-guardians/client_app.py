"""The app's ClientApp: its own model (softmax regression over the member's records, in numpy)
and its own train function, exactly as a Flower app writes them. Guardians adds one mod."""

from functools import cache

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from guardians.engine.flower import guardians_mod  # Guardians

app = ClientApp(mods=[guardians_mod])  # Guardians: the one line on the client side


@cache
def load(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The member's records, standardized with their own statistics (the app's choice)."""
    with np.load(path, allow_pickle=False) as z:
        X, y = z["X"].astype(np.float64), z["y"]
    return (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-6), y


@app.train()
def train(msg: Message, context: Context) -> Message:
    X, y = load(str(context.node_config["guardians-records"]))
    w = msg.content["arrays"]["w"].numpy().astype(np.float64)
    b = msg.content["arrays"]["b"].numpy().astype(np.float64)
    config = msg.content["config"]
    lr, batch = float(config["lr"]), int(config["batch-size"])
    rng = np.random.default_rng()
    loss = 0.0
    for _ in range(int(config["local-epochs"])):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            i = order[start : start + batch]
            z = X[i] @ w + b
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            loss = float(-np.mean(np.log(p[np.arange(len(i)), y[i]] + 1e-12)))
            p[np.arange(len(i)), y[i]] -= 1
            w -= lr * (X[i].T @ p) / len(i)
            b -= lr * p.mean(axis=0)
    content = RecordDict(
        {
            "arrays": ArrayRecord(
                {"w": Array(w.astype(np.float32)), "b": Array(b.astype(np.float32))}
            ),
            "metrics": MetricRecord({"num-examples": len(y), "train_loss": loss}),
        }
    )
    return Message(content, reply_to=msg)
