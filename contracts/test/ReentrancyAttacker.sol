// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IEscrow {
    function registerEV(bytes32 identityCommitment) external;
    function deposit() external payable;
    function requestWithdrawal(uint256 amount) external;
    function withdraw() external;
}

/// @notice Test double: an EV whose receive hook re-enters {withdraw} to be paid twice.
/// It swallows the re-entrant call's failure and records its revert selector, so a test can
/// show both that the outer withdrawal paid once and why the inner one was refused.
contract ReentrancyAttacker {
    IEscrow public immutable target;
    uint256 public reentryAttempts;
    bytes4 public reentryError;

    constructor(IEscrow target_) {
        target = target_;
    }

    function join(bytes32 identityCommitment) external payable {
        target.registerEV(identityCommitment);
        target.deposit{value: msg.value}();
    }

    function announce(uint256 amount) external {
        target.requestWithdrawal(amount);
    }

    function attack() external {
        target.withdraw();
    }

    receive() external payable {
        if (reentryAttempts > 0) return;
        ++reentryAttempts;
        try target.withdraw() {
            reentryError = bytes4(0);
        } catch (bytes memory reason) {
            reentryError = bytes4(reason);
        }
    }
}
