"""Building py-libp2p hosts the way olane needs them: Ed25519 identity (from a
text seed when given), Noise only, Yamux only, one connection per peer."""
from __future__ import annotations

import hashlib
import logging

from .errors import ErrorCode, OlaneError

# py-libp2p logs expected peer disconnects at WARNING and above; keep our output clean.
for _name in ("libp2p", "multiaddr", "async_service"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


def key_pair_from_seed(seed: str | None = None, key: bytes | None = None):
    """Ed25519 key pair: from `key` (the 32-byte private key seed) when given;
    else from a text seed (private key seed = sha256(utf8(seed))); else random."""
    from libp2p.crypto.ed25519 import create_new_key_pair

    if key is not None:
        if len(key) != 32:
            raise ValueError(f"an Ed25519 private key seed is 32 bytes, not {len(key)}")
        return create_new_key_pair(bytes(key))
    return create_new_key_pair(hashlib.sha256(seed.encode("utf-8")).digest() if seed is not None else None)


def peer_id_for_seed(seed: str | None = None, key: bytes | None = None) -> str:
    """The peer id a node started with this text seed (or 32-byte key) has."""
    from libp2p.peer.id import ID

    return ID.from_pubkey(key_pair_from_seed(seed, key).public_key).to_string()


def read_key_file(path: str) -> bytes:
    """A key file: the 32-byte Ed25519 private key seed, raw or as 64 hex digits."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except ValueError:
            pass
    if len(data) == 32:
        return data
    raise ValueError(f"{path}: a key file holds 32 raw bytes or 64 hex digits")


def new_olane_host(key_pair, dial_timeout: float = 10.0):
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    # Noise alone: the default would also offer plaintext and secio.
    security = {TProtocol(NOISE_ID): NoiseTransport(key_pair, noise_privkey=new_x25519().private_key)}
    muxers = {TProtocol(YAMUX_ID): Yamux}
    # One connection per peer: the default (3) makes every connect() wait ~250 ms more.
    config = ConnectionConfig(max_connections_per_peer=1, dial_timeout=dial_timeout)
    return new_host(key_pair=key_pair, sec_opt=security, muxer_opt=muxers, connection_config=config)


def parse_peer_multiaddr(text: str):
    """A multiaddr with /p2p/<peer id> -> PeerInfo; anything else -> 4014."""
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(text))
    except Exception as exc:
        raise OlaneError(
            ErrorCode.FAILED_TO_DIAL_TARGET,
            f"cannot dial {text!r}: a multiaddr ending in /p2p/<peer id> is needed ({exc})",
        ) from None
