"""The fence on a record write: ``put(record, epoch=n)`` writes only while the claim is ours.

A worker holds a key at the epoch of its claim (:mod:`analysis_wrapper.stores.claims`). A
record written with ``epoch`` given is *fenced*: the store writes it only if the key's
claim is still ``running`` at that epoch, and refuses with :class:`FencedOutError`
otherwise. How strong the refusal is depends on the backend (one SQLite transaction, a
conditional write on MongoDB, check then write through the REST API); each backend's
``put`` says which. This module holds what they share: the rule and the message.
"""

from __future__ import annotations

from ..errors import FencedOutError, StoreError
from .claims import Claim, ClaimStore


def claim_before_writing(store: ClaimStore, key: str) -> Claim | None:
    """Read ``key``'s claim for a fenced write; a failure to read it fails the write."""
    try:
        return store.get_claims([key]).get(key)
    except StoreError as exc:
        raise StoreError(
            f"cannot write record {key[:12]} (its claim could not be checked): {exc}",
            transient=exc.transient,
        ) from exc


def holds(claim: Claim | None, epoch: int) -> bool:
    """Tell whether ``claim`` (the stored one, or ``None``) is running at ``epoch``."""
    return claim is not None and claim.epoch == epoch and claim.state == "running"


def fenced_out(
    key: str,
    epoch: int,
    display_url: str,
    *,
    claim: Claim | None = None,
    current_epoch: int | None = None,
    newer_record: bool = False,
) -> FencedOutError:
    """The error for a fenced write refused before anything was written.

    Parameters
    ----------
    key : str
        The record's key.
    epoch : int
        The epoch the writer held.
    display_url : str
        The store, for the message.
    claim : Claim or None
        The key's claim as the store found it (``None``: none, or not read).
    current_epoch : int or None
        The epoch found, when no claim was read (a newer record's epoch).
    newer_record : bool
        Whether a record written at a newer epoch is what refused the write.
    """
    if claim is not None:
        current_epoch = claim.epoch
        now = f"the key's claim is at epoch {claim.epoch}, {claim.state}"
    elif newer_record:
        now = f"a record written at epoch {current_epoch} is stored"
    else:
        now = "the key has no claim"
    return FencedOutError(
        f"record {key[:12]} not written to {display_url}: the claim at epoch {epoch} is no "
        f"longer held ({now}); another worker owns the job, so this result is not recorded",
        key=key,
        epoch=epoch,
        current_epoch=current_epoch,
    )
