// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Account, HcsProfile, Role, Status} from "./SettlementTypes.sol";

/// @title MemberRegistry
/// @notice Table 2's registration(), reqAuthInfo() and verification(): EVs and HCSs register
/// themselves with a 32-byte commitment to their identity documents (never the documents), and
/// an operator — the paper's physical check — verifies, suspends or revokes them.
/// @dev Roles apart: the admin (OpenZeppelin's AccessControlDefaultAdminRules: one admin, handed
/// over only after a delay the admin cannot skip) grants and revokes operators; operators verify,
/// suspend and revoke members. Neither touches money.
abstract contract MemberRegistry is AccessControlDefaultAdminRules {
    /// @notice Role of the network operators who verify, suspend and revoke members.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    int32 private constant MAX_LAT_MICRO_DEG = 90_000_000;
    int32 private constant MAX_LON_MICRO_DEG = 180_000_000;

    /// @dev Hot slot per member (role, status, balance, withdrawal); see {Account}.
    mapping(address member => Account) internal _accounts;
    mapping(address member => bytes32) private _identityCommitments;
    mapping(address hcs => HcsProfile) private _hcsProfiles;
    uint128 private _evCount;
    uint128 private _hcsCount;

    /// @notice A member registered itself; it waits for verification.
    event MemberRegistered(address indexed member, Role indexed role, bytes32 identityCommitment);
    /// @notice An HCS published its location, price, power and profile hash.
    event HcsProfileSet(
        address indexed hcs,
        int32 latMicroDeg,
        int32 lonMicroDeg,
        uint128 priceWeiPerKWh,
        uint32 powerW,
        bytes32 profileHash
    );
    /// @notice An HCS changed its price for future agreements.
    event PriceChanged(address indexed hcs, uint128 priceWeiPerKWh);
    /// @notice An operator verified, suspended or revoked a member.
    event MemberStatusChanged(address indexed member, Status indexed status, address indexed operator);

    error AlreadyRegistered();
    error NotRegistered();
    error NotAnEv();
    error NotAnHcs();
    error ZeroIdentityCommitment();
    error InvalidLocation();
    error InvalidStatusTransition(Status from, Status to);
    error ZeroOperator();
    error ZeroPower();

    /// @param admin Receives the admin role (grants and revokes operators).
    /// @param operator Receives the operator role (verifies, suspends, revokes members).
    /// @param adminDelay Seconds an admin transfer waits before the new admin can accept it.
    constructor(address admin, address operator, uint48 adminDelay) AccessControlDefaultAdminRules(adminDelay, admin) {
        if (operator == address(0)) revert ZeroOperator();
        _grantRole(OPERATOR_ROLE, operator);
    }

    // ---------------------------------------------------------------- registration

    /// @notice Registers the caller as an EV; it stays Pending until an operator verifies it.
    /// @param identityCommitment Hash of the owner's identity documents (kept off chain).
    function registerEV(bytes32 identityCommitment) external {
        _register(Role.EV, identityCommitment);
        unchecked {
            ++_evCount;
        }
    }

    /// @notice Registers the caller as a home charging station; Pending until verified.
    /// @param identityCommitment Hash of the owner's identity documents (kept off chain).
    /// @param latMicroDeg Latitude in micro-degrees (WGS84), within ±90e6.
    /// @param lonMicroDeg Longitude in micro-degrees (WGS84), within ±180e6.
    /// @param priceWeiPerKWh Asking price for future agreements.
    /// @param powerW Maximum charging power in watts.
    /// @param profileHash Hash of the off-chain profile (photos, hours, connector).
    function registerHCS(
        bytes32 identityCommitment,
        int32 latMicroDeg,
        int32 lonMicroDeg,
        uint128 priceWeiPerKWh,
        uint32 powerW,
        bytes32 profileHash
    ) external {
        if (
            latMicroDeg < -MAX_LAT_MICRO_DEG || latMicroDeg > MAX_LAT_MICRO_DEG || lonMicroDeg < -MAX_LON_MICRO_DEG
                || lonMicroDeg > MAX_LON_MICRO_DEG
        ) revert InvalidLocation();
        if (powerW == 0) revert ZeroPower();
        _register(Role.HCS, identityCommitment);
        _accounts[msg.sender].powerW = powerW;
        _hcsProfiles[msg.sender] = HcsProfile(latMicroDeg, lonMicroDeg, powerW, priceWeiPerKWh, profileHash);
        unchecked {
            ++_hcsCount;
        }
        emit HcsProfileSet(msg.sender, latMicroDeg, lonMicroDeg, priceWeiPerKWh, powerW, profileHash);
    }

    /// @notice An HCS sets its asking price. Sessions already agreed keep the price their
    /// transaction ID commits to.
    /// @param priceWeiPerKWh The new price.
    function setPrice(uint128 priceWeiPerKWh) external {
        if (_accounts[msg.sender].role != Role.HCS) revert NotAnHcs();
        _hcsProfiles[msg.sender].priceWeiPerKWh = priceWeiPerKWh;
        emit PriceChanged(msg.sender, priceWeiPerKWh);
    }

    function _register(Role role, bytes32 identityCommitment) private {
        if (identityCommitment == bytes32(0)) revert ZeroIdentityCommitment();
        Account storage account = _accounts[msg.sender];
        // A revoked member keeps its record, so an address is registered at most once.
        if (account.role != Role.None) revert AlreadyRegistered();
        account.role = role;
        account.status = Status.Pending;
        _identityCommitments[msg.sender] = identityCommitment;
        emit MemberRegistered(msg.sender, role, identityCommitment);
    }

    // ---------------------------------------------------------------- verification

    /// @notice Marks a Pending or Suspended member Verified (the paper's physical registration).
    /// @param member The member's address.
    function verify(address member) external onlyRole(OPERATOR_ROLE) {
        _setStatus(member, Status.Verified);
    }

    /// @notice Suspends a member: it can make no new agreement (reservation) until verified again.
    /// Sessions reserved before stay billable (membership is judged at agreement time); its
    /// deposit or earnings stay withdrawable as far as no open reservation holds them.
    /// @param member The member's address.
    function suspend(address member) external onlyRole(OPERATOR_ROLE) {
        _setStatus(member, Status.Suspended);
    }

    /// @notice Revokes a member for good. Sessions reserved before stay billable.
    /// @param member The member's address.
    function revoke(address member) external onlyRole(OPERATOR_ROLE) {
        _setStatus(member, Status.Revoked);
    }

    function _setStatus(address member, Status to) private {
        Account storage account = _accounts[member];
        Status from = account.status;
        if (from == Status.None) revert NotRegistered();
        bool allowed = to == Status.Verified
            ? (from == Status.Pending || from == Status.Suspended)
            : to == Status.Suspended ? (from == Status.Pending || from == Status.Verified) : from != Status.Revoked;
        if (!allowed) revert InvalidStatusTransition(from, to);
        account.status = to;
        emit MemberStatusChanged(member, to, msg.sender);
    }

    // ---------------------------------------------------------------- views

    /// @notice reqAuthInfo(): what the chain knows of a member.
    /// @param member The member's address.
    /// @return role EV, HCS or None.
    /// @return status Pending, Verified, Suspended, Revoked or None.
    /// @return identityCommitment The commitment given at registration.
    function authInfo(address member) external view returns (Role role, Status status, bytes32 identityCommitment) {
        Account storage account = _accounts[member];
        return (account.role, account.status, _identityCommitments[member]);
    }

    /// @notice verification(): true if `member` is registered as `role` and currently verified.
    /// @param member The member's address.
    /// @param role The role it claims.
    function isVerified(address member, Role role) external view returns (bool) {
        Account storage account = _accounts[member];
        return account.role == role && account.status == Status.Verified;
    }

    /// @notice An HCS's published profile.
    /// @param hcs The station's address.
    function hcsProfile(address hcs) external view returns (HcsProfile memory) {
        return _hcsProfiles[hcs];
    }

    /// @notice Members registered so far, by role (revoked ones included).
    function memberCounts() external view returns (uint256 evs, uint256 hcss) {
        return (_evCount, _hcsCount);
    }
}
