"""Guardians over Flower: the SuperLink and SuperNodes carry our messages, our protocol runs
unchanged on both ends.

- :mod:`.envelope`: a Guardians frame inside a Flower message.
- :mod:`.mod`: ``guardians_mod``, the ClientApp mod that hands frames to the member's node.
- :mod:`.workflow`: ``FlowerFederation`` and ``run_consortium`` for a ServerApp.
- :mod:`.apps`: the ServerApp and ClientApp of the shipped Flower App.
- :mod:`.deploy`: a whole deployment on one machine (TLS, node authentication, processes).
"""

from guardians.engine.flower.mod import guardians_mod
from guardians.engine.flower.workflow import FlowerFederation, run_consortium

__all__ = ["FlowerFederation", "guardians_mod", "run_consortium"]
