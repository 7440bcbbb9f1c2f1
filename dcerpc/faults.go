package dcerpc

// The fault statuses a CAS is known to answer with, by name: C706
// appendix E's nca_s_* codes that a connection-oriented server sends,
// and the Win32 codes Windows' RPC runtime puts in fault PDUs instead
// (MS-RPCE 2.2.2.11, MS-ERREF). A metric labels these by their hex and
// every other status as one: the set is bounded, whatever a peer sends.
var faultNames = map[uint32]string{
	0x00000005: "access_denied (ERROR_ACCESS_DENIED)",
	0x000006be: "RPC_S_CALL_FAILED",
	0x000006bf: "RPC_S_CALL_FAILED_DNE",
	0x000006d1: "RPC_S_PROCNUM_OUT_OF_RANGE",
	0x000006f7: "RPC_X_BAD_STUB_DATA",
	0x1c00000d: "nca_s_fault_cancel",
	0x1c000012: "nca_s_fault_unspec",
	0x1c000013: "nca_s_fault_remote_comm_failure",
	0x1c00001a: "nca_s_fault_context_mismatch",
	0x1c00001b: "nca_s_fault_remote_no_memory",
	0x1c00001c: "nca_s_invalid_pres_context_id",
	0x1c00001d: "nca_s_unsupported_authn_level",
	0x1c010002: "nca_s_op_rng_error",
	0x1c010003: "nca_s_unk_if",
	0x1c01000b: "nca_s_proto_error",
}

// FaultName names a fault status stickylb knows, or returns "".
func FaultName(status uint32) string { return faultNames[status] }

// KnownFaults lists the statuses FaultName names.
func KnownFaults() []uint32 {
	out := make([]uint32, 0, len(faultNames))
	for s := range faultNames {
		out = append(out, s)
	}
	return out
}
