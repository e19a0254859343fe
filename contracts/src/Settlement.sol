// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ChargeReports} from "./ChargeReports.sol";
import {DepositEscrow} from "./DepositEscrow.sol";
import {MemberRegistry} from "./MemberRegistry.sol";
import {Account, RatingTally, Role, SessionState, Status, Terms} from "./SettlementTypes.sol";

/// @title Settlement
/// @notice P2P EV charging settlement (the paper's Table 2 on one contract) in which an honest
/// station is always paid (docs/CONTRACT.md, I1–I4):
///
/// 1. Reservation. Before the charger switches on, the session's cap × price is reserved against
///    the EV's deposit ({reserve}, or {reserveBatch} by an edge), with the EV's consent: its
///    signed chargeReceived for the session's txid (the first receipt, 0 Wh). Both members must
///    be verified then (membership is judged at agreement time). The reservation is the
///    agreement on chain; it is released by the settlement, or by anyone once the window closed.
/// 2. Settlement ({settle}, {settleBatch}) from the EV's highest signed receipt and the HCS's
///    signed chargeProvided. tolerance = max(ABS_TOLERANCE_WH, REL_TOLERANCE_BPS × max(eEV, eHCS)
///    / 10000). Within it the station's meter is billed, capped at maxEnergyWh. Outside it only
///    the session's own HCS may settle, and it is paid what the EV acknowledged:
///    min(eEV, eHCS, maxEnergyWh), never zero for acknowledged energy; {Disputed} records both
///    figures. amount = billedWh × price / 1000, rounded down; it is always covered by the
///    reservation.
///
/// @dev Sessions live in a ring of RING slots per HCS indexed by seq % RING: one word holds the
/// txid's top 192 bits, the seq and the state, so the slot binds the exact terms that reserved it,
/// a seq is reserved at most once, ever (a slot only moves to higher seqs), and no storage is
/// allocated per session. An HCS has at most RING sessions reserved at a time.
contract Settlement is DepositEscrow, EIP712 {
    /// @notice keccak256 of the Terms type string (docs/DESIGN.md).
    bytes32 public constant TERMS_TYPEHASH = keccak256(
        "Terms(address ev,address hcs,uint64 seq,uint128 priceWeiPerKWh,uint64 maxEnergyWh,uint64 settleBy)"
    );
    /// @notice keccak256("Message(bytes payload)"): the EIP-712 type every envelope signs.
    bytes32 public constant MESSAGE_TYPEHASH = keccak256("Message(bytes payload)");
    /// @notice Sessions an HCS can have reserved at once (its ring's size).
    uint256 public constant RING = 16;

    /// @notice Absolute part of the reconciliation tolerance, in Wh.
    uint256 public immutable ABS_TOLERANCE_WH;
    /// @notice Relative part of the reconciliation tolerance, in basis points of max(eEV, eHCS).
    uint256 public immutable REL_TOLERANCE_BPS;

    uint256 private constant BPS = 10_000;
    uint256 private constant WH_PER_KWH = 1000;
    uint256 private constant SECONDS_PER_HOUR = 3600;
    /// @dev A ring word: txid's top 192 bits ‖ seq (61 bits) ‖ state (3 bits).
    uint256 private constant STATE_MASK = 7;
    uint256 private constant SEQ_SHIFT = 3;
    uint256 private constant SEQ_MASK = (1 << 61) - 1;
    uint256 private constant TXID_MASK = ~uint256((1 << 64) - 1);

    /// @dev {Account} as one word (Solidity packs struct fields from the low-order end): role in
    /// bits 0..7, status 8..15, balance 16..111, reserved 112..207, powerW 208..239.
    uint256 private constant ROLE_STATUS_MASK = 0xffff;
    uint256 private constant VERIFIED_EV = 0x0201; // Status.Verified << 8 | Role.EV
    uint256 private constant VERIFIED_HCS = 0x0202; // Status.Verified << 8 | Role.HCS
    uint256 private constant BALANCE_SHIFT = 16;
    uint256 private constant RESERVED_SHIFT = 112;
    uint256 private constant POWER_SHIFT = 208;
    uint256 private constant AMOUNT_MASK = (1 << 96) - 1;

    /// @dev Bytes per entry of a batch's result (see {SessionsSettled}).
    uint256 private constant SETTLE_RESULT_BYTES = 60;
    uint256 private constant RESERVE_RESULT_BYTES = 36;

    mapping(address hcs => uint256[RING]) private _rings;
    mapping(address hcs => RatingTally) private _ratings;

    /// @notice One per call of {reserve} / {reserveBatch}: per entry `txid 32 ‖ reason 4`, reason
    /// 0 when reserved, else the selector of the custom error {reserve} would revert with.
    event SessionsReserved(bytes results);
    /// @notice One per call of {settle} / {settleBatch}: per entry
    /// `txid 32 ‖ reason 4 ‖ billedWh 8 ‖ amountWei 16`, reason 0 when settled.
    event SessionsSettled(bytes results);
    /// @notice A session settled outside the tolerance: both figures and what was billed.
    event Disputed(bytes32 indexed txid, uint256 evEnergyWh, uint256 hcsEnergyWh, uint256 billedWh);
    /// @notice A reservation whose window closed unsettled went back to the EV.
    event SessionReleased(bytes32 indexed txid, address indexed ev, address indexed hcs, uint256 amountWei);
    /// @notice The session's EV rated the HCS.
    event Rated(bytes32 indexed txid, address indexed ev, address indexed hcs, uint8 rating, bytes10 comment);

    // Refusals a batch reports by selector: parameterless.
    error SettlementWindowClosed();
    error SettleByTooLate();
    error WindowShorterThanCharge();
    error MalformedReport();
    error SeqOutOfRange();
    error SeqUsed();
    error TooManyOpenReservations();
    error NotReserved();
    error ToleranceExceeded();
    error AlreadySettled();
    error AlreadyReleased();
    error EvNotVerified();
    error HcsNotVerified();
    error InsufficientDeposit();
    error InvalidSignature();
    error WrongSigner();
    // Other refusals.
    error MalformedBatch();
    error EarningsOverflow();
    error SettlementWindowOpen();
    error NotSessionEv();
    error InvalidRating();
    error NotSettled();
    error AlreadyRated();
    error InvalidTolerance();

    /// @param admin Receives the admin role (grants and revokes operators; handed over after `adminDelay`).
    /// @param operator Receives the operator role (verifies, suspends and revokes members).
    /// @param adminDelay Seconds an admin transfer waits.
    /// @param settlementWindow Withdrawal notice and longest settlement window, seconds (> 0).
    /// @param absToleranceWh Absolute reconciliation tolerance in Wh.
    /// @param relToleranceBps Relative reconciliation tolerance in basis points (≤ 10,000).
    constructor(
        address admin,
        address operator,
        uint48 adminDelay,
        uint256 settlementWindow,
        uint256 absToleranceWh,
        uint256 relToleranceBps
    ) MemberRegistry(admin, operator, adminDelay) DepositEscrow(settlementWindow) EIP712("P2PEV", "1") {
        if (relToleranceBps > BPS) revert InvalidTolerance();
        ABS_TOLERANCE_WH = absToleranceWh;
        REL_TOLERANCE_BPS = relToleranceBps;
    }

    // ---------------------------------------------------------------- reservation

    /// @notice Reserves one session: `entry` = packed terms ‖ the EV's signed receipt for them
    /// (its consent; see ChargeReports). Reverts with the refusal's custom error.
    /// @param entry The packed entry.
    function reserve(bytes calldata entry) external {
        _reserveAll(entry, true);
    }

    /// @notice Reserves many sessions (an edge's batch); an entry {reserve} would refuse is
    /// reported in {SessionsReserved} and the others still reserve.
    /// @param entries Packed entries back to back.
    /// @return count How many entries were reserved.
    function reserveBatch(bytes calldata entries) external returns (uint256 count) {
        return _reserveAll(entries, false);
    }

    /// @notice Gives an unsettled reservation back to its EV once the window is over. Anyone may
    /// call it (the EV, to free its deposit); the terms must be those that reserved the slot.
    /// @param t The agreed terms.
    function release(Terms calldata t) external {
        if (block.timestamp <= t.settleBy) revert SettlementWindowOpen();
        bytes32 txid = _txIdOf(t.ev, t.hcs, t.seq, t.priceWeiPerKWh, t.maxEnergyWh, t.settleBy);
        (uint256 slot, bytes4 err) = _openSlot(t.hcs, t.seq, txid);
        if (err != 0) _revertWith(err);
        uint256 amount = (uint256(t.maxEnergyWh) * t.priceWeiPerKWh) / WH_PER_KWH;
        _setState(slot, txid, t.seq, SessionState.Released);
        Account storage ev = _accounts[t.ev];
        ev.reserved -= uint96(amount);
        emit SessionReleased(txid, t.ev, t.hcs, amount);
    }

    // ---------------------------------------------------------------- settlement

    /// @notice Settles one session: `entry` = packed terms ‖ the EV's highest signed receipt ‖ the
    /// HCS's signed chargeProvided. Reverts with the refusal's custom error.
    /// @param entry The packed entry.
    function settle(bytes calldata entry) external {
        _settleAll(entry, true);
    }

    /// @notice Settles many sessions in one transaction; an entry {settle} would refuse is
    /// reported in {SessionsSettled} and the others still settle.
    /// @param entries Packed entries back to back.
    /// @return count How many entries settled.
    function settleBatch(bytes calldata entries) external returns (uint256 count) {
        return _settleAll(entries, false);
    }

    // ---------------------------------------------------------------- rating

    /// @notice The session's EV rates the HCS, once per paid session (a session billed 0 wei
    /// cannot be rated). The mean weighs every paid session alike: one vote each.
    /// @param t The agreed terms; `t.ev` must be the caller.
    /// @param rating 1 to 5 stars.
    /// @param comment 10 bytes of UTF-8, zero-padded.
    function rate(Terms calldata t, uint8 rating, bytes10 comment) external {
        if (msg.sender != t.ev) revert NotSessionEv();
        if (rating < 1 || rating > 5) revert InvalidRating();
        bytes32 txid = _txIdOf(t.ev, t.hcs, t.seq, t.priceWeiPerKWh, t.maxEnergyWh, t.settleBy);
        uint256 slot = _slotOf(t.hcs, t.seq);
        uint256 word;
        assembly ("memory-safe") {
            word := sload(slot)
        }
        SessionState state = _stateIn(word, txid, t.seq);
        if (state == SessionState.Rated) revert AlreadyRated();
        if (state != SessionState.Settled) revert NotSettled();
        _setState(slot, txid, t.seq, SessionState.Rated);
        RatingTally storage tally = _ratings[t.hcs];
        tally.sum += rating;
        tally.count += 1;
        emit Rated(txid, t.ev, t.hcs, rating, comment);
    }

    /// @notice Mean rating of an HCS in hundredths of a star (0..500; 0 when unrated): the plain
    /// mean over its rated paid sessions.
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
        return _txIdOf(t.ev, t.hcs, t.seq, t.priceWeiPerKWh, t.maxEnergyWh, t.settleBy);
    }

    /// @notice The on-chain state of session `seq` of `hcs` (see {SessionState}).
    /// @param hcs The station's address.
    /// @param seq The station's session counter.
    function sessionState(address hcs, uint64 seq) external view returns (SessionState) {
        uint256 word = _rings[hcs][seq % RING];
        if (word == 0) return SessionState.None;
        uint256 held = (word >> SEQ_SHIFT) & SEQ_MASK;
        if (held < seq) return SessionState.None;
        if (held > seq) return SessionState.Superseded;
        return SessionState(word & STATE_MASK);
    }

    /// @notice The highest seq `hcs` has reserved that its ring still holds (0 if none): a
    /// station that lost its journal numbers its next session above it.
    /// @param hcs The station's address.
    function lastSeq(address hcs) external view returns (uint64 seq) {
        uint256[RING] storage ring = _rings[hcs];
        for (uint256 i; i < RING; ++i) {
            uint256 held = (ring[i] >> SEQ_SHIFT) & SEQ_MASK;
            if (held > seq) seq = uint64(held);
        }
    }

    /// @notice The EIP-712 digest a member signs for `payload` in this deployment.
    /// @param payload The packed message, without signature.
    function digest(bytes calldata payload) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(MESSAGE_TYPEHASH, keccak256(payload))));
    }

    /// @notice Decodes the fixed head of a signed report (payload alone or whole envelope).
    /// @param report The payload or the envelope.
    function decodeReport(bytes calldata report)
        external
        pure
        returns (uint8 messageType, uint8 memberType, address ev, address hcs, bytes32 txid, uint256 energyWh)
    {
        if (report.length < ChargeReports.HEAD_BYTES) revert MalformedReport();
        uint8 b = uint8(report[0]);
        return (
            b >> 4,
            b & 0x0f,
            address(bytes20(report[1:21])),
            address(bytes20(report[21:41])),
            bytes32(report[41:73]),
            uint160(bytes20(report[73:93]))
        );
    }

    /// @notice The address that signed an envelope (`payload ‖ r ‖ s ‖ v`) in this deployment's
    /// domain. Reverts with InvalidSignature for a malformed or high-s signature.
    /// @param envelope The signed envelope.
    function recoverReportSigner(bytes calldata envelope) external view returns (address) {
        uint256 n = envelope.length;
        if (n <= ChargeReports.SIGNATURE_BYTES) revert MalformedReport();
        bytes32 d = _hashTypedDataV4(keccak256(abi.encode(MESSAGE_TYPEHASH, keccak256(envelope[:n - 65]))));
        (address signer, ECDSA.RecoverError e,) = ECDSA.tryRecover(
            d, uint8(envelope[n - 1]), bytes32(envelope[n - 65:n - 33]), bytes32(envelope[n - 33:n - 1])
        );
        if (e != ECDSA.RecoverError.NoError) revert InvalidSignature();
        return signer;
    }

    /// @notice The EIP-712 domain separator of this deployment.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    function _reserveAll(bytes calldata blob, bool single) private returns (uint256 count) {
        uint256 p;
        uint256 end;
        assembly ("memory-safe") {
            p := blob.offset
            end := add(p, blob.length)
        }
        bytes memory results = new bytes((blob.length / (ChargeReports.TERMS_BYTES + 75)) * RESERVE_RESULT_BYTES);
        uint256 out;
        bytes32 domainSeparator = _domainSeparatorV4();
        while (p < end) {
            (bytes4 err, bytes32 txid, uint256 next) = _reserve(p, end, domainSeparator);
            if (next == 0) revert MalformedBatch();
            if (err == 0) {
                unchecked {
                    ++count;
                }
            } else if (single) {
                _revertWith(err);
            }
            assembly ("memory-safe") {
                let o := add(add(results, 0x20), out)
                mstore(o, txid)
                mstore(add(o, 0x20), err)
            }
            unchecked {
                out += RESERVE_RESULT_BYTES;
            }
            p = next;
        }
        if (single && out == 0) revert MalformedBatch();
        assembly ("memory-safe") {
            mstore(results, out)
        }
        emit SessionsReserved(results);
    }

    /// @dev One reservation: every check, then the effects. Returns the refusal's selector (0
    /// when reserved) and the next entry's offset (0 if the entry overruns the blob).
    function _reserve(uint256 p, uint256 end, bytes32 domainSeparator)
        private
        returns (bytes4 err, bytes32 txid, uint256 next)
    {
        // Unchecked: every figure comes from a bounded field (addresses 160 bits, seq, maxWh and
        // settleBy 64, price 128, a deposit 96, an offset below the calldata size): no product or sum
        // here reaches 2^256, and no difference is taken of a smaller minus a larger value.
        unchecked {
            uint256 q = p + ChargeReports.TERMS_BYTES;
            next = q < end ? ChargeReports.receiptEnd(q) : 0;
            if (next == 0 || next > end) return (0, 0, 0);
            (address ev, address hcs, uint256 seq, uint256 price, uint256 maxWh, uint256 settleBy) =
                ChargeReports.terms(p);
            txid = _txIdOf(ev, hcs, seq, price, maxWh, settleBy);
            if (seq > SEQ_MASK || seq == 0) return (SeqOutOfRange.selector, txid, next);
            if (settleBy > block.timestamp + SETTLEMENT_WINDOW) return (SettleByTooLate.selector, txid, next);

            Account storage hcsAccount = _accounts[hcs];
            uint256 hcsWord = _load(hcsAccount);
            if (hcsWord & ROLE_STATUS_MASK != VERIFIED_HCS) return (HcsNotVerified.selector, txid, next);
            // The window must hold the whole charge at the station's power: maxWh ÷ power.
            uint256 powerW = hcsWord >> POWER_SHIFT & 0xffffffff;
            if (powerW == 0 || settleBy < block.timestamp + (maxWh * SECONDS_PER_HOUR + powerW - 1) / powerW) {
                return (WindowShorterThanCharge.selector, txid, next);
            }

            Account storage evAccount = _accounts[ev];
            uint256 evWord = _load(evAccount);
            if (evWord & ROLE_STATUS_MASK != VERIFIED_EV) return (EvNotVerified.selector, txid, next);
            uint256 amount = (maxWh * price) / WH_PER_KWH;
            uint256 balance = (evWord >> BALANCE_SHIFT) & AMOUNT_MASK;
            uint256 reserved = (evWord >> RESERVED_SHIFT) & AMOUNT_MASK;
            if (reserved + amount > balance) return (InsufficientDeposit.selector, txid, next);

            uint256 slot = _slotOf(hcs, seq);
            uint256 word;
            assembly ("memory-safe") {
                word := sload(slot)
            }
            if (word != 0) {
                if ((word >> SEQ_SHIFT) & SEQ_MASK >= seq) return (SeqUsed.selector, txid, next);
                if (word & STATE_MASK == uint256(SessionState.Reserved)) {
                    return (TooManyOpenReservations.selector, txid, next);
                }
            }
            uint256 found = ChargeReports.signedBy(
                q, next, ChargeReports.EV_REPORT_TYPE, ev, hcs, txid, MESSAGE_TYPEHASH, domainSeparator, ev
            );
            if (found != ChargeReports.SIGNED) return (_signatureError(found), txid, next);

            // Effects only; no external call.
            _setState(slot, txid, seq, SessionState.Reserved);
            // reserved + amount ≤ balance < 2^96: stays inside its field.
            _store(evAccount, evWord + (amount << RESERVED_SHIFT));
        }
    }

    function _settleAll(bytes calldata blob, bool single) private returns (uint256 count) {
        uint256 p;
        uint256 end;
        assembly ("memory-safe") {
            p := blob.offset
            end := add(p, blob.length)
        }
        bytes memory results =
            new bytes((blob.length / (ChargeReports.TERMS_BYTES + 150)) * SETTLE_RESULT_BYTES);
        uint256 out;
        bytes32 domainSeparator = _domainSeparatorV4();
        // Earnings are credited once per run of entries of the same station (the client sorts a
        // batch by station): one read and one write of the station's word per run, not per entry.
        address payee;
        uint256 owed;
        while (p < end) {
            (bytes4 err, bytes32 txid, uint256 billedWh, uint256 amount, uint256 next, address hcs) =
                _settle(p, end, domainSeparator);
            if (next == 0) revert MalformedBatch();
            if (err == 0) {
                unchecked {
                    // Fewer entries than calldata bytes, each amount below 2^192.
                    ++count;
                    if (hcs != payee) {
                        _credit(payee, owed);
                        (payee, owed) = (hcs, amount);
                    } else {
                        owed += amount;
                    }
                }
            } else if (single) {
                _revertWith(err);
            }
            assembly ("memory-safe") {
                let o := add(add(results, 0x20), out)
                mstore(o, txid)
                mstore(add(o, 0x20), or(err, or(shl(160, billedWh), shl(32, amount))))
            }
            unchecked {
                out += SETTLE_RESULT_BYTES;
            }
            p = next;
        }
        if (single && out == 0) revert MalformedBatch();
        _credit(payee, owed);
        assembly ("memory-safe") {
            mstore(results, out)
        }
        emit SessionsSettled(results);
    }

    /// @dev Adds `amount` to the station's earnings (nothing for no station or 0 wei).
    function _credit(address hcs, uint256 amount) private {
        if (amount == 0) return;
        Account storage hcsAccount = _accounts[hcs];
        uint256 hcsWord = _load(hcsAccount);
        if (((hcsWord >> BALANCE_SHIFT) & AMOUNT_MASK) + amount > AMOUNT_MASK) revert EarningsOverflow();
        unchecked {
            _store(hcsAccount, hcsWord + (amount << BALANCE_SHIFT));
        }
    }

    /// @dev One settlement: every check, then the effects on the slot and the EV's deposit.
    /// Returns the refusal's selector (0 when settled), what was billed, the next entry's offset
    /// (0 if the entry overruns the blob) and the station, whose earnings the caller credits.
    function _settle(uint256 p, uint256 end, bytes32 domainSeparator)
        private
        returns (bytes4 err, bytes32 txid, uint256 billedWh, uint256 amount, uint256 next, address hcs)
    {
        // Unchecked: every figure comes from a bounded field (addresses 160 bits, seq, maxWh and
        // settleBy 64, price 128, a deposit 96, an offset below the calldata size): no product or sum
        // here reaches 2^256, and no difference is taken of a smaller minus a larger value.
        unchecked {
            uint256 q = p + ChargeReports.TERMS_BYTES;
            uint256 h = q < end ? ChargeReports.receiptEnd(q) : 0;
            next = h != 0 && h < end ? ChargeReports.receiptEnd(h) : 0;
            if (next == 0 || next > end) return (0, 0, 0, 0, 0, address(0));
            address ev;
            uint256 seq;
            uint256 price;
            uint256 maxWh;
            uint256 settleBy;
            (ev, hcs, seq, price, maxWh, settleBy) = ChargeReports.terms(p);
            txid = _txIdOf(ev, hcs, seq, price, maxWh, settleBy);
            if (block.timestamp > settleBy) return (SettlementWindowClosed.selector, txid, 0, 0, next, hcs);
            uint256 slot;
            (slot, err) = _openSlot(hcs, seq, txid);
            if (err != 0) return (err, txid, 0, 0, next, hcs);

            // The bill: within the tolerance the station's meter (capped); outside it, and only when
            // the station itself asks, what the EV acknowledged: min(eEV, eHCS, cap).
            uint256 evWh = ChargeReports.energyWh(q);
            uint256 hcsWh = ChargeReports.energyWh(h);
            bool agreed = _withinTolerance(evWh, hcsWh);
            if (agreed) {
                billedWh = hcsWh;
            } else {
                if (msg.sender != hcs) return (ToleranceExceeded.selector, txid, 0, 0, next, hcs);
                billedWh = evWh < hcsWh ? evWh : hcsWh;
            }
            if (billedWh > maxWh) billedWh = maxWh;

            err = _reportsError(q, h, next, ev, hcs, txid, domainSeparator);
            if (err != 0) return (err, txid, 0, 0, next, hcs);

            // Effects only; no external call. maxWh < 2^64 and price < 2^128: no overflow.
            amount = (billedWh * price) / WH_PER_KWH;
            uint256 held = (maxWh * price) / WH_PER_KWH;
            _setState(slot, txid, seq, amount == 0 ? SessionState.SettledFree : SessionState.Settled);
            Account storage evAccount = _accounts[ev];
            uint256 evWord = _load(evAccount);
            // amount ≤ held ≤ reserved ≤ balance (the reservation's invariant): no borrow.
            _store(evAccount, evWord - (amount << BALANCE_SHIFT) - (held << RESERVED_SHIFT));
            if (!agreed) emit Disputed(txid, evWh, hcsWh, billedWh);
        }
    }

    /// @dev The ring slot of (hcs, seq), and whether it holds exactly this txid, reserved.
    function _openSlot(address hcs, uint256 seq, bytes32 txid) private view returns (uint256 slot, bytes4 err) {
        slot = _slotOf(hcs, seq);
        uint256 word;
        assembly ("memory-safe") {
            word := sload(slot)
        }
        // One comparison for the common case: this session, reserved. A seq beyond 61 bits was
        // never reserved (and would spill into the txid's bits).
        if (seq > SEQ_MASK) return (slot, NotReserved.selector);
        uint256 session = (uint256(txid) & TXID_MASK) | (seq << SEQ_SHIFT);
        if (word == session | uint256(SessionState.Reserved)) return (slot, 0);
        uint256 state = word & STATE_MASK;
        if (word & ~STATE_MASK != session || state == uint256(SessionState.None)) return (slot, NotReserved.selector);
        if (state == uint256(SessionState.Released)) return (slot, AlreadyReleased.selector);
        return (slot, AlreadySettled.selector);
    }

    /// @dev The state a ring word gives the session (txid, seq): None if it holds another one.
    function _stateIn(uint256 word, bytes32 txid, uint256 seq) private pure returns (SessionState) {
        if (word & TXID_MASK != uint256(txid) & TXID_MASK || (word >> SEQ_SHIFT) & SEQ_MASK != seq) {
            return SessionState.None;
        }
        return SessionState(word & STATE_MASK);
    }

    function _setState(uint256 slot, bytes32 txid, uint256 seq, SessionState state) private {
        uint256 word = (uint256(txid) & TXID_MASK) | (seq << SEQ_SHIFT) | uint256(state);
        assembly ("memory-safe") {
            sstore(slot, word)
        }
    }

    function _slotOf(address hcs, uint256 seq) private view returns (uint256 slot) {
        uint256[RING] storage ring = _rings[hcs];
        assembly ("memory-safe") {
            slot := add(ring.slot, mod(seq, 16))
        }
    }

    /// @dev Checks both reports of a settlement: the EV's at [q, h), the station's at [h, end).
    function _reportsError(uint256 q, uint256 h, uint256 end, address ev, address hcs, bytes32 txid, bytes32 ds)
        private
        view
        returns (bytes4)
    {
        uint256 found =
            ChargeReports.signedBy(q, h, ChargeReports.EV_REPORT_TYPE, ev, hcs, txid, MESSAGE_TYPEHASH, ds, ev);
        if (found == ChargeReports.SIGNED) {
            found =
                ChargeReports.signedBy(h, end, ChargeReports.HCS_REPORT_TYPE, ev, hcs, txid, MESSAGE_TYPEHASH, ds, hcs);
        }
        return found == ChargeReports.SIGNED ? bytes4(0) : _signatureError(found);
    }

    /// @dev The refusal for what {ChargeReports.signedBy} found (not SIGNED).
    function _signatureError(uint256 found) private pure returns (bytes4) {
        return found == ChargeReports.BAD_SIGNATURE ? InvalidSignature.selector : WrongSigner.selector;
    }

    /// @dev |a − b| ≤ max(ABS_TOLERANCE_WH, REL_TOLERANCE_BPS × max(a, b) / 10000).
    function _withinTolerance(uint256 a, uint256 b) private view returns (bool) {
        // Unchecked: hi ≥ lo and hi < 2^64.
        unchecked {
            (uint256 hi, uint256 lo) = a > b ? (a, b) : (b, a);
            // hi < 2^64, so the product cannot overflow.
            uint256 tolerance = (hi * REL_TOLERANCE_BPS) / BPS;
            if (tolerance < ABS_TOLERANCE_WH) tolerance = ABS_TOLERANCE_WH;
            return hi - lo <= tolerance;
        }
    }

    /// @dev txid = keccak256(abi.encode(TERMS_TYPEHASH, chainid, this, ev, hcs, seq, price,
    /// maxEnergyWh, settleBy)), hashed in scratch memory.
    function _txIdOf(address ev, address hcs, uint256 seq, uint256 price, uint256 maxWh, uint256 settleBy)
        private
        view
        returns (bytes32 id)
    {
        bytes32 typehash = TERMS_TYPEHASH;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typehash)
            mstore(add(p, 0x20), chainid())
            mstore(add(p, 0x40), address())
            mstore(add(p, 0x60), ev)
            mstore(add(p, 0x80), hcs)
            mstore(add(p, 0xa0), seq)
            mstore(add(p, 0xc0), price)
            mstore(add(p, 0xe0), maxWh)
            mstore(add(p, 0x100), settleBy)
            id := keccak256(p, 0x120)
        }
    }

    function _load(Account storage account) private view returns (uint256 word) {
        assembly ("memory-safe") {
            word := sload(account.slot)
        }
    }

    function _store(Account storage account, uint256 word) private {
        assembly ("memory-safe") {
            sstore(account.slot, word)
        }
    }

    /// @dev Reverts with a parameterless custom error given by its selector.
    function _revertWith(bytes4 selector) private pure {
        assembly ("memory-safe") {
            mstore(0, selector)
            revert(0, 4)
        }
    }
}
