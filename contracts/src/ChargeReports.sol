// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ChargeReports
/// @notice Reads the signed chargeReceived / chargeProvided envelopes of SPEC.md straight from
/// calldata: `payload ‖ r(32) ‖ s(32) ‖ v(1)`, where the payload's fixed 93-byte head is
/// `type 4 bits ‖ member type 4 bits ‖ EV addr ‖ HCS addr ‖ txid ‖ energy Wh (uint160)`, and
/// whatever follows the head (the CBOR audit data) is only hashed, never parsed.
/// @dev Nothing is copied to memory but the payload, once, for its hash. Callers check
/// {isWellSized} before reading any field: calldataload past the end would read zeros.
library ChargeReports {
    uint256 internal constant HEAD_BYTES = 93;
    uint256 internal constant SIGNATURE_BYTES = 65;
    /// @dev SPEC.md asks decoders to bound the optional data; 1 KiB as the off-chain decoder.
    uint256 internal constant MAX_OPTIONAL_BYTES = 1024;

    /// @dev Message type 0x9 (charge report) in the high nibble, member type in the low one.
    uint8 internal constant EV_REPORT_TYPE = 0x91;
    uint8 internal constant HCS_REPORT_TYPE = 0x92;

    /// @notice True if `report` can hold the fixed head and a signature, and no more optional
    /// data than the protocol allows.
    function isWellSized(bytes calldata report) internal pure returns (bool) {
        uint256 n = report.length;
        return n >= HEAD_BYTES + SIGNATURE_BYTES && n <= HEAD_BYTES + MAX_OPTIONAL_BYTES + SIGNATURE_BYTES;
    }

    /// @notice True if the first 73 bytes are exactly `expectedType ‖ ev ‖ hcs ‖ txid`: the whole
    /// head but the energy, compared as three calldata words instead of field by field. A `false`
    /// says nothing of which field differs; the caller re-checks field by field to name it.
    /// @dev The addresses must be clean (upper 96 bits zero), as Solidity keeps them.
    function hasHead(
        bytes calldata report,
        uint256 expectedType,
        address expectedEv,
        address expectedHcs,
        bytes32 expectedTxid
    ) internal pure returns (bool ok) {
        assembly ("memory-safe") {
            let p := report.offset
            // bytes 0..31: type ‖ ev ‖ hcs[0..10]
            let w0 := or(or(shl(248, expectedType), shl(88, expectedEv)), shr(72, expectedHcs))
            // bytes 32..63: hcs[11..19] ‖ txid[0..22]
            let w1 := or(shl(184, expectedHcs), shr(72, expectedTxid))
            // bytes 64..72: txid[23..31]; the energy that follows is shifted out
            let tail := and(expectedTxid, 0xffffffffffffffffff)
            ok := and(
                and(eq(calldataload(p), w0), eq(calldataload(add(p, 32)), w1)),
                eq(shr(184, calldataload(add(p, 64))), tail)
            )
        }
    }

    /// @notice Byte 0: message type and member type.
    function typeByte(bytes calldata report) internal pure returns (uint256 b) {
        assembly ("memory-safe") {
            b := shr(248, calldataload(report.offset))
        }
    }

    /// @notice Bytes 1..20: the EV's address.
    function ev(bytes calldata report) internal pure returns (address a) {
        assembly ("memory-safe") {
            a := shr(96, calldataload(add(report.offset, 1)))
        }
    }

    /// @notice Bytes 21..40: the HCS's address.
    function hcs(bytes calldata report) internal pure returns (address a) {
        assembly ("memory-safe") {
            a := shr(96, calldataload(add(report.offset, 21)))
        }
    }

    /// @notice Bytes 41..72: the transaction ID.
    function txid(bytes calldata report) internal pure returns (bytes32 id) {
        assembly ("memory-safe") {
            id := calldataload(add(report.offset, 41))
        }
    }

    /// @notice Bytes 73..92: the energy in watt-hours (uint160).
    function energyWh(bytes calldata report) internal pure returns (uint256 wh) {
        assembly ("memory-safe") {
            wh := shr(96, calldataload(add(report.offset, 73)))
        }
    }

    /// @notice keccak256 of the payload: everything but the trailing 65-byte signature.
    function payloadHash(bytes calldata report) internal pure returns (bytes32 h) {
        uint256 n = report.length - SIGNATURE_BYTES;
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, report.offset, n)
            h := keccak256(p, n)
        }
    }

    /// @notice The trailing signature `r ‖ s ‖ v`.
    function signature(bytes calldata report) internal pure returns (uint8 v, bytes32 r, bytes32 s) {
        assembly ("memory-safe") {
            let end := add(report.offset, report.length)
            r := calldataload(sub(end, 65))
            s := calldataload(sub(end, 33))
            v := shr(248, calldataload(sub(end, 1)))
        }
    }
}
