// The layers throw the toolchain's one error type (QSTCore/QSTError.swift); QSTNN's users see it
// without importing QSTCore.
@_exported import struct QSTCore.QSTError
