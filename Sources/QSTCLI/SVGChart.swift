import Foundation

/// Small dependency-free SVG charts (per-layer SQNR, loss curves) that a person can read:
/// axes with ticks, labelled series, a legend.
public struct SVGChart {
    public struct Series {
        public var name: String
        public var points: [(Double, Double)]
        public var color: String
        public init(name: String, points: [(Double, Double)], color: String) {
            self.name = name; self.points = points; self.color = color
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var bars = false
    public var width = 760.0
    public var height = 420.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series], bars: Bool = false) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series; self.bars = bars
    }

    static func niceTicks(_ lo: Double, _ hi: Double, count: Int = 6) -> [Double] {
        let span = max(hi - lo, 1e-12)
        let raw = span / Double(count)
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        var t = ceil(lo / step) * step
        var ticks: [Double] = []
        while t <= hi + step * 1e-9 { ticks.append(t); t += step }
        return ticks
    }

    static func label(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e6 { return String(Int(v)) }
        return String(format: abs(v) < 0.01 ? "%.2e" : "%.3g", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }

    public func render() -> String {
        let all = series.flatMap(\.points)
        let left = 70.0, right = 20.0, top = 40.0, bottom = 60.0
        let pw = width - left - right, ph = height - top - bottom
        var x0 = all.map(\.0).min() ?? 0, x1 = all.map(\.0).max() ?? 1
        var y0 = all.map(\.1).min() ?? 0, y1 = all.map(\.1).max() ?? 1
        if bars { x0 -= 0.5; x1 += 0.5; y0 = min(0, y0) }
        if x1 == x0 { x1 = x0 + 1 }
        if y1 == y0 { y1 = y0 + 1 }
        let pad = (y1 - y0) * 0.05
        y0 -= bars && y0 == 0 ? 0 : pad; y1 += pad
        func sx(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func sy(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * ph }
        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(Self.escape(title))</text>\n"
        for t in Self.niceTicks(y0, y1) {
            s += "<line x1=\"\(left)\" x2=\"\(left + pw)\" y1=\"\(sy(t))\" y2=\"\(sy(t))\" stroke=\"#ddd\"/>\n"
            s += "<text x=\"\(left - 6)\" y=\"\(sy(t) + 4)\" text-anchor=\"end\">\(Self.label(t))</text>\n"
        }
        for t in Self.niceTicks(x0, x1, count: 10) where !bars || t == t.rounded() {
            s += "<text x=\"\(sx(t))\" y=\"\(top + ph + 18)\" text-anchor=\"middle\">\(Self.label(t))</text>\n"
        }
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(left + pw / 2)\" y=\"\(height - 18)\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s +=
            "<text transform=\"translate(18 \(top + ph / 2)) rotate(-90)\" text-anchor=\"middle\">\(Self.escape(yLabel))</text>\n"
        for (k, ser) in series.enumerated() {
            if bars {
                let bw = pw / (x1 - x0) * 0.8 / Double(max(1, series.count))
                for (x, y) in ser.points {
                    let bx = sx(x) - pw / (x1 - x0) * 0.4 + Double(k) * bw
                    s +=
                        "<rect x=\"\(bx)\" y=\"\(min(sy(y), sy(0)))\" width=\"\(bw)\" height=\"\(abs(sy(0) - sy(y)))\" fill=\"\(ser.color)\"/>\n"
                }
            } else {
                let path = ser.points.map { "\(sx($0.0)),\(sy($0.1))" }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(ser.color)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
                if ser.points.count < 60 {
                    for (x, y) in ser.points {
                        s += "<circle cx=\"\(sx(x))\" cy=\"\(sy(y))\" r=\"2.5\" fill=\"\(ser.color)\"/>\n"
                    }
                }
            }
            s +=
                "<rect x=\"\(left + 10)\" y=\"\(top + 10 + Double(k) * 18)\" width=\"12\" height=\"12\" fill=\"\(ser.color)\"/>\n"
            s += "<text x=\"\(left + 28)\" y=\"\(top + 20 + Double(k) * 18)\">\(Self.escape(ser.name))</text>\n"
        }
        return s + "</svg>\n"
    }

    public func write(to path: String) throws {
        try render().write(toFile: path, atomically: true, encoding: .utf8)
    }
}
