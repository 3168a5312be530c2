// The record readers live in QSTData, built with bounds and overflow checks (Package.swift); whoever
// imports QSTSide sees them as before.
@_exported import QSTData
