//! What a control command takes: its arguments, each with a name and a type, checked
//! before the command runs; and how `hv ctl`'s words become those arguments.
//!
//! Each command in the table (`super::commands::COMMANDS`) lists its [`Field`]s. The
//! server checks a request against them ([`check_args`]): every field must be one the
//! command takes, of the right type, and every required one present; so a handler reads
//! its arguments with [`Args`] knowing they are well-formed. `hv ctl` builds the same
//! fields from its command line ([`fields_from_words`]): positional fields in order, the
//! others as `--name VALUE` (or `--name` for a flag), with `_` in a name written `-`.
//! Adding a command is therefore one table entry; neither side needs code of its own.

use serde_json::{Map, Value};

use super::protocol::{quote, type_name};

/// The JSON type of an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A string (an address, a name).
    Text,
    /// A file name, as a string. hv opens it relative to its own working directory, so
    /// `hv ctl` makes a relative one absolute against the client's first.
    Path,
    /// A boolean; on `hv ctl`'s command line, present or absent.
    Flag,
    /// A non-negative integer.
    Count,
}

/// One argument of a command.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Its name in the request (`max_rounds`); on the command line `--max-rounds`.
    pub name: &'static str,
    /// Its type.
    pub kind: FieldKind,
    /// Whether a request must have it (a missing flag is false).
    pub required: bool,
    /// Whether `hv ctl` takes it as a bare word (in table order) instead of an option.
    pub positional: bool,
}

/// A command's arguments, checked against its fields.
#[derive(Debug, Clone, Default)]
pub struct Args(Map<String, Value>);

impl Args {
    /// A `Text` or `Path` argument.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A `Flag` argument (absent is false).
    pub fn flag(&self, name: &str) -> bool {
        self.0.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    /// A `Count` argument.
    pub fn count(&self, name: &str) -> Option<u64> {
        self.0.get(name).and_then(Value::as_u64)
    }
}

/// Whether `value` has the type `kind` asks for.
fn has_kind(value: &Value, kind: FieldKind) -> bool {
    match kind {
        FieldKind::Text | FieldKind::Path => value.is_string(),
        FieldKind::Flag => value.is_boolean(),
        FieldKind::Count => value.is_u64(),
    }
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "a string",
        FieldKind::Path => "a string (a file name)",
        FieldKind::Flag => "a boolean",
        FieldKind::Count => "a non-negative integer",
    }
}

/// Checks a request's arguments for `command` against its `fields`. The error is the
/// reply's message.
pub fn check_args(command: &str, fields: &[Field], args: Map<String, Value>) -> Result<Args, String> {
    // Arguments come from the peer: look each one up rather than trusting their number
    // (a line holds at most 64 KiB, so this loop is bounded too).
    for (name, value) in &args {
        let Some(field) = fields.iter().find(|f| f.name == name) else {
            let takes = if fields.is_empty() {
                "takes no arguments".to_string()
            } else {
                format!("takes: {}", fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", "))
            };
            return Err(format!("'{command}' has no argument \"{}\" (it {takes})", quote(name)));
        };
        if !has_kind(value, field.kind) {
            return Err(format!("'{command}': \"{}\" must be {}, not {}", field.name, kind_name(field.kind), type_name(value)));
        }
    }
    if let Some(missing) = fields.iter().find(|f| f.required && !args.contains_key(f.name)) {
        return Err(format!("'{command}' needs \"{}\": {}", missing.name, kind_name(missing.kind)));
    }
    Ok(Args(args))
}

/// `--max-rounds` for `max_rounds`.
pub fn option_name(field: &Field) -> String {
    format!("--{}", field.name.replace('_', "-"))
}

/// Builds a command's request fields from `hv ctl`'s words after the command name.
pub fn fields_from_words(command: &str, fields: &[Field], words: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut positional = fields.iter().filter(|f| f.positional);
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let field = if word.starts_with("--") {
            let field = fields.iter().find(|f| !f.positional && option_name(f) == *word);
            field.ok_or_else(|| format!("'{command}' has no option {word}"))?
        } else {
            positional.next().ok_or_else(|| format!("'{command}' takes no more words (got '{word}')"))?
        };
        let value = match field.kind {
            FieldKind::Flag if !field.positional => Value::Bool(true),
            kind => {
                let text = if field.positional {
                    word
                } else {
                    words.next().ok_or_else(|| format!("'{command}': {} needs a value", option_name(field)))?
                };
                match kind {
                    FieldKind::Count => {
                        let n: u64 = text.parse().map_err(|_| format!("'{command}': '{text}' is not a non-negative integer"))?;
                        Value::from(n)
                    }
                    FieldKind::Flag => match text.as_str() {
                        "true" | "on" | "yes" => Value::Bool(true),
                        "false" | "off" | "no" => Value::Bool(false),
                        _ => return Err(format!("'{command}': '{text}' is not true or false")),
                    },
                    FieldKind::Text => Value::from(text.as_str()),
                    FieldKind::Path => {
                        let absolute = std::path::absolute(text).map_err(|e| format!("'{command}': cannot resolve '{text}': {e}"))?;
                        let absolute = absolute.to_str().ok_or_else(|| format!("'{command}': '{text}' is not UTF-8"))?;
                        Value::from(absolute)
                    }
                }
            }
        };
        if out.insert(field.name.to_string(), value).is_some() {
            return Err(format!("'{command}': {} given twice", option_name(field)));
        }
    }
    if let Some(missing) = fields.iter().find(|f| f.required && !out.contains_key(f.name)) {
        let shown = if missing.positional { missing.name.to_uppercase() } else { option_name(missing) };
        return Err(format!("'{command}' needs {shown}"));
    }
    Ok(out)
}

