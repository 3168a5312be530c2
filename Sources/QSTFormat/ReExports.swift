// The one JSON reader lives in QSTJSON (no dependencies besides QSTCore, so the tokenizer can use it
// too). QSTFormat re-exports it: the engine, the side network and the server, which already read
// files through QSTFormat, get `JSONValue` without importing a second module.
@_exported import QSTJSON
// The one error type lives in QSTCore (QSTCore/QSTError.swift says why); QSTFormat's users see it
// without importing QSTCore.
@_exported import struct QSTCore.QSTError
