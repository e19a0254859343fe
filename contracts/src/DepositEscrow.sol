// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MemberRegistry} from "./MemberRegistry.sol";
import {Account, Role, Withdrawal} from "./SettlementTypes.sol";

/// @title DepositEscrow
/// @notice EV deposits, reservations against them, a withdrawal notice, and HCS earnings pulled by
/// the station. A session's cap × price is reserved against the EV's deposit before the charger
/// switches on (see Settlement); only the unreserved part of a deposit can be announced for
/// withdrawal, and an announced amount leaves the deposit at once. So a deposit is never promised
/// twice (I3): open reservations never exceed it, and no withdrawal can take what they hold.
abstract contract DepositEscrow is MemberRegistry, ReentrancyGuardTransient {
    /// @notice Withdrawal notice in seconds, and the longest settlement window a reservation may
    /// ask for (settleBy ≤ reservation time + SETTLEMENT_WINDOW).
    uint256 public immutable SETTLEMENT_WINDOW;

    /// @dev EV → its announced withdrawal.
    mapping(address ev => Withdrawal) private _withdrawals;

    /// @notice An EV added to its deposit.
    event Deposited(address indexed ev, uint256 amount, uint256 deposit);
    /// @notice An EV announced a withdrawal; payable strictly after `withdrawableAt`.
    event WithdrawalRequested(address indexed ev, uint256 amount, uint256 withdrawableAt);
    /// @notice An EV cancelled its announced withdrawal; the amount is back in its deposit.
    event WithdrawalCancelled(address indexed ev);
    /// @notice An EV took back (part of) its deposit.
    event Withdrawn(address indexed ev, uint256 amount);
    /// @notice An HCS took its earnings.
    event EarningsWithdrawn(address indexed hcs, uint256 amount);

    error ZeroAmount();
    error AmountExceedsDeposit();
    error NothingToWithdraw();
    error WithdrawalNotReady(uint256 withdrawableAt);
    error TransferFailed();
    error InvalidWindow();

    /// @param settlementWindow Withdrawal notice in seconds; above zero.
    constructor(uint256 settlementWindow) {
        if (settlementWindow == 0 || settlementWindow > type(uint32).max) revert InvalidWindow();
        SETTLEMENT_WINDOW = settlementWindow;
    }

    /// @notice Adds the sent ether to the caller's deposit; the caller must be a registered EV.
    function deposit() external payable {
        if (msg.value == 0) revert ZeroAmount();
        Account storage account = _accounts[msg.sender];
        if (account.role != Role.EV) revert NotAnEv();
        uint256 balance = account.balance + msg.value;
        account.balance = SafeCast.toUint96(balance);
        emit Deposited(msg.sender, msg.value, balance);
    }

    /// @notice Announces a withdrawal of `amount` out of the unreserved deposit: the amount leaves
    /// the deposit now (no reservation can take it) and is paid by {withdraw} strictly after
    /// SETTLEMENT_WINDOW. A new announcement first puts an earlier one back.
    /// @param amount Wei to withdraw, at most the deposit minus its open reservations.
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Account storage account = _accounts[msg.sender];
        if (account.role != Role.EV) revert NotAnEv();
        Withdrawal storage w = _withdrawals[msg.sender];
        uint256 balance = uint256(account.balance) + w.amount;
        if (amount > balance - account.reserved) revert AmountExceedsDeposit();
        uint256 readyAt = block.timestamp + SETTLEMENT_WINDOW;
        account.balance = uint96(balance - amount);
        w.amount = uint96(amount);
        w.withdrawableAt = SafeCast.toUint32(readyAt);
        emit WithdrawalRequested(msg.sender, amount, readyAt);
    }

    /// @notice Cancels the caller's announced withdrawal; the amount returns to its deposit.
    function cancelWithdrawal() external {
        Withdrawal storage w = _withdrawals[msg.sender];
        uint256 amount = w.amount;
        if (amount == 0) revert NothingToWithdraw();
        _accounts[msg.sender].balance += uint96(amount);
        delete _withdrawals[msg.sender];
        emit WithdrawalCancelled(msg.sender);
    }

    /// @notice Pays out the announced withdrawal once its notice has passed (strictly after
    /// `withdrawableAt`: a settlement at the window's last second always comes first).
    function withdraw() external nonReentrant {
        Withdrawal storage w = _withdrawals[msg.sender];
        uint256 amount = w.amount;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp <= w.withdrawableAt) revert WithdrawalNotReady(w.withdrawableAt);
        // Effects before the interaction (checks-effects-interactions), and the guard besides.
        delete _withdrawals[msg.sender];
        emit Withdrawn(msg.sender, amount);
        _sendValue(msg.sender, amount);
    }

    /// @notice Pays the caller (an HCS) all its settled earnings.
    function withdrawEarnings() external nonReentrant {
        Account storage account = _accounts[msg.sender];
        if (account.role != Role.HCS) revert NotAnHcs();
        uint256 amount = account.balance;
        if (amount == 0) revert NothingToWithdraw();
        account.balance = 0;
        emit EarningsWithdrawn(msg.sender, amount);
        _sendValue(msg.sender, amount);
    }

    /// @notice What a new reservation can take: the deposit minus its open reservations.
    /// @param ev The EV's address.
    function availableDeposit(address ev) external view returns (uint256) {
        Account storage account = _accounts[ev];
        return account.role == Role.EV ? account.balance - account.reserved : 0;
    }

    /// @notice An EV's deposit (announced withdrawal excluded), the part of it open reservations
    /// hold, and its announced withdrawal.
    /// @param ev The EV's address.
    function depositOf(address ev)
        external
        view
        returns (uint256 balance, uint256 reserved, uint256 pendingWithdrawal, uint256 withdrawableAt)
    {
        Account storage account = _accounts[ev];
        Withdrawal storage w = _withdrawals[ev];
        if (account.role != Role.EV) return (0, 0, 0, 0);
        return (account.balance, account.reserved, w.amount, w.withdrawableAt);
    }

    /// @notice An HCS's settled, not yet withdrawn earnings.
    /// @param hcs The station's address.
    function earningsOf(address hcs) external view returns (uint256) {
        Account storage account = _accounts[hcs];
        return account.role == Role.HCS ? account.balance : 0;
    }

    function _sendValue(address to, uint256 amount) private {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed();
    }
}
