// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The terms fixed at the mutual agreement (docs/DESIGN.md). The transaction ID commits to
/// every field, so neither side can change the price or the limits after agreeing.
struct Terms {
    address ev;
    address hcs;
    /// The HCS's own session counter; picks the session's slot in the HCS's reservation ring.
    uint64 seq;
    uint128 priceWeiPerKWh;
    uint64 maxEnergyWh;
    /// End of the settlement window (unix seconds).
    uint64 settleBy;
}

/// @notice A member's role; the numbers are the member type of SPEC.md (1 EV, 2 HCS).
enum Role {
    None,
    EV,
    HCS
}

/// @notice A member's standing: registered members wait for the operator's physical check.
enum Status {
    None,
    Pending,
    Verified,
    Suspended,
    Revoked
}

/// @notice The life of one (hcs, seq) session on chain.
/// None: never reserved. Reserved: cap × price held against the EV's deposit. Settled: paid
/// (a bill above zero). Rated: paid and rated. Released: the window closed unsettled, the
/// reservation went back to the EV. SettledFree: settled at 0 wei (cannot be rated).
/// Superseded: the ring slot has moved on to a later seq (the session was closed one way or the
/// other; which one, its events say).
enum SessionState {
    None,
    Reserved,
    Settled,
    Rated,
    Released,
    SettledFree,
    Superseded
}

/// @dev Everything reservation and settlement read and write about a member sits in this one
/// slot. `balance` is the EV's deposit or the HCS's unwithdrawn earnings; `reserved` is the part
/// of an EV's deposit promised to open sessions (always ≤ balance); `powerW` is an HCS's
/// charging power (the window check reads it).
struct Account {
    Role role;
    Status status;
    uint96 balance;
    uint96 reserved;
    uint32 powerW;
}

/// @dev An EV's announced withdrawal: the amount has left `balance` already and waits here for
/// its notice to pass.
struct Withdrawal {
    uint96 amount;
    uint32 withdrawableAt;
}

/// @dev Static profile of a home charging station (not read by settlement).
struct HcsProfile {
    int32 latMicroDeg;
    int32 lonMicroDeg;
    uint32 powerW;
    uint128 priceWeiPerKWh;
    bytes32 profileHash;
}

/// @dev An HCS's ratings: the sum and count in one slot.
struct RatingTally {
    uint128 sum;
    uint128 count;
}
