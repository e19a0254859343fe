// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The terms fixed at the mutual agreement (docs/DESIGN.md). The transaction ID commits to
/// every field, so neither side can change the price or the limits after agreeing.
struct Terms {
    address ev;
    address hcs;
    /// The HCS's own session counter; numbers the per-HCS session-state bitmap.
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

/// @notice The life of one (hcs, seq) session on chain, two bits in the HCS's bitmap.
enum SessionState {
    Open,
    Settled,
    Rated,
    Expired
}

/// @dev Everything settlement reads and writes about a member sits in this one slot, so a
/// settlement touches exactly two member slots. `balance` is the EV's deposit or the HCS's
/// unwithdrawn earnings; the withdrawal fields are used by EVs only.
struct Account {
    Role role;
    Status status;
    uint112 balance;
    uint96 pendingWithdrawal;
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

/// @dev One bitmap word of 128 two-bit session states (a struct, so it can be held by reference).
struct StateWord {
    uint256 bits;
}
