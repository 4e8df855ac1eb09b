import Yams

extension ConfigError {
    /// A YAML syntax error as `<source>:<line>: invalid YAML: …`, with libyaml's context line.
    init(yaml error: any Error, text yaml: String, source: String) {
        guard let yamlError = error as? YamlError else {
            self.init("\(source): invalid YAML: \(error)")
            return
        }
        switch yamlError {
        case let .scanner(context, problem, mark, _),
            let .parser(context, problem, mark, _),
            let .composer(context, problem, mark, _):
            var message = "\(source):\(mark.line): invalid YAML: \(problem)"
            if let context {
                message += " (\(context.text) on line \(context.mark.line))"
            }
            self.init(message)
        case let .reader(problem, offset, _, _):
            guard let offset else {
                self.init("\(source): invalid YAML: \(problem)")
                return
            }
            let line = 1 + yaml.prefix(offset).reduce(0) { $1.isNewline ? $0 + 1 : $0 }
            self.init("\(source):\(line): invalid YAML: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            // Yams checks duplicates while composing and marks the key's first occurrence.
            let key = ConfigReader.display(duplicates.first ?? "?")
            self.init("\(source):\(context.mark.line): duplicate key '\(key)': it is given again later in the same mapping")
        default:
            self.init("\(source): invalid YAML: \(yamlError)")
        }
    }
}
