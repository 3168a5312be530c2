/// Unicode scalar predicates with the meanings Oniguruma (the regex engine of HF `tokenizers`)
/// and Rust's `char` methods give them, so splits agree with the reference library.
enum UnicodeProperty: Sendable, Equatable {
    case letter, number, whitespace, digit, word, mark, punctuation, symbol, separator, other
    case category(Unicode.GeneralCategory)
    case any

    func contains(_ s: Unicode.Scalar) -> Bool {
        switch self {
        case .letter: return s.isLetter
        case .number: return s.isNumber
        case .whitespace: return s.isWhiteSpace
        case .digit: return s.properties.generalCategory == .decimalNumber
        case .word:
            // Oniguruma's Unicode \w: letters, marks, decimal and letter numbers, connectors.
            if s.isLetter { return true }
            switch s.properties.generalCategory {
            case .decimalNumber, .letterNumber, .connectorPunctuation, .nonspacingMark, .spacingMark, .enclosingMark:
                return true
            default:
                return false
            }
        case .mark:
            let c = s.properties.generalCategory
            return c == .nonspacingMark || c == .spacingMark || c == .enclosingMark
        case .punctuation:
            switch s.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                .initialPunctuation, .finalPunctuation, .otherPunctuation:
                return true
            default: return false
            }
        case .symbol:
            switch s.properties.generalCategory {
            case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: return true
            default: return false
            }
        case .separator:
            switch s.properties.generalCategory {
            case .spaceSeparator, .lineSeparator, .paragraphSeparator: return true
            default: return false
            }
        case .other:
            switch s.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned: return true
            default: return false
            }
        case .category(let c): return s.properties.generalCategory == c
        case .any: return true
        }
    }

    /// Parses the name inside `\p{...}`.
    init?(name: String) {
        switch name {
        case "L", "Letter": self = .letter
        case "N", "Number": self = .number
        case "M", "Mark": self = .mark
        case "P", "Punctuation": self = .punctuation
        case "S", "Symbol": self = .symbol
        case "Z", "Separator": self = .separator
        case "C", "Other": self = .other
        case "Any": self = .any
        case "White_Space", "Space": self = .whitespace
        case "Lu": self = .category(.uppercaseLetter)
        case "Ll": self = .category(.lowercaseLetter)
        case "Lt": self = .category(.titlecaseLetter)
        case "Lm": self = .category(.modifierLetter)
        case "Lo": self = .category(.otherLetter)
        case "Mn": self = .category(.nonspacingMark)
        case "Mc": self = .category(.spacingMark)
        case "Me": self = .category(.enclosingMark)
        case "Nd": self = .category(.decimalNumber)
        case "Nl": self = .category(.letterNumber)
        case "No": self = .category(.otherNumber)
        case "Pc": self = .category(.connectorPunctuation)
        case "Pd": self = .category(.dashPunctuation)
        case "Ps": self = .category(.openPunctuation)
        case "Pe": self = .category(.closePunctuation)
        case "Pi": self = .category(.initialPunctuation)
        case "Pf": self = .category(.finalPunctuation)
        case "Po": self = .category(.otherPunctuation)
        case "Sm": self = .category(.mathSymbol)
        case "Sc": self = .category(.currencySymbol)
        case "Sk": self = .category(.modifierSymbol)
        case "So": self = .category(.otherSymbol)
        case "Zs": self = .category(.spaceSeparator)
        case "Zl": self = .category(.lineSeparator)
        case "Zp": self = .category(.paragraphSeparator)
        case "Cc": self = .category(.control)
        case "Cf": self = .category(.format)
        case "Co": self = .category(.privateUse)
        case "Cn": self = .category(.unassigned)
        default: return nil
        }
    }
}

extension Unicode.Scalar {
    /// General category L* (Oniguruma `\p{L}`).
    @inline(__always) var isLetter: Bool {
        if value < 0x80 { return (value | 0x20) >= 0x61 && (value | 0x20) <= 0x7A }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// General category N* (Oniguruma `\p{N}`, Rust `char::is_numeric`).
    @inline(__always) var isNumber: Bool {
        if value < 0x80 { return value >= 0x30 && value <= 0x39 }
        switch properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// The Unicode White_Space property (Oniguruma `\s`, Rust `char::is_whitespace`).
    @inline(__always) var isWhiteSpace: Bool {
        if value < 0x80 { return value == 0x20 || (value >= 0x09 && value <= 0x0D) }
        return properties.isWhitespace
    }
}
