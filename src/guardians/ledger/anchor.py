"""Anchoring checkpoints on Ethereum: a Vyper contract holding each log's latest (size, root).

By default the contract runs on an embedded EVM (eth-tester + py-evm) in this process; any
Ethereum JSON-RPC endpoint works by passing a connected ``Web3``. Only the consortium's
accounts may anchor, and sizes must grow, so a later log view that is not consistent with an
anchored checkpoint is evidence of a rewritten history.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from guardians.errors import GuardiansError

CONTRACT = "CheckpointAnchor.vy"


class AnchorError(GuardiansError):
    """The chain refused an anchor (unauthorized submitter, non-growing size) or is unreachable."""


@cache
def compiled() -> tuple[list[dict[str, Any]], str]:
    """(ABI, bytecode) of the anchor contract, compiled from the Vyper source in the package."""
    import vyper

    src = resources.files("guardians.ledger.contracts").joinpath(CONTRACT).read_text()
    out = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    return out["abi"], out["bytecode"]


def embedded_chain() -> Any:
    """A fresh in-process Ethereum chain (py-evm) with funded test accounts."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import Web3
    from web3.providers.eth_tester import EthereumTesterProvider

    return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))


@dataclass
class Anchor:
    w3: Any
    address: str
    submitter: str

    @classmethod
    def deploy(cls, w3: Any, submitters: list[str], deployer: str | None = None) -> Anchor:
        abi, bytecode = compiled()
        deployer = deployer or w3.eth.accounts[0]
        factory = w3.eth.contract(abi=abi, bytecode=bytecode)
        tx = factory.constructor(submitters).transact({"from": deployer})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        return cls(w3, receipt.contractAddress, submitters[0])

    @property
    def contract(self) -> Any:
        return self.w3.eth.contract(address=self.address, abi=compiled()[0])

    def submit(self, origin: str, size: int, root: bytes, sender: str | None = None) -> str:
        """Anchor a checkpoint; returns the transaction hash. Raises AnchorError on revert."""
        from web3.exceptions import ContractLogicError, Web3Exception

        reverts: tuple[type[Exception], ...] = (ContractLogicError, Web3Exception)
        try:  # the embedded chain reports reverts with its own exception type
            from eth_tester.exceptions import TransactionFailed

            reverts = (*reverts, TransactionFailed)
        except ImportError:  # pragma: no cover - JSON-RPC deployments need not install it
            pass
        try:
            tx = self.contract.functions.anchor(origin, size, root).transact(
                {"from": sender or self.submitter}
            )
            receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        except reverts as exc:
            raise AnchorError(f"anchor rejected: {exc}") from None
        if receipt.status != 1:
            raise AnchorError("anchor transaction failed")
        return tx.hex()

    def latest(self, origin: str) -> tuple[int, bytes]:
        size, root = self.contract.functions.latest(origin).call()
        return int(size), bytes(root)

    def events(self) -> list[dict[str, Any]]:
        logs = self.contract.events.Anchored().get_logs(from_block=0)
        return [
            {"origin": e.args.origin, "size": int(e.args.size), "root": bytes(e.args.root).hex(),
             "submitter": e.args.submitter, "block": e.blockNumber}
            for e in logs
        ]  # fmt: skip
