import Foundation
import QSTEngine
import QSTFormat

/// RFC 4180 CSV: comma-separated, fields optionally in double quotes (which may hold commas, newlines and
/// doubled quotes `""`).
public enum CSVReader {
    public static func parse(_ text: String, origin: String) throws -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var inQuotes = false, fieldWasQuoted = false
        var line = 1
        var it = Array(text.unicodeScalars)[...]
        while let c = it.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if it.first == "\"" {
                        field.unicodeScalars.append("\""); it.removeFirst()
                    } else {
                        inQuotes = false
                    }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                guard field.isEmpty, !fieldWasQuoted else {
                    throw QSTError.file(origin, "line \(line): stray quote inside a field")
                }
                inQuotes = true; fieldWasQuoted = true
            case ",":
                row.append(field); field = ""; fieldWasQuoted = false
            case "\r":
                continue
            case "\n":
                row.append(field); field = ""; fieldWasQuoted = false
                rows.append(row); row = []
                line += 1
            default:
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw QSTError.file(origin, "line \(line): unterminated quoted field") }
        if !field.isEmpty || fieldWasQuoted || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
