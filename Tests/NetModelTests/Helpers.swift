import Diagnostics
import NetModel
import Wire
import XCTest

func a(_ text: String) -> UInt32 { IPv4Address(text)!.value }

func parse(_ text: String, file: String = "net.conf", fileID: StaticString = #filePath, line: UInt = #line) -> NetworkModel {
    do {
        return try NetworkModel.parse(text, file: file)
    } catch {
        XCTFail("unexpected error: \(error)", file: fileID, line: line)
        return try! NetworkModel.parse("", file: file)
    }
}

/// The exact `file:line:column: message` a text is refused with.
func parseError(_ text: String, file: String = "net.conf") -> String? {
    do {
        _ = try NetworkModel.parse(text, file: file)
        return nil
    } catch {
        return error.description
    }
}

extension NetworkModel {
    func id(_ name: String) -> Int { interfaceIndex(named: name)! }
}
