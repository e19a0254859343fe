// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ChargeReports
/// @notice Reads the packed calldata of reservations and settlements and rebuilds the signed
/// chargeReceived / chargeProvided payloads of SPEC.md from it.
///
/// A signed report is `payload ‖ r(32) ‖ s(32) ‖ v(1)`, its payload's fixed 93-byte head
/// `type ‖ EV addr ‖ HCS addr ‖ txid ‖ energy Wh (uint160)` followed by CBOR optional data. The
/// first 73 bytes (type, EV, HCS, txid) follow from the terms, so the calldata carries only what
/// the terms do not say:
///
///     terms   = ev 20 ‖ hcs 20 ‖ seq 8 ‖ priceWeiPerKWh 16 ‖ maxEnergyWh 8 ‖ settleBy 8   (80 bytes)
///     receipt = energyWh 8 ‖ n 2 ‖ optional n ‖ r 32 ‖ s 32 ‖ v 1                    (75 + n bytes)
///
/// A reservation entry is `terms ‖ the EV's receipt` (its consent), a settlement entry
/// `terms ‖ the EV's receipt ‖ the HCS's report`; a batch is entries back to back.
/// @dev Offsets are absolute calldata offsets. Callers check bounds with {receiptEnd} before
/// reading a receipt: calldataload past the end of calldata reads zeros.
library ChargeReports {
    uint256 internal constant TERMS_BYTES = 80;
    uint256 internal constant RECEIPT_FIXED_BYTES = 75;
    uint256 internal constant HEAD_BYTES = 93;
    uint256 internal constant SIGNATURE_BYTES = 65;
    /// @dev SPEC.md asks decoders to bound the optional data; 1 KiB as the off-chain decoder.
    uint256 internal constant MAX_OPTIONAL_BYTES = 1024;

    /// @dev Message type 0x9 (charge report) in the high nibble, member type in the low one.
    uint256 internal constant EV_REPORT_TYPE = 0x91;
    uint256 internal constant HCS_REPORT_TYPE = 0x92;

    /// @notice The terms at calldata offset `p`.
    function terms(uint256 p)
        internal
        pure
        returns (address ev, address hcs, uint256 seq, uint256 price, uint256 maxWh, uint256 settleBy)
    {
        assembly ("memory-safe") {
            ev := shr(96, calldataload(p))
            hcs := shr(96, calldataload(add(p, 20)))
            let w := calldataload(add(p, 40)) // seq 8 ‖ price 16 ‖ maxWh 8
            seq := shr(192, w)
            price := and(shr(64, w), 0xffffffffffffffffffffffffffffffff)
            maxWh := and(w, 0xffffffffffffffff)
            settleBy := shr(192, calldataload(add(p, 72)))
        }
    }

    /// @notice The end of the receipt at `q` (0 if its optional data is over the bound).
    function receiptEnd(uint256 q) internal pure returns (uint256 end) {
        uint256 n;
        assembly ("memory-safe") {
            n := shr(240, calldataload(add(q, 8)))
        }
        if (n > MAX_OPTIONAL_BYTES) return 0;
        unchecked {
            // q is a calldata offset, n ≤ 1,024.
            return q + RECEIPT_FIXED_BYTES + n;
        }
    }

    /// @notice The energy of the receipt at `q`.
    function energyWh(uint256 q) internal pure returns (uint256 wh) {
        assembly ("memory-safe") {
            wh := shr(192, calldataload(q))
        }
    }

    /// @dev secp256k1's n / 2: a signature with a larger s is refused (EIP-2; OpenZeppelin's rule).
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    /// @dev What {signedBy} finds.
    uint256 internal constant SIGNED = 0;
    uint256 internal constant BAD_SIGNATURE = 1;
    uint256 internal constant OTHER_SIGNER = 2;

    /// @notice Whether the report at `q` (ending at `end`), whose head is
    /// `reportType ‖ ev ‖ hcs ‖ txid`, is signed by `expected` in this domain: SIGNED, BAD_SIGNATURE
    /// (high s, or no signer recovers: OpenZeppelin ECDSA's rules) or OTHER_SIGNER.
    /// The digest is keccak256(0x1901 ‖ domainSeparator ‖ keccak256(messageTypehash ‖
    /// keccak256(payload))), the payload rebuilt in scratch memory (no allocation: a batch does not
    /// grow memory); the signer comes from the ecrecover precompile, called directly.
    function signedBy(
        uint256 q,
        uint256 end,
        uint256 reportType,
        address ev,
        address hcs,
        bytes32 txid,
        bytes32 messageTypehash,
        bytes32 domainSeparator,
        address expected
    ) internal view returns (uint256 result) {
        assembly ("memory-safe") {
            let n := sub(sub(end, q), 75)
            let p := mload(0x40)
            mstore(p, shl(248, reportType))
            mstore(add(p, 1), shl(96, ev))
            mstore(add(p, 21), shl(96, hcs))
            mstore(add(p, 41), txid)
            // energy as uint160: 12 zero bytes, then the 8 bytes of the receipt
            mstore(add(p, 73), 0)
            mstore(add(p, 85), calldataload(q))
            calldatacopy(add(p, 93), add(q, 10), n)
            let payloadHash := keccak256(p, add(93, n))
            mstore(0x00, messageTypehash)
            mstore(0x20, payloadHash)
            let structHash := keccak256(0x00, 0x40)
            mstore(p, hex"1901")
            mstore(add(p, 0x02), domainSeparator)
            mstore(add(p, 0x22), structHash)
            let d := keccak256(p, 0x42)
            let sig := add(add(q, 10), n)
            let s := calldataload(add(sig, 32))
            switch gt(s, HALF_N)
            case 1 { result := BAD_SIGNATURE }
            default {
                mstore(p, d)
                mstore(add(p, 0x20), shr(248, calldataload(add(sig, 64))))
                mstore(add(p, 0x40), calldataload(sig))
                mstore(add(p, 0x60), s)
                mstore(0x00, 0)
                // The precompile returns nothing for a bad v or a point off the curve: signer 0.
                if iszero(staticcall(gas(), 0x01, p, 0x80, 0x00, 0x20)) { revert(0, 0) }
                let signer := mload(0x00)
                switch signer
                case 0 { result := BAD_SIGNATURE }
                default { if iszero(eq(signer, expected)) { result := OTHER_SIGNER } }
            }
        }
    }
}
