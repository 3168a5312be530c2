import Foundation

/// Resident memory of this process from /proc/self/status (Linux), in bytes.
public struct MemoryStats: Codable, Sendable {
    public var peakRSS: Int  // VmHWM
    public var currentRSS: Int  // VmRSS
    public var anonymous: Int  // RssAnon
    public var fileBacked: Int  // RssFile

    public static func current() -> MemoryStats {
        var fields: [String: Int] = [:]
        if let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let value = parts[1].trimmingCharacters(in: .whitespaces).split(separator: " ").first.flatMap {
                    Int($0)
                }
                if let v = value { fields[String(parts[0])] = v * 1024 }
            }
        }
        return MemoryStats(
            peakRSS: fields["VmHWM"] ?? 0, currentRSS: fields["VmRSS"] ?? 0,
            anonymous: fields["RssAnon"] ?? 0, fileBacked: fields["RssFile"] ?? 0)
    }
}
