"""Zero-knowledge proofs: Sigma protocols made non-interactive with a Fiat–Shamir transcript."""
