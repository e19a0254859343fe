// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ChargeReports} from "./ChargeReports.sol";
import {DepositEscrow} from "./DepositEscrow.sol";
import {MemberRegistry} from "./MemberRegistry.sol";
import {Account, RatingTally, SessionState, StateWord, Terms} from "./SettlementTypes.sol";

/// @title Settlement
/// @notice P2P EV charging settlement (the paper's Table 2 on one contract): registry and
/// verification, EV deposits, settlement of a session from the two signed charge reports, batch
/// settlement, expiry and ratings.
///
/// Reconciliation rule. Let eEV be the energy in the EV's chargeReceived and eHCS the energy in
/// the HCS's chargeProvided, and tolerance = max(ABS_TOLERANCE_WH, REL_TOLERANCE_BPS ×
/// max(eEV, eHCS) / 10000). The bill is always min(eEV, eHCS) × price / 1000 (rounded down), so
/// neither side can inflate it and cable losses fall on the HCS. If |eEV − eHCS| ≤ tolerance the
/// session settles with {settle} or {settleBatch}; otherwise those refuse it (ToleranceExceeded)
/// and anyone holding both signed reports may call {settleDisputed}, which pays the uncontested
/// part min(eEV, eHCS), marks the session settled and records both amounts in {SettledDisputed}.
/// A bill above the agreed cap (min(eEV, eHCS) > maxEnergyWh) is refused in every path.
///
/// @dev Per-session state is two bits in a per-HCS bitmap indexed by `seq` (128 sessions per
/// slot), never a slot per session; each member's role, status and balance share one slot.
contract Settlement is DepositEscrow, EIP712 {
    using ChargeReports for bytes;

    /// @notice keccak256 of the Terms type string (docs/DESIGN.md).
    bytes32 public constant TERMS_TYPEHASH = keccak256(
        "Terms(address ev,address hcs,uint64 seq,uint128 priceWeiPerKWh,uint64 maxEnergyWh,uint64 settleBy)"
    );
    /// @notice keccak256("Message(bytes payload)"): the EIP-712 type every envelope signs.
    bytes32 public constant MESSAGE_TYPEHASH = keccak256("Message(bytes payload)");

    /// @notice Absolute part of the reconciliation tolerance, in Wh.
    uint256 public immutable ABS_TOLERANCE_WH;
    /// @notice Relative part of the reconciliation tolerance, in basis points of max(eEV, eHCS).
    uint256 public immutable REL_TOLERANCE_BPS;

    uint256 private constant BPS = 10_000;
    uint256 private constant WH_PER_KWH = 1000;
    uint256 private constant STATE_BITS = 2;
    uint256 private constant STATE_MASK = 3;
    /// @dev log2(256 / STATE_BITS): sessions per bitmap word.
    uint256 private constant SEQ_WORD_SHIFT = 7;
    uint256 private constant SEQ_IN_WORD_MASK = 127;

    /// @dev hcs → seq / 128 → 128 two-bit {SessionState}s.
    mapping(address hcs => mapping(uint256 wordIndex => StateWord)) private _sessionStates;

    /// @dev {Account} as one word (Solidity packs struct fields from the low-order end): role in
    /// bits 0..7, status in 8..15, balance in 16..127. Settlement reads and writes it whole.
    uint256 private constant ROLE_STATUS_MASK = 0xffff;
    uint256 private constant VERIFIED_EV = 0x0201; // Status.Verified << 8 | Role.EV
    uint256 private constant VERIFIED_HCS = 0x0202; // Status.Verified << 8 | Role.HCS
    uint256 private constant BALANCE_SHIFT = 16;
    uint256 private constant BALANCE_MASK = (1 << 112) - 1;
    mapping(address hcs => RatingTally) private _ratings;

    /// @notice A session settled inside the tolerance; `energyWh` = min(eEV, eHCS) was billed.
    /// (The session's seq is in the transaction's Terms; leaving it out saves gas per session.)
    event Settled(bytes32 indexed txid, address indexed ev, address indexed hcs, uint256 energyWh, uint256 amountWei);
    /// @notice A session settled outside the tolerance: only the uncontested min(eEV, eHCS) paid.
    event SettledDisputed(
        bytes32 indexed txid,
        address indexed ev,
        address indexed hcs,
        uint64 seq,
        uint256 evEnergyWh,
        uint256 hcsEnergyWh,
        uint256 amountWei
    );
    /// @notice A batch entry was refused; `reason` is the selector of the custom error that
    /// {settle} would have reverted with.
    event SettlementSkipped(bytes32 indexed txid, address indexed ev, address indexed hcs, bytes4 reason);
    /// @notice The HCS closed a session that was never settled; it can never settle now.
    event SessionExpired(bytes32 indexed txid, address indexed ev, address indexed hcs, uint64 seq);
    /// @notice The session's EV rated the HCS.
    event Rated(bytes32 indexed txid, address indexed ev, address indexed hcs, uint8 rating, bytes10 comment);

    // Settlement refusals: parameterless, so that a batch can report them by selector.
    error SettlementWindowClosed();
    error MalformedReport();
    error WrongReportType();
    error ReportPartiesMismatch();
    error TxIdMismatch();
    error EnergyAboveCap();
    error ToleranceExceeded();
    error WithinTolerance();
    error AlreadySettled();
    error AlreadyExpired();
    error EvNotVerified();
    error HcsNotVerified();
    error InsufficientDeposit();
    error InvalidSignature();
    error WrongSigner();
    // Other refusals.
    error BatchLengthMismatch();
    error EarningsOverflow();
    error SettlementWindowOpen();
    error NotSessionHcs();
    error NotSessionEv();
    error InvalidRating();
    error NotSettled();
    error AlreadyRated();

    /// @param admin Receives the admin and operator roles.
    /// @param settlementWindow Withdrawal notice in seconds (the longest settlement window).
    /// @param absToleranceWh Absolute reconciliation tolerance in Wh.
    /// @param relToleranceBps Relative reconciliation tolerance in basis points.
    constructor(address admin, uint256 settlementWindow, uint256 absToleranceWh, uint256 relToleranceBps)
        MemberRegistry(admin)
        DepositEscrow(settlementWindow)
        EIP712("P2PEV", "1")
    {
        ABS_TOLERANCE_WH = absToleranceWh;
        REL_TOLERANCE_BPS = relToleranceBps;
    }

    // ---------------------------------------------------------------- settlement

    /// @notice Settles one session from the EV's chargeReceived and the HCS's chargeProvided:
    /// both signatures must recover to the verified EV and HCS of `t`, both reports must carry
    /// the transaction ID of `t`, the reports must agree within the tolerance, the bill must fit
    /// the cap and the EV's deposit, and the window must be open. Debits the EV's deposit and
    /// credits the HCS's earnings. A session cut short settles the same way with what was
    /// delivered (its status travels in the reports' optional data, which the contract ignores).
    /// @param t The agreed terms.
    /// @param evReport The EV's signed chargeReceived envelope.
    /// @param hcsReport The HCS's signed chargeProvided envelope.
    function settle(Terms calldata t, bytes calldata evReport, bytes calldata hcsReport) external {
        (bytes4 err,) = _settle(t, evReport, hcsReport, false);
        if (err != 0) _revertWith(err);
    }

    /// @notice Settles a session whose reports disagree beyond the tolerance: pays only the
    /// uncontested part min(eEV, eHCS) and records both amounts. Anyone holding both signed
    /// reports may call it; every check of {settle} but the tolerance applies.
    /// @param t The agreed terms.
    /// @param evReport The EV's signed chargeReceived envelope.
    /// @param hcsReport The HCS's signed chargeProvided envelope.
    function settleDisputed(Terms calldata t, bytes calldata evReport, bytes calldata hcsReport) external {
        (bytes4 err,) = _settle(t, evReport, hcsReport, true);
        if (err != 0) _revertWith(err);
    }

    /// @notice Settles many sessions in one transaction. Each entry is checked exactly as by
    /// {settle}; an entry that {settle} would refuse is skipped with {SettlementSkipped} (its
    /// error selector as the reason) and the others still settle, so one bad entry never costs a
    /// relayer the batch. Entries outside the tolerance are skipped too (use {settleDisputed}).
    /// @param terms The agreed terms, one per session.
    /// @param evReports The EVs' signed chargeReceived envelopes, in the same order.
    /// @param hcsReports The HCSs' signed chargeProvided envelopes, in the same order.
    /// @return settled How many entries settled.
    function settleBatch(Terms[] calldata terms, bytes[] calldata evReports, bytes[] calldata hcsReports)
        external
        returns (uint256 settled)
    {
        uint256 n = terms.length;
        if (evReports.length != n || hcsReports.length != n) revert BatchLengthMismatch();
        for (uint256 i; i < n; ++i) {
            Terms calldata t = terms[i];
            (bytes4 err, bytes32 txid) = _settle(t, evReports[i], hcsReports[i], false);
            if (err == 0) {
                ++settled;
            } else {
                emit SettlementSkipped(txid, t.ev, t.hcs, err);
            }
        }
    }

    /// @notice Closes a session that was never settled, once its window is over, so that its
    /// `seq` can never settle. Only the session's HCS may close it: the bitmap is keyed by
    /// (hcs, seq), and an EV closing made-up terms with the seq of a live session could dodge
    /// its bill. Nothing else is released, because no deposit is locked per session; after
    /// `settleBy` the EV's exposure to this session is already zero whether or not it is closed.
    /// @param t The agreed terms.
    function expire(Terms calldata t) external {
        if (msg.sender != t.hcs) revert NotSessionHcs();
        if (block.timestamp <= t.settleBy) revert SettlementWindowOpen();
        (StateWord storage states, uint256 word, uint256 shift, SessionState state) = _sessionState(t.hcs, t.seq);
        if (state != SessionState.Open) _revertWith(_closedError(state));
        states.bits = word | (uint256(SessionState.Expired) << shift);
        emit SessionExpired(_txId(t), t.ev, t.hcs, t.seq);
    }

    // ---------------------------------------------------------------- rating

    /// @notice The session's EV rates the HCS, once per settled session. The contract keeps no
    /// per-session record of who the EV was, so the caller proves it with the HCS's own signed
    /// chargeProvided for this session (public since settlement): it names the EV and the txid.
    /// @param t The agreed terms; `t.ev` must be the caller.
    /// @param rating 1 to 5 stars.
    /// @param comment 10 bytes of UTF-8, zero-padded.
    /// @param hcsReport The HCS's signed chargeProvided envelope of this session.
    function rate(Terms calldata t, uint8 rating, bytes10 comment, bytes calldata hcsReport) external {
        if (msg.sender != t.ev) revert NotSessionEv();
        if (rating < 1 || rating > 5) revert InvalidRating();
        bytes32 txid = _txId(t);
        bytes4 err = _reportError(hcsReport, ChargeReports.HCS_REPORT_TYPE, t.ev, t.hcs, txid);
        if (err == 0) err = _signerError(hcsReport, t.hcs, _domainSeparatorV4());
        if (err != 0) _revertWith(err);
        (StateWord storage states, uint256 word, uint256 shift, SessionState state) = _sessionState(t.hcs, t.seq);
        if (state == SessionState.Rated) revert AlreadyRated();
        if (state != SessionState.Settled) revert NotSettled();
        // Settled (01) → Rated (10).
        states.bits = word ^ (uint256(3) << shift);
        RatingTally storage tally = _ratings[t.hcs];
        tally.sum += rating;
        tally.count += 1;
        emit Rated(txid, t.ev, t.hcs, rating, comment);
    }

    /// @notice Mean rating of an HCS in hundredths of a star (0..500; 0 when unrated).
    /// @param hcs The station's address.
    function meanRating(address hcs) external view returns (uint256) {
        RatingTally storage tally = _ratings[hcs];
        return tally.count == 0 ? 0 : (uint256(tally.sum) * 100) / tally.count;
    }

    /// @notice How many ratings an HCS has received.
    /// @param hcs The station's address.
    function ratingCount(address hcs) external view returns (uint256) {
        return _ratings[hcs].count;
    }

    // ---------------------------------------------------------------- views for agents and audits

    /// @notice The transaction ID of `t` in this deployment.
    /// @param t The agreed terms.
    function txIdOf(Terms calldata t) external view returns (bytes32) {
        return _txId(t);
    }

    /// @notice The on-chain state of session `seq` of `hcs`.
    /// @param hcs The station's address.
    /// @param seq The station's session counter.
    function sessionState(address hcs, uint64 seq) external view returns (SessionState state) {
        (,,, state) = _sessionState(hcs, seq);
    }

    /// @notice Decodes the fixed head of a charge report (payload alone or whole envelope), as
    /// settlement reads it.
    /// @param report The payload or the envelope.
    function decodeReport(bytes calldata report)
        external
        pure
        returns (uint8 messageType, uint8 memberType, address ev, address hcs, bytes32 txid, uint256 energyWh)
    {
        if (report.length < ChargeReports.HEAD_BYTES) revert MalformedReport();
        uint256 b = report.typeByte();
        return (uint8(b >> 4), uint8(b & 0x0f), report.ev(), report.hcs(), report.txid(), report.energyWh());
    }

    /// @notice The address that signed an envelope in this deployment's domain, as settlement
    /// recovers it. Reverts with InvalidSignature for a malformed or high-s signature.
    /// @param envelope `payload ‖ r ‖ s ‖ v`.
    function recoverReportSigner(bytes calldata envelope) external view returns (address) {
        if (envelope.length <= ChargeReports.SIGNATURE_BYTES) revert MalformedReport();
        (uint8 v, bytes32 r, bytes32 s) = envelope.signature();
        (address signer, ECDSA.RecoverError e,) =
            ECDSA.tryRecover(_reportDigest(envelope, _domainSeparatorV4()), v, r, s);
        if (e != ECDSA.RecoverError.NoError) revert InvalidSignature();
        return signer;
    }

    /// @notice The EIP-712 digest a member signs for `payload` in this deployment.
    /// @param payload The packed message, without signature.
    function digest(bytes calldata payload) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(MESSAGE_TYPEHASH, keccak256(payload))));
    }

    /// @notice The EIP-712 domain separator of this deployment.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    /// @dev The one settlement path shared by {settle}, {settleDisputed} and {settleBatch}: every
    /// check, then the effects. Returns the selector of the refusal (0 when settled) instead of
    /// reverting, so a batch can skip an entry. Cheap calldata checks come first, signatures last.
    function _settle(Terms calldata t, bytes calldata evReport, bytes calldata hcsReport, bool disputed)
        private
        returns (bytes4 err, bytes32 txid)
    {
        txid = _txId(t);
        if (block.timestamp > t.settleBy) return (SettlementWindowClosed.selector, txid);
        address ev = t.ev;
        address hcs = t.hcs;
        if (
            !(evReport.isWellSized() && hcsReport.isWellSized()
                    && evReport.hasHead(ChargeReports.EV_REPORT_TYPE, ev, hcs, txid)
                    && hcsReport.hasHead(ChargeReports.HCS_REPORT_TYPE, ev, hcs, txid))
        ) {
            // Slow path, only to name the refusal.
            err = _reportError(evReport, ChargeReports.EV_REPORT_TYPE, ev, hcs, txid);
            if (err == 0) err = _reportError(hcsReport, ChargeReports.HCS_REPORT_TYPE, ev, hcs, txid);
            return (err, txid);
        }

        uint256 evWh = evReport.energyWh();
        uint256 hcsWh = hcsReport.energyWh();
        uint256 billedWh = evWh < hcsWh ? evWh : hcsWh;
        if (billedWh > t.maxEnergyWh) return (EnergyAboveCap.selector, txid);
        if (_withinTolerance(evWh, hcsWh) == disputed) {
            return (disputed ? WithinTolerance.selector : ToleranceExceeded.selector, txid);
        }

        uint64 seq = t.seq;
        (StateWord storage states, uint256 word, uint256 shift, SessionState state) = _sessionState(hcs, seq);
        if (state != SessionState.Open) return (_closedError(state), txid);

        // Both member slots are read and written whole (one SLOAD and one SSTORE each).
        Account storage evAccount = _accounts[ev];
        Account storage hcsAccount = _accounts[hcs];
        uint256 evWord = _loadWord(evAccount);
        uint256 hcsWord = _loadWord(hcsAccount);
        if (evWord & ROLE_STATUS_MASK != VERIFIED_EV) return (EvNotVerified.selector, txid);
        if (hcsWord & ROLE_STATUS_MASK != VERIFIED_HCS) return (HcsNotVerified.selector, txid);
        // billedWh ≤ 2^64 and price < 2^128: no overflow.
        uint256 amount = (billedWh * t.priceWeiPerKWh) / WH_PER_KWH;
        if (amount > (evWord >> BALANCE_SHIFT) & BALANCE_MASK) return (InsufficientDeposit.selector, txid);

        bytes32 domainSeparator = _domainSeparatorV4();
        err = _signerError(evReport, ev, domainSeparator);
        if (err == 0) err = _signerError(hcsReport, hcs, domainSeparator);
        if (err != 0) return (err, txid);

        // Effects only; no external call anywhere in settlement.
        states.bits = word | (uint256(SessionState.Settled) << shift);
        unchecked {
            // amount ≤ the EV's balance, so the subtraction stays inside the balance field.
            _storeWord(evAccount, evWord - (amount << BALANCE_SHIFT));
        }
        // The HCS's balance must not carry out of its 112 bits into the withdrawal fields.
        if (((hcsWord >> BALANCE_SHIFT) & BALANCE_MASK) + amount > BALANCE_MASK) revert EarningsOverflow();
        unchecked {
            _storeWord(hcsAccount, hcsWord + (amount << BALANCE_SHIFT));
        }
        if (disputed) emit SettledDisputed(txid, ev, hcs, seq, evWh, hcsWh, amount);
        else emit Settled(txid, ev, hcs, billedWh, amount);
        return (0, txid);
    }

    /// @dev Size, type byte, parties and txid of one report against the terms.
    function _reportError(bytes calldata report, uint256 expectedType, address ev, address hcs, bytes32 txid)
        private
        pure
        returns (bytes4)
    {
        if (!report.isWellSized()) return MalformedReport.selector;
        if (report.typeByte() != expectedType) return WrongReportType.selector;
        if (report.ev() != ev || report.hcs() != hcs) return ReportPartiesMismatch.selector;
        if (report.txid() != txid) return TxIdMismatch.selector;
        return 0;
    }

    /// @dev Recovers the report's signer (low-s only, via OpenZeppelin's ECDSA) and compares.
    function _signerError(bytes calldata report, address expected, bytes32 domainSeparator)
        private
        pure
        returns (bytes4)
    {
        (uint8 v, bytes32 r, bytes32 s) = report.signature();
        (address signer, ECDSA.RecoverError e,) = ECDSA.tryRecover(_reportDigest(report, domainSeparator), v, r, s);
        if (e != ECDSA.RecoverError.NoError) return InvalidSignature.selector;
        if (signer != expected) return WrongSigner.selector;
        return 0;
    }

    /// @dev EIP-712 digest of `Message(bytes payload)` for an envelope's payload:
    /// keccak256(0x1901 ‖ domainSeparator ‖ keccak256(MESSAGE_TYPEHASH ‖ keccak256(payload))),
    /// as OpenZeppelin's MessageHashUtils.toTypedDataHash, in scratch memory (no allocation, so a
    /// batch does not grow memory per entry).
    function _reportDigest(bytes calldata envelope, bytes32 domainSeparator) private pure returns (bytes32 d) {
        bytes32 payloadHash = envelope.payloadHash();
        bytes32 typehash = MESSAGE_TYPEHASH;
        assembly ("memory-safe") {
            mstore(0x00, typehash)
            mstore(0x20, payloadHash)
            let structHash := keccak256(0x00, 0x40)
            let p := mload(0x40)
            mstore(p, hex"1901")
            mstore(add(p, 0x02), domainSeparator)
            mstore(add(p, 0x22), structHash)
            d := keccak256(p, 0x42)
        }
    }

    /// @dev |a − b| ≤ max(ABS_TOLERANCE_WH, REL_TOLERANCE_BPS × max(a, b) / 10000).
    function _withinTolerance(uint256 a, uint256 b) private view returns (bool) {
        (uint256 hi, uint256 lo) = a > b ? (a, b) : (b, a);
        // hi < 2^160, so the product cannot overflow.
        uint256 tolerance = (hi * REL_TOLERANCE_BPS) / BPS;
        if (tolerance < ABS_TOLERANCE_WH) tolerance = ABS_TOLERANCE_WH;
        return hi - lo <= tolerance;
    }

    /// @dev txid = keccak256(abi.encode(TERMS_TYPEHASH, chainid, this, ev, hcs, seq, price,
    /// maxEnergyWh, settleBy)), hashed in scratch memory from the calldata struct.
    function _txId(Terms calldata t) private view returns (bytes32 id) {
        bytes32 typehash = TERMS_TYPEHASH;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typehash)
            mstore(add(p, 0x20), chainid())
            mstore(add(p, 0x40), address())
            calldatacopy(add(p, 0x60), t, 0xc0)
            id := keccak256(p, 0x120)
        }
    }

    /// @dev The bitmap word of session `seq` of `hcs`, its value, the session's bit offset in it
    /// and its state.
    function _sessionState(address hcs, uint64 seq)
        private
        view
        returns (StateWord storage states, uint256 word, uint256 shift, SessionState state)
    {
        states = _sessionStates[hcs][seq >> SEQ_WORD_SHIFT];
        word = states.bits;
        shift = (seq & SEQ_IN_WORD_MASK) * STATE_BITS;
        state = SessionState((word >> shift) & STATE_MASK);
    }

    function _loadWord(Account storage account) private view returns (uint256 word) {
        assembly ("memory-safe") {
            word := sload(account.slot)
        }
    }

    function _storeWord(Account storage account, uint256 word) private {
        assembly ("memory-safe") {
            sstore(account.slot, word)
        }
    }

    function _closedError(SessionState state) private pure returns (bytes4) {
        return state == SessionState.Expired ? AlreadyExpired.selector : AlreadySettled.selector;
    }

    /// @dev Reverts with a parameterless custom error given by its selector.
    function _revertWith(bytes4 selector) private pure {
        assembly ("memory-safe") {
            mstore(0, selector)
            revert(0, 4)
        }
    }
}
