import Foundation

/// Files that record a creation time use SOURCE_DATE_EPOCH when it is set, so that the
/// same inputs give byte-identical outputs (the reproducible-builds convention).
public enum ReproducibleBuild {
    public static func creationDate(environment: [String: String] = ProcessInfo.processInfo.environment) -> Date {
        if let s = environment["SOURCE_DATE_EPOCH"], let t = Double(s) { return Date(timeIntervalSince1970: t) }
        return Date()
    }
}
