/// A problem in an input file, reported as `file:line:column: message` (1-based line and
/// column, the column of the offending token), the form compilers and editors understand.
public struct Diagnostic: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// A token of a line split the way a shell would for iptables / iproute2 arguments: words
/// separated by blanks, single and double quotes grouping (a backslash escapes the next
/// character inside double quotes and outside quotes), with the 1-based column where the
/// token starts.
public struct Token: Equatable, Sendable {
    public var text: String
    public var column: Int
    public var quoted: Bool

    public init(text: String, column: Int, quoted: Bool = false) {
        self.text = text
        self.column = column
        self.quoted = quoted
    }
}

public enum Tokenizer {
    /// Splits one line. An unterminated quote is an error at the quote's column.
    /// A `#` at the start of a token (outside quotes) starts a comment that runs to the end.
    public static func split(_ line: Substring, file: String, lineNumber: Int) throws(Diagnostic) -> [Token] {
        var tokens: [Token] = []
        let chars = Array(line.unicodeScalars)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == " " || c == "\t" || c == "\r" || c == "\n" { i += 1; continue }
            if c == "#" { break }
            let start = i
            var text = ""
            var quoted = false
            while i < chars.count {
                let ch = chars[i]
                if ch == " " || ch == "\t" || ch == "\r" || ch == "\n" { break }
                if ch == "\"" || ch == "'" {
                    quoted = true
                    let q = ch
                    let openCol = i + 1
                    i += 1
                    var closed = false
                    while i < chars.count {
                        let d = chars[i]
                        if d == q { closed = true; i += 1; break }
                        if q == "\"" && d == "\\" && i + 1 < chars.count {
                            text.unicodeScalars.append(chars[i + 1]); i += 2; continue
                        }
                        text.unicodeScalars.append(d); i += 1
                    }
                    if !closed {
                        throw Diagnostic(file: file, line: lineNumber, column: openCol, message: "unterminated quote")
                    }
                    continue
                }
                if ch == "\\" && i + 1 < chars.count {
                    text.unicodeScalars.append(chars[i + 1]); i += 2; continue
                }
                text.unicodeScalars.append(ch); i += 1
            }
            tokens.append(Token(text: text, column: start + 1, quoted: quoted))
        }
        return tokens
    }
}
