# pragma version 0.4.3
"""
@title Guardians checkpoint anchor
@notice Records (origin, size, root) of a transparency log's checkpoints, submitted only by the
        consortium's accounts, with sizes that only grow (and fit in 64 bits). It does not check
        that a new root extends the previous one: auditors do, against every anchored record,
        so an anchored fork or rewrite is public evidence.
"""

event Anchored:
    origin_hash: indexed(bytes32)
    size: uint256
    root: bytes32
    submitter: indexed(address)
    origin: String[128]

authorized: public(HashMap[address, bool])
latest_size: public(HashMap[bytes32, uint256])
latest_root: public(HashMap[bytes32, bytes32])
anchors: public(uint256)


@deploy
def __init__(submitters: DynArray[address, 64]):
    for s: address in submitters:
        self.authorized[s] = True


@external
def anchor(origin: String[128], size: uint256, root: bytes32):
    assert self.authorized[msg.sender], "unauthorized submitter"
    key: bytes32 = keccak256(origin)
    assert size < 2**64, "size must fit in 64 bits"
    assert size > self.latest_size[key], "size must grow"
    self.latest_size[key] = size
    self.latest_root[key] = root
    self.anchors += 1
    log Anchored(origin_hash=key, size=size, root=root, submitter=msg.sender, origin=origin)


@view
@external
def latest(origin: String[128]) -> (uint256, bytes32):
    key: bytes32 = keccak256(origin)
    return self.latest_size[key], self.latest_root[key]