/// How a command is written on `hv ctl`'s command line: `snapshot FILE [--stop]`.
pub fn usage(command: &str, fields: &[Field]) -> String {
    let mut usage = command.to_string();
    for field in fields {
        let word = match (field.positional, field.kind) {
            (true, _) => field.name.to_uppercase(),
            (false, FieldKind::Flag) => option_name(field),
            (false, _) => format!("{} {}", option_name(field), field.name.to_uppercase()),
        };
        usage.push(' ');
        if field.required {
            usage.push_str(&word);
        } else {
            usage.push_str(&format!("[{word}]"));
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A command shaped like the ones the control socket will grow (a file, a flag, a
    /// number), to test the checks on.
    const FIELDS: &[Field] = &[
        Field { name: "file", kind: FieldKind::Path, required: true, positional: true },
        Field { name: "stop", kind: FieldKind::Flag, required: false, positional: false },
        Field { name: "max_rounds", kind: FieldKind::Count, required: false, positional: false },
    ];

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn good_arguments_pass() {
        let args = check_args("save", FIELDS, map(json!({"file": "a", "stop": true, "max_rounds": 3}))).unwrap();
        assert_eq!((args.text("file"), args.flag("stop"), args.count("max_rounds")), (Some("a"), true, Some(3)));
        let args = check_args("save", FIELDS, map(json!({"file": "a"}))).unwrap();
        assert_eq!((args.flag("stop"), args.count("max_rounds")), (false, None));
    }

    #[test]
    fn hostile_extra_field() {
        let e = check_args("save", FIELDS, map(json!({"file": "a", "force": true}))).unwrap_err();
        assert_eq!(e, "'save' has no argument \"force\" (it takes: file, stop, max_rounds)");
        let e = check_args("status", &[], map(json!({"verbose": 1}))).unwrap_err();
        assert_eq!(e, "'status' has no argument \"verbose\" (it takes no arguments)");
    }

    #[test]
    fn hostile_wrong_types() {
        let e = check_args("save", FIELDS, map(json!({"file": 7}))).unwrap_err();
        assert_eq!(e, "'save': \"file\" must be a string (a file name), not a number");
        let e = check_args("save", FIELDS, map(json!({"file": "a", "stop": "yes"}))).unwrap_err();
        assert_eq!(e, "'save': \"stop\" must be a boolean, not a string");
        for bad in [json!(-1), json!(1.5), json!(null), json!([3])] {
            let e = check_args("save", FIELDS, map(json!({"file": "a", "max_rounds": bad}))).unwrap_err();
            assert!(e.contains("must be a non-negative integer"), "{e}");
        }
    }

    #[test]
    fn hostile_missing_field() {
        let e = check_args("save", FIELDS, Map::new()).unwrap_err();
        assert_eq!(e, "'save' needs \"file\": a string (a file name)");
    }

    #[test]
    fn words_become_fields() {
        let words: Vec<String> = ["f.snap", "--max-rounds", "4", "--stop"].iter().map(|s| s.to_string()).collect();
        let fields = fields_from_words("save", FIELDS, &words).unwrap();
        let here = std::env::current_dir().unwrap().join("f.snap");
        assert_eq!(Value::Object(fields), json!({"file": here.to_str().unwrap(), "max_rounds": 4, "stop": true}));
        let words = vec!["/abs/f.snap".to_string()];
        assert_eq!(fields_from_words("save", FIELDS, &words).unwrap()["file"], "/abs/f.snap");
    }

    #[test]
    fn bad_words_are_named() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(fields_from_words("save", FIELDS, &w(&[])).unwrap_err(), "'save' needs FILE");
        assert_eq!(fields_from_words("save", FIELDS, &w(&["a", "b"])).unwrap_err(), "'save' takes no more words (got 'b')");
        assert_eq!(fields_from_words("save", FIELDS, &w(&["a", "--force"])).unwrap_err(), "'save' has no option --force");
        assert_eq!(fields_from_words("save", FIELDS, &w(&["a", "--max-rounds"])).unwrap_err(), "'save': --max-rounds needs a value");
        assert_eq!(
            fields_from_words("save", FIELDS, &w(&["a", "--max-rounds", "x"])).unwrap_err(),
            "'save': 'x' is not a non-negative integer"
        );
        assert_eq!(fields_from_words("save", FIELDS, &w(&["a", "--stop", "--stop"])).unwrap_err(), "'save': --stop given twice");
    }

    #[test]
    fn usage_lines() {
        assert_eq!(usage("save", FIELDS), "save FILE [--stop] [--max-rounds MAX_ROUNDS]");
        assert_eq!(usage("status", &[]), "status");
    }
}
