// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MemberRegistry} from "./MemberRegistry.sol";
import {Account, Role} from "./SettlementTypes.sol";

/// @title DepositEscrow
/// @notice EV deposits with a withdrawal notice as long as the settlement window, and HCS earnings
/// pulled by the station. No deposit is locked per session: an HCS agrees to a session only if
/// {availableDeposit} covers the session's cap, and any withdrawal requested after that agreement
/// becomes payable only after the session's settlement window has closed. So the HCS is certain to
/// be paid and the EV can drive away right after charging without waiting for a block.
abstract contract DepositEscrow is MemberRegistry, ReentrancyGuardTransient {
    /// @notice Notice period of a withdrawal, equal to the longest settlement window an HCS should
    /// agree to (settleBy ≤ agreement time + SETTLEMENT_WINDOW).
    uint256 public immutable SETTLEMENT_WINDOW;

    /// @notice An EV added to its deposit.
    event Deposited(address indexed ev, uint256 amount, uint256 deposit);
    /// @notice An EV announced a withdrawal; payable from `withdrawableAt`.
    event WithdrawalRequested(address indexed ev, uint256 amount, uint256 withdrawableAt);
    /// @notice An EV cancelled its announced withdrawal.
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

    /// @param settlementWindow Withdrawal notice in seconds.
    constructor(uint256 settlementWindow) {
        SETTLEMENT_WINDOW = settlementWindow;
    }

    /// @notice Adds the sent ether to the caller's deposit; the caller must be a registered EV.
    function deposit() external payable {
        if (msg.value == 0) revert ZeroAmount();
        Account storage account = _accounts[msg.sender];
        if (account.role != Role.EV) revert NotAnEv();
        uint256 balance = account.balance + msg.value;
        account.balance = uint112(balance); // ether's supply is far below 2^112 wei
        emit Deposited(msg.sender, msg.value, balance);
    }

    /// @notice Announces a withdrawal of `amount`; it replaces any earlier announcement and
    /// becomes payable after SETTLEMENT_WINDOW. Settlements during the notice still debit the
    /// deposit, and {availableDeposit} excludes the announced amount at once.
    /// @param amount Wei to withdraw, at most the current deposit.
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Account storage account = _accounts[msg.sender];
        if (account.role != Role.EV) revert NotAnEv();
        if (amount > account.balance) revert AmountExceedsDeposit();
        uint256 readyAt = block.timestamp + SETTLEMENT_WINDOW;
        account.pendingWithdrawal = SafeCast.toUint96(amount);
        account.withdrawableAt = SafeCast.toUint32(readyAt);
        emit WithdrawalRequested(msg.sender, amount, readyAt);
    }

    /// @notice Cancels the caller's announced withdrawal.
    function cancelWithdrawal() external {
        Account storage account = _accounts[msg.sender];
        if (account.pendingWithdrawal == 0) revert NothingToWithdraw();
        account.pendingWithdrawal = 0;
        account.withdrawableAt = 0;
        emit WithdrawalCancelled(msg.sender);
    }

    /// @notice Pays out the announced withdrawal once its notice has passed: the announced amount,
    /// or what settlements left of the deposit if less.
    function withdraw() external nonReentrant {
        Account storage account = _accounts[msg.sender];
        uint256 pending = account.pendingWithdrawal;
        if (pending == 0) revert NothingToWithdraw();
        if (block.timestamp < account.withdrawableAt) revert WithdrawalNotReady(account.withdrawableAt);
        uint256 balance = account.balance;
        uint256 amount = pending < balance ? pending : balance;
        // Effects before the interaction (checks-effects-interactions), and the guard besides.
        account.balance = uint112(balance - amount);
        account.pendingWithdrawal = 0;
        account.withdrawableAt = 0;
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

    /// @notice What an HCS can count on at agreement: the deposit minus any announced withdrawal.
    /// @param ev The EV's address.
    function availableDeposit(address ev) external view returns (uint256) {
        Account storage account = _accounts[ev];
        uint256 balance = account.balance;
        uint256 pending = account.pendingWithdrawal;
        return pending < balance ? balance - pending : 0;
    }

    /// @notice An EV's deposit and its announced withdrawal.
    /// @param ev The EV's address.
    function depositOf(address ev)
        external
        view
        returns (uint256 balance, uint256 pendingWithdrawal, uint256 withdrawableAt)
    {
        Account storage account = _accounts[ev];
        return (account.balance, account.pendingWithdrawal, account.withdrawableAt);
    }

    /// @notice An HCS's settled, not yet withdrawn earnings.
    /// @param hcs The station's address.
    function earningsOf(address hcs) external view returns (uint256) {
        Account storage account = _accounts[hcs];
        return account.role == Role.HCS ? account.balance : 0;
    }

    function _sendValue(address to, uint256 amount) private {
        if (amount == 0) return;
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed();
    }
}
