//! Label and field selectors, as the API server parses, validates, prints and evaluates them.
//!
//! * [`LabelSelector`]: the `labelSelector` query syntax (`a=b`, `a!=b`, `a in (x,y)`,
//!   `!a`, ...) and `metav1.LabelSelector` objects (`matchLabels` / `matchExpressions`),
//!   both turned into one list of requirements sorted by key. Its `Display` is the canonical
//!   string form used in `kubectl get -o wide` SELECTOR columns.
//! * [`FieldSelector`]: the `fieldSelector` query syntax (`a=b`, `a==b`, `a!=b`, with `\,`,
//!   `\=` and `\\` escapes in values), the per-kind list of supported fields, and the value
//!   each supported field takes on a JSON object.
//!
//! Error texts follow upstream's so clients see the messages Kubernetes prints.

use std::fmt;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::catalogue;
use crate::validation::gorepr::{self, quote as go_quote};
use crate::validation::names;
use json::{bool_at, int_at, list_at, str_at};

/// A selector that failed to parse or validate. `Display` is upstream's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message, as upstream prints it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors: AST
// ---------------------------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value` (also true when the label is absent)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (also true when the label is absent)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>5` (integer comparison)
    GreaterThan,
    /// `key<5` (integer comparison)
    LessThan,
}

impl Operator {
    /// How the operator is written between key and values in the canonical string form.
    fn infix(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => "",
        }
    }
}

/// The binary operators as upstream lists them in "expected:" parse errors.
const BINARY_OPERATOR_NAMES: &str = "in, notin, =, ==, !=, gt, lt";

/// One requirement of a label selector: a key, an operator and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a validated requirement (upstream's `NewRequirement`): the key must be a
    /// qualified name, values must be label values, and the value count must fit the
    /// operator. The error lists every problem, as upstream's aggregate does.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let mut errors = Vec::new();
        let key_errors = label_key_errors(key);
        if !key_errors.is_empty() {
            errors.push(invalid("key", &go_quote(key), &key_errors.join("; ")));
        }
        if let Some(detail) = value_count_error(operator, values.len()) {
            // Upstream passes a nil slice for a missing value list.
            let shown = gorepr::string_slice((!values.is_empty()).then_some(values.as_slice()));
            errors.push(invalid("values", &shown, detail));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    let detail = "for 'Gt', 'Lt' operators, the value must be an integer";
                    errors.push(invalid(&format!("values[{i}]"), &go_quote(v), detail));
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errors = label_value_errors(v);
            if !value_errors.is_empty() {
                let path = format!("values[{i}][{key}]");
                errors.push(invalid(&path, &go_quote(v), &value_errors.join("; ")));
            }
        }
        if errors.is_empty() {
            Ok(Self {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(SelectorError::new(aggregate(errors)))
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (the parser yields them sorted and de-duplicated).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement (upstream's `Requirement.Matches`).
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).and_then(Value::as_str);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(has),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => self.compare(value),
        }
    }

    fn compare(&self, value: Option<&str>) -> bool {
        let Some(label) = value.and_then(|v| v.parse::<i64>().ok()) else {
            return false;
        };
        let [wanted] = self.values.as_slice() else {
            return false;
        };
        let Ok(wanted) = wanted.parse::<i64>() else {
            return false;
        };
        match self.operator {
            Operator::GreaterThan => label > wanted,
            _ => label < wanted,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        if matches!(self.operator, Operator::Exists | Operator::DoesNotExist) {
            return Ok(());
        }
        f.write_str(self.operator.infix())?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Upstream's detail for a value count that does not fit the operator, if any.
fn value_count_error(operator: Operator, count: usize) -> Option<&'static str> {
    match operator {
        Operator::In | Operator::NotIn if count == 0 => Some("for 'in', 'notin' operators, values set can't be empty"),
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if count != 1 => {
            Some("exact-match compatibility requires one single value")
        }
        Operator::Exists | Operator::DoesNotExist if count != 0 => {
            Some("values set must be empty for exists and does not exist")
        }
        Operator::GreaterThan | Operator::LessThan if count != 1 => {
            Some("for 'Gt', 'Lt' operators, exactly one value is required")
        }
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Selection {
    /// Matches nothing (a missing `metav1.LabelSelector`).
    Nothing,
    /// Matches when every requirement does; no requirement matches everything.
    All(Vec<Requirement>),
}

/// A parsed label selector: requirements ANDed together, sorted by key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    selection: Selection,
}

impl Default for LabelSelector {
    fn default() -> Self {
        Self::everything()
    }
}

impl LabelSelector {
    /// The selector that matches every object (an empty string or `{}`).
    pub fn everything() -> Self {
        Self {
            selection: Selection::All(Vec::new()),
        }
    }

    /// The selector that matches no object (a missing/null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        Self {
            selection: Selection::Nothing,
        }
    }

    /// Builds a selector from requirements (sorted by key, stable for equal keys).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            selection: Selection::All(requirements),
        }
    }

    /// Parses the `labelSelector` string syntax (upstream's `labels.Parse`).
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let requirements = Parser::new(input).parse().map_err(SelectorError::new)?;
        Ok(Self::from_requirements(requirements))
    }

    /// The selector `k1=v1,k2=v2,...` for a plain label map such as a ReplicationController's
    /// or Service's `spec.selector` (no validation, as upstream's `SelectorFromSet`). Non-string
    /// values are skipped. An empty map selects everything.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        let requirements = map
            .iter()
            .filter_map(|(k, v)| {
                let value = v.as_str()?.to_string();
                Some(Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![value],
                })
            })
            .collect();
        Self::from_requirements(requirements)
    }

    /// Converts a `metav1.LabelSelector` JSON value (upstream's `LabelSelectorAsSelector`):
    /// `null` matches nothing, `{}` matches everything, otherwise `matchLabels` become `=`
    /// requirements and `matchExpressions` use `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub fn from_api(selector: &Value) -> Result<Self, SelectorError> {
        let obj = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(obj) => obj,
            other => {
                return Err(SelectorError::new(format!("invalid label selector: {other}")));
            }
        };
        let mut match_labels: Vec<(&String, &Value)> =
            optional_object(obj, "matchLabels")?.into_iter().flatten().collect();
        match_labels.sort_unstable_by_key(|(key, _)| *key);
        let expressions = optional_array(obj, "matchExpressions")?;
        let mut requirements = Vec::with_capacity(match_labels.len() + expressions.len());
        for (key, value) in match_labels {
            let Some(value) = value.as_str() else {
                return Err(SelectorError::new(format!(
                    "matchLabels[{key}]: value must be a string"
                )));
            };
            requirements.push(Requirement::new(key, Operator::Equals, vec![value.to_string()])?);
        }
        for expression in expressions {
            requirements.push(expression_requirement(expression)?);
        }
        if requirements.is_empty() {
            return Ok(Self::everything());
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Whether the selector selects the given labels (`metadata.labels`; pass an empty map when
    /// absent).
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        match &self.selection {
            Selection::Nothing => false,
            Selection::All(requirements) => requirements.iter().all(|r| r.matches(labels)),
        }
    }

    /// Whether the selector selects an object, reading its `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        match object.get("metadata").and_then(|m| m.get("labels")) {
            Some(Value::Object(labels)) => self.matches(labels),
            _ => self.matches(&Map::new()),
        }
    }

    /// True when the selector does not restrict anything (upstream's `Empty`): no requirements.
    /// The "nothing" selector is not empty.
    pub fn is_empty(&self) -> bool {
        matches!(&self.selection, Selection::All(r) if r.is_empty())
    }

    /// True for the selector that matches nothing.
    pub fn matches_nothing(&self) -> bool {
        self.selection == Selection::Nothing
    }

    /// The requirements, sorted by key (empty for "everything" and "nothing").
    pub fn requirements(&self) -> &[Requirement] {
        match &self.selection {
            Selection::Nothing => &[],
            Selection::All(requirements) => requirements,
        }
    }

    /// The single value `key` must equal (`=`, `==` or a one-value `in`), if the selector
    /// pins it (upstream's `RequiresExactMatch`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements().iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string: requirements sorted by key, joined by `,`, values of each
    /// requirement sorted. "Everything" and "nothing" both print as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

fn optional_object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, SelectorError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(SelectorError::new(format!("{key}: must be an object"))),
    }
}

fn optional_array<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], SelectorError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(SelectorError::new(format!("{key}: must be an array"))),
    }
}

/// One `matchExpressions` entry as a requirement.
fn expression_requirement(expression: &Value) -> Result<Requirement, SelectorError> {
    let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
    let operator_name = expression.get("operator").and_then(Value::as_str).unwrap_or_default();
    let operator = match operator_name {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(SelectorError::new(format!(
                "{} is not a valid pod selector operator",
                go_quote(other)
            )));
        }
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| SelectorError::new("matchExpressions: values must be strings"))?,
        Some(_) => {
            return Err(SelectorError::new("matchExpressions: values must be an array"));
        }
    };
    Requirement::new(key, operator, values)
}

// ---------------------------------------------------------------------------------------------
// Label selectors: lexer and parser
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    End,
    OpenParen,
    CloseParen,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Identifier,
}

/// Symbol tokens by their spelling; the lexer takes the longest spelling that is a token.
const SYMBOLS: &[(&str, Token)] = &[
    ("(", Token::OpenParen),
    (")", Token::CloseParen),
    (",", Token::Comma),
    ("!", Token::Bang),
    ("=", Token::Equals),
    ("==", Token::DoubleEquals),
    ("!=", Token::NotEquals),
    (">", Token::GreaterThan),
    ("<", Token::LessThan),
];

fn is_symbol_char(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn symbol_token(text: &str) -> Option<Token> {
    SYMBOLS.iter().find(|(s, _)| *s == text).map(|(_, t)| *t)
}

/// Splits the input into tokens, always ending with [`Token::End`].
fn tokenize(input: &str) -> Vec<(Token, &str)> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < bytes.len() && is_blank(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            tokens.push((Token::End, ""));
            return tokens;
        }
        let start = pos;
        if is_symbol_char(bytes[pos]) {
            // Grow the symbol while the longer spelling is still a token.
            let mut token = symbol_token(&input[pos..=pos]).unwrap_or(Token::Identifier);
            pos += 1;
            while pos < bytes.len() && is_symbol_char(bytes[pos]) {
                match symbol_token(&input[start..=pos]) {
                    Some(longer) => {
                        token = longer;
                        pos += 1;
                    }
                    None => break,
                }
            }
            tokens.push((token, &input[start..pos]));
        } else {
            while pos < bytes.len() && !is_symbol_char(bytes[pos]) && !is_blank(bytes[pos]) {
                pos += 1;
            }
            let word = &input[start..pos];
            let token = match word {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            tokens.push((token, word));
        }
    }
}

/// Whether `in`/`notin` are read as keywords (operator position) or as plain words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Operator,
    Word,
}

struct Parser<'a> {
    tokens: Vec<(Token, &'a str)>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            tokens: tokenize(input),
            position: 0,
        }
    }

    fn peek(&self, context: Context) -> (Token, &'a str) {
        let (token, text) = self.tokens.get(self.position).copied().unwrap_or((Token::End, ""));
        match (context, token) {
            (Context::Word, Token::In | Token::NotIn) => (Token::Identifier, text),
            _ => (token, text),
        }
    }

    fn next(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.peek(context);
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        item
    }

    fn parse(mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, text) = self.peek(Context::Word);
            match token {
                Token::Identifier | Token::Bang => {
                    let requirement = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    match self.next(Context::Word) {
                        (Token::End, _) => return Ok(requirements),
                        (Token::Comma, _) => {
                            let (after, after_text) = self.peek(Context::Word);
                            if !matches!(after, Token::Identifier | Token::Bang) {
                                return Err(format!("found '{after_text}', expected: identifier after ','"));
                            }
                        }
                        (_, other) => {
                            return Err(format!("found '{other}', expected: ',' or 'end of string'"));
                        }
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(format!("found '{text}', expected: !, identifier, or 'end of string'"));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_unary_operator()?;
        if let Some(operator) = unary {
            return Requirement::new(key, operator, Vec::new()).map_err(|e| e.message);
        }
        let operator = self.operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(key, operator, values).map_err(|e| e.message)
    }

    /// Reads `[!] KEY` and infers `Exists`/`DoesNotExist` when no operator follows.
    fn key_and_unary_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let mut negated = false;
        let (mut token, mut text) = self.next(Context::Word);
        if token == Token::Bang {
            negated = true;
            (token, text) = self.next(Context::Word);
        }
        if token != Token::Identifier {
            return Err(format!("found '{text}', expected: identifier"));
        }
        let key_errors = label_key_errors(text);
        if !key_errors.is_empty() {
            // Upstream validates the key here against a nil field path.
            return Err(invalid("<nil>", &go_quote(text), &key_errors.join("; ")));
        }
        if negated {
            return Ok((text, Some(Operator::DoesNotExist)));
        }
        let (after, _) = self.peek(Context::Word);
        let unary = matches!(after, Token::End | Token::Comma).then_some(Operator::Exists);
        Ok((text, unary))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (token, text) = self.next(Context::Operator);
        Ok(match token {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            _ => return Err(format!("found '{text}', expected: {BINARY_OPERATOR_NAMES}")),
        })
    }

    /// Reads `( v1, v2, ... )`; empty entries stand for the empty value. Sorted, de-duplicated.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let (token, text) = self.next(Context::Word);
        if token != Token::OpenParen {
            return Err(format!("found '{text}' expected: '('"));
        }
        let (token, text) = self.peek(Context::Word);
        let mut values = match token {
            Token::CloseParen => {
                self.next(Context::Word);
                vec![String::new()]
            }
            Token::Identifier | Token::Comma => self.value_list()?,
            _ => return Err(format!("found '{text}', expected: ',', ')' or identifier")),
        };
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// The entries of a value set up to and including the closing parenthesis.
    fn value_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            let (token, text) = self.next(Context::Word);
            match token {
                Token::Identifier => {
                    values.push(text.to_string());
                    match self.peek(Context::Word) {
                        (Token::Comma, _) => {}
                        (Token::CloseParen, _) => {
                            self.next(Context::Word);
                            return Ok(values);
                        }
                        (_, other) => return Err(format!("found '{other}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // A comma with nothing before or after it stands for an empty value.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek(Context::Word).0 {
                        Token::CloseParen => {
                            values.push(String::new());
                            self.next(Context::Word);
                            return Ok(values);
                        }
                        Token::Comma => values.push(String::new()),
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{text}', expected: ',', or identifier")),
            }
        }
    }

    /// Reads the single value after `=`, `==`, `!=`, `>` or `<` (empty when nothing follows).
    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek(Context::Word).0, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next(Context::Word) {
            (Token::Identifier, text) => Ok(vec![text.to_string()]),
            (_, text) => Err(format!("found '{text}', expected: identifier")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Label key and value validation (upstream's IsQualifiedName / IsValidLabelValue)
// ---------------------------------------------------------------------------------------------

/// Why `key` is not a valid label key (`[prefix/]name`), as upstream words it; empty if valid.
pub fn label_key_errors(key: &str) -> Vec<String> {
    names::is_qualified_name(key)
}

/// Why `value` is not a valid label value, as upstream words it; empty if valid.
pub fn label_value_errors(value: &str) -> Vec<String> {
    names::is_valid_label_value(value)
}

/// An "Invalid value" field error message: `path: Invalid value: <value>: detail`.
fn invalid(path: &str, rendered_value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {rendered_value}: {detail}")
}

/// Joins error messages as upstream's aggregate error does: one alone, several in brackets,
/// duplicates dropped.
fn aggregate(messages: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::with_capacity(messages.len());
    for message in messages {
        if !unique.contains(&message) {
            unique.push(message);
        }
    }
    match unique.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", unique.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// One `field=value` or `field!=value` term of a field selector (`==` is the same as `=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    field: String,
    value: String,
    negated: bool,
}

impl FieldRequirement {
    /// The field label as written by the client (e.g. `spec.nodeName`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The unescaped value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// True for `!=`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "!=" } else { "=" };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// A parsed field selector: terms ANDed together, in sorted order as upstream keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the `fieldSelector` syntax (upstream's `fields.ParseSelector`): comma-separated
    /// `field=value`, `field==value` or `field!=value` terms; values may escape `\`, `,` and `=`
    /// with a backslash, and must escape `,` and `=`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut terms = split_field_terms(input);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, negated, raw_value)) = split_field_term(term) else {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                )));
            };
            let value = unescape_field_value(raw_value)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                value,
                negated,
            });
        }
        Ok(Self { requirements })
    }

    /// True when the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value `field` must equal, if some `=` term pins it (e.g. `metadata.name` for
    /// `kubectl get x --watch` by name).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| !r.negated && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Checks that every field is supported for `kind` of `group`, returning upstream's message
    /// for the first one that is not (e.g. `field label not supported: spec.foo`).
    pub fn validate_for(&self, group: &str, kind: &str) -> Result<(), String> {
        let spec = field_spec(group, kind);
        let custom = custom_fields(group, kind);
        for requirement in &self.requirements {
            if custom.contains(&requirement.field) {
                continue;
            }
            if spec.canonical(&requirement.field).is_none() {
                return Err(spec.rejection(&requirement.field));
            }
        }
        Ok(())
    }

    /// Whether `object` (a `kind` of `group`, as JSON) satisfies every term. A field's value is
    /// computed as upstream's registry does: absent strings are `""`, booleans `true`/`false`,
    /// counts decimal; an unsupported field reads as `""`.
    pub fn matches(&self, group: &str, kind: &str, object: &Value) -> bool {
        let spec = field_spec(group, kind);
        let custom = custom_fields(group, kind);
        self.requirements.iter().all(|requirement| {
            let value = if custom.contains(&requirement.field) {
                selectable_value(object, &requirement.field)
            } else {
                spec.canonical(&requirement.field)
                    .map(|canonical| field_value(group, kind, object, canonical))
                    .unwrap_or_default()
            };
            (value == requirement.value) != requirement.negated
        })
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    /// The terms joined by `,`, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes [`escape_field_value`]; unescaped `,`/`=` and unknown escapes are errors.
pub fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::new(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => {
                // Upstream prints the rune's code point.
                return Err(SelectorError::new(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if escaped {
        return Err(SelectorError::new(
            "invalid field selector: invalid escape sequence: \\",
        ));
    }
    Ok(out)
}

/// Splits on commas not escaped by a backslash (the backslash is kept).
fn split_field_terms(input: &str) -> Vec<&str> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&input[start..i]);
            start = i + 1;
        }
    }
    terms.push(&input[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, `==`, then `=` at each position).
fn split_field_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], negated, value));
            }
        }
    }
    None
}

/// How a kind rejects an unsupported field label.
#[derive(Clone, Copy)]
enum Rejection {
    /// `field label not supported: X` (kinds with their own conversion function).
    NotSupported,
    /// `field label "X" not supported for Job` (batch/v1 Job).
    Job,
    /// `"X" is not a known field selector: only "metadata.name", "metadata.namespace"`
    /// (every kind without a conversion function).
    Default,
}

/// The field labels a kind accepts: `(label as sent, canonical label)`.
struct FieldSpec {
    accepted: &'static [(&'static str, &'static str)],
    rejection: Rejection,
}

impl FieldSpec {
    fn canonical(&self, label: &str) -> Option<&'static str> {
        self.accepted.iter().find(|(l, _)| *l == label).map(|(_, c)| *c)
    }

    fn rejection(&self, label: &str) -> String {
        match self.rejection {
            Rejection::NotSupported => format!("field label not supported: {label}"),
            Rejection::Job => format!("field label {} not supported for Job", go_quote(label)),
            Rejection::Default => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(label)
            ),
        }
    }
}

/// Shorthand for a label accepted unchanged.
macro_rules! same {
    ($($label:literal),* $(,)?) => { &[$(($label, $label)),*] };
}

const META_FIELDS: &[(&str, &str)] = same!["metadata.name", "metadata.namespace"];

const POD_FIELDS: &[(&str, &str)] = &[
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
    ("spec.nodeName", "spec.nodeName"),
    ("spec.restartPolicy", "spec.restartPolicy"),
    ("spec.schedulerName", "spec.schedulerName"),
    ("spec.serviceAccountName", "spec.serviceAccountName"),
    ("spec.hostNetwork", "spec.hostNetwork"),
    ("status.phase", "status.phase"),
    ("status.podIP", "status.podIP"),
    ("status.podIPs", "status.podIPs"),
    ("status.nominatedNodeName", "status.nominatedNodeName"),
    // Legacy spelling from old clients.
    ("spec.host", "spec.nodeName"),
];

const CORE_EVENT_FIELDS: &[(&str, &str)] = same![
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// events.k8s.io spellings, mapped onto the core Event's selectable fields.
const EVENTS_API_FIELDS: &[(&str, &str)] = &[
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    ("regarding.resourceVersion", "involvedObject.resourceVersion"),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("source", "source"),
    ("type", "type"),
    ("metadata.namespace", "metadata.namespace"),
    ("metadata.name", "metadata.name"),
];

/// The `selectableFields` of custom kinds, by (group, kind): field labels such as
/// `spec.color` (their `jsonPath` without the leading dot).
type CustomFields = std::collections::HashMap<(String, String), Arc<Vec<String>>>;

static CUSTOM_FIELDS: RwLock<Option<Arc<CustomFields>>> = RwLock::new(None);

/// Publishes the selectable fields of the custom kinds served now (replacing the ones before).
pub fn set_custom_fields(fields: CustomFields) {
    let fields = Some(Arc::new(fields));
    match CUSTOM_FIELDS.write() {
        Ok(mut guard) => *guard = fields,
        Err(poisoned) => *poisoned.into_inner() = fields,
    }
}

/// The selectable fields of custom kind `kind` of `group` (none for other kinds).
fn custom_fields(group: &str, kind: &str) -> Arc<Vec<String>> {
    let all = match CUSTOM_FIELDS.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    all.and_then(|m| m.get(&(group.to_string(), kind.to_string())).cloned())
        .unwrap_or_default()
}

/// A selectable field's value as upstream compares it: a string as it is, an integer in
/// decimal, a boolean as `true`/`false`; absent (or anything else) is `""`.
fn selectable_value(object: &Value, label: &str) -> String {
    let mut at = object;
    for part in label.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return String::new(),
        }
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn field_spec(group: &str, kind: &str) -> FieldSpec {
    let (accepted, rejection): (&'static [(&'static str, &'static str)], Rejection) = match (group, kind) {
        ("", "Pod") => (POD_FIELDS, Rejection::NotSupported),
        ("", "Node") => (same!["metadata.name", "spec.unschedulable"], Rejection::NotSupported),
        ("", "ReplicationController") => (
            same!["metadata.name", "metadata.namespace", "status.replicas"],
            Rejection::NotSupported,
        ),
        ("", "Event") => (CORE_EVENT_FIELDS, Rejection::NotSupported),
        ("", "Namespace") => (same!["status.phase", "metadata.name"], Rejection::NotSupported),
        ("", "Secret") => (
            same!["type", "metadata.namespace", "metadata.name"],
            Rejection::NotSupported,
        ),
        ("", "Service") => (
            same!["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"],
            Rejection::NotSupported,
        ),
        ("batch", "Job") => (
            same!["metadata.name", "metadata.namespace", "status.successful"],
            Rejection::Job,
        ),
        ("events.k8s.io", "Event") => (EVENTS_API_FIELDS, Rejection::NotSupported),
        _ => (META_FIELDS, Rejection::Default),
    };
    FieldSpec { accepted, rejection }
}

/// The value of a canonical field label on an object, as upstream's `ToSelectableFields`.
fn field_value(group: &str, kind: &str, object: &Value, canonical: &str) -> String {
    let text = |path: &str| str_at(object, path).to_string();
    match (group, kind, canonical) {
        (_, _, "metadata.name") => text("metadata.name"),
        (_, _, "metadata.namespace") => {
            // Cluster-scoped kinds have no namespace field to select on.
            let namespaced = catalogue::find_kind(group, kind).is_none_or(|r| r.namespaced);
            if namespaced {
                text("metadata.namespace")
            } else {
                String::new()
            }
        }
        ("", "Pod", "spec.hostNetwork") => bool_at(object, "spec.hostNetwork").to_string(),
        ("", "Pod", "status.podIP") => pod_ip(object).to_string(),
        // Accepted but never filled in upstream, so it only matches the empty value.
        ("", "Pod", "status.podIPs") => String::new(),
        ("", "Node", "spec.unschedulable") => bool_at(object, "spec.unschedulable").to_string(),
        ("", "ReplicationController", "status.replicas") => int_at(object, "status.replicas").to_string(),
        ("batch", "Job", "status.successful") => int_at(object, "status.succeeded").to_string(),
        ("", "Event", _) | ("events.k8s.io", "Event", _) => event_field(object, canonical),
        _ => text(canonical),
    }
}

/// The first pod IP (`status.podIPs[0].ip`, else the legacy `status.podIP`).
fn pod_ip(object: &Value) -> &str {
    let first = list_at(object, "status.podIPs")
        .first()
        .map(|ip| str_at(ip, "ip"))
        .unwrap_or_default();
    if first.is_empty() {
        str_at(object, "status.podIP")
    } else {
        first
    }
}

/// A core/v1 or events.k8s.io/v1 Event field under its core name.
fn event_field(object: &Value, canonical: &str) -> String {
    let either = |core: &str, events_api: &str| {
        let value = str_at(object, core);
        if value.is_empty() {
            str_at(object, events_api)
        } else {
            value
        }
    };
    if let Some(sub) = canonical.strip_prefix("involvedObject.") {
        return either(&format!("involvedObject.{sub}"), &format!("regarding.{sub}")).to_string();
    }
    let reporting = either("reportingComponent", "reportingController");
    match canonical {
        "reportingComponent" => reporting.to_string(),
        "source" => {
            let component = either("source.component", "deprecatedSource.component");
            if component.is_empty() {
                reporting.to_string()
            } else {
                component.to_string()
            }
        }
        other => str_at(object, other).to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers (shared with the table printers)
// ---------------------------------------------------------------------------------------------

/// Reading fields of JSON objects by dotted path, with upstream's zero values for anything
/// missing or of the wrong type. Path segments cannot contain dots (read annotation and label
/// keys with `get`).
pub(crate) mod json {
    use serde_json::Value;

    static NULL: Value = Value::Null;

    /// The value at a dotted path, or `null`.
    pub(crate) fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
        path.split('.').try_fold(value, |v, key| v.get(key)).unwrap_or(&NULL)
    }

    /// The string at a path, `""` when absent.
    pub(crate) fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
        at(value, path).as_str().unwrap_or_default()
    }

    /// The boolean at a path, `false` when absent.
    pub(crate) fn bool_at(value: &Value, path: &str) -> bool {
        at(value, path).as_bool().unwrap_or_default()
    }

    /// The integer at a path, `0` when absent.
    pub(crate) fn int_at(value: &Value, path: &str) -> i64 {
        at(value, path).as_i64().unwrap_or_default()
    }

    /// The array at a path, empty when absent.
    pub(crate) fn list_at<'a>(value: &'a Value, path: &str) -> &'a [Value] {
        at(value, path).as_array().map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parses_and_prints_canonical_form() {
        let cases = [
            ("", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("x", "x"),
            ("!x", "!x"),
            ("  x  =  a  ", "x=a"),
            ("b=1,a=2", "a=2,b=1"),
            ("x in (c,b,a)", "x in (a,b,c)"),
            ("x in (a,a,b)", "x in (a,b)"),
            ("x notin (a)", "x notin (a)"),
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,)", "x in (,a)"),
            ("x=", "x="),
            ("x=,y", "x=,y"),
            ("x>1", "x>1"),
            ("x<10", "x<10"),
            ("in in (in)", "in in (in)"),
            ("notin=notin", "notin=notin"),
            ("example.com/app=web,tier", "example.com/app=web,tier"),
            ("z,!y,x in (b),w notin (q)", "w notin (q),x in (b),!y,z"),
            ("\tk\n=\rv", "k=v"),
        ];
        for (input, want) in cases {
            let selector = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(selector.to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn parse_errors_match_upstream() {
        let name_regex = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let value_regex = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
        let cases: Vec<(&str, String)> = vec![
            ("x=a,", "found '', expected: identifier after ','".into()),
            (",", "found ',', expected: !, identifier, or 'end of string'".into()),
            ("=a", "found '=', expected: !, identifier, or 'end of string'".into()),
            ("x y", "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("x in a", "unable to parse requirement: found 'a' expected: '('".into()),
            ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'".into()),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'".into()),
            ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier".into()),
            ("x in (a,=)", "unable to parse requirement: found '=', expected: ',', or identifier".into()),
            ("x==(", "unable to parse requirement: found '(', expected: identifier".into()),
            ("!", "unable to parse requirement: found '', expected: identifier".into()),
            ("!x=a", "found '=', expected: ',' or 'end of string'".into()),
            ("x=a b", "found 'b', expected: ',' or 'end of string'".into()),
            ("-x", format!("unable to parse requirement: <nil>: Invalid value: \"-x\": {name_regex}")),
            (
                "a/b/c",
                "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into(),
            ),
            (
                "/x",
                "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part must be non-empty".into(),
            ),
            (
                "x=-a",
                format!("unable to parse requirement: values[0][x]: Invalid value: \"-a\": {value_regex}"),
            ),
            (
                "x>a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
            ),
            (
                "x>a.",
                format!(
                    "unable to parse requirement: [values[0]: Invalid value: \"a.\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: \"a.\": {value_regex}]"
                ),
            ),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn long_keys_and_values_are_rejected() {
        let long = "a".repeat(64);
        let err = LabelSelector::parse(&long).unwrap_err().to_string();
        assert!(err.ends_with("name part must be no more than 63 characters"), "{err}");
        let err = LabelSelector::parse(&format!("k={long}")).unwrap_err().to_string();
        assert!(err.contains("must be no more than 63 characters"), "{err}");
        let err = LabelSelector::parse("Example.com/x").unwrap_err().to_string();
        assert!(err.contains("prefix part a lowercase RFC 1123 subdomain"), "{err}");
        assert!(LabelSelector::parse(&format!("{}/x", "a.".repeat(63) + "a")).is_ok());
    }

    #[test]
    fn matching_follows_operator_semantics() {
        let l = labels(json!({"app": "web", "tier": "front", "n": "5", "weird": 7}));
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db,web)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("missing notin (db)", true),
            ("app notin (web)", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("app>1", false),
            ("missing<1", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("weird", false),
        ];
        for (input, want) in cases {
            let selector = LabelSelector::parse(input).unwrap();
            assert_eq!(selector.matches(&l), want, "selector {input:?}");
        }
        assert!(LabelSelector::parse("!app").unwrap().matches(&Map::new()));
    }

    #[test]
    fn metav1_conversion() {
        let cases = [
            (json!({}), "", true),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2", true),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}),
                "env in (dev,prod)",
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}),
                "env notin (prod)",
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                "app",
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}),
                "!app",
                false,
            ),
            (
                json!({"matchLabels": {"z": "1"}, "matchExpressions": [{"key": "a", "operator": "Exists"}]}),
                "a,z=1",
                false,
            ),
        ];
        let object_labels = labels(json!({"app": "x", "env": "dev", "a": "1", "b": "2", "z": "2"}));
        for (input, want, matches) in cases {
            let selector = LabelSelector::from_api(&input).unwrap();
            assert_eq!(selector.to_string(), want, "{input}");
            assert_eq!(selector.matches(&object_labels), matches, "{input}");
        }
        let nothing = LabelSelector::from_api(&Value::Null).unwrap();
        assert!(nothing.matches_nothing());
        assert!(!nothing.matches(&Map::new()));
        assert_eq!(nothing.to_string(), "");
        assert!(LabelSelector::from_api(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn metav1_conversion_errors() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "\"Equals\" is not a valid pod selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchLabels": {"a b": "x"}}),
                "key: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
        ];
        for (input, want) in cases {
            let err = LabelSelector::from_api(&input).unwrap_err();
            assert_eq!(err.to_string(), want, "{input}");
        }
        assert!(LabelSelector::from_api(&json!("app=x")).is_err());
    }

    #[test]
    fn selector_helpers() {
        let selector = LabelSelector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
        assert_eq!(selector.requires_exact_match("a"), Some("1"));
        assert_eq!(selector.requires_exact_match("b"), Some("2"));
        assert_eq!(selector.requires_exact_match("c"), None);
        assert_eq!(selector.requires_exact_match("d"), None);
        assert_eq!(selector.requirements().len(), 4);
        let from_map = LabelSelector::from_map(&labels(json!({"b": "2", "a": "1"})));
        assert_eq!(from_map.to_string(), "a=1,b=2");
        assert!(from_map.matches_object(&json!({"metadata": {"labels": {"a": "1", "b": "2"}}})));
        assert!(!from_map.matches_object(&json!({"metadata": {}})));
        assert!(LabelSelector::everything().matches_object(&json!({})));
        assert!("a=b".parse::<LabelSelector>().is_ok());
    }

    #[test]
    fn field_selector_parse_and_print() {
        let cases = [
            ("", ""),
            ("metadata.name=x", "metadata.name=x"),
            ("metadata.name==x", "metadata.name=x"),
            ("metadata.name!=x", "metadata.name!=x"),
            ("b=1,a=2", "a=2,b=1"),
            ("a=1,,b=2", "a=1,b=2"),
            ("a=", "a="),
            ("a=x\\,y", "a=x\\,y"),
            ("a=x\\=y\\\\", "a=x\\=y\\\\"),
        ];
        for (input, want) in cases {
            let selector = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(selector.to_string(), want, "{input}");
        }
        let selector = FieldSelector::parse("a=x\\,y,b!=\\=").unwrap();
        assert_eq!(selector.requirements()[0].value(), "x,y");
        assert_eq!(selector.requirements()[1].value(), "=");
        assert!(selector.requirements()[1].is_negated());
        assert_eq!(selector.requires_exact_match("a"), Some("x,y"));
        assert_eq!(selector.requires_exact_match("b"), None);
    }

    #[test]
    fn field_selector_parse_errors() {
        let cases = [
            ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
            ("a=b,foo", "invalid selector: 'a=b,foo'; can't understand 'foo'"),
            ("a=b=c", "invalid field selector: unescaped character in value: 61"),
            ("a=\\x", "invalid field selector: invalid escape sequence: \\x"),
            ("a=x\\", "invalid field selector: invalid escape sequence: \\"),
        ];
        for (input, want) in cases {
            assert_eq!(FieldSelector::parse(input).unwrap_err().to_string(), want, "{input}");
        }
    }

    #[test]
    fn field_selector_validation_per_kind() {
        let cases = [
            ("", "Pod", "spec.nodeName=n1,status.phase=Running,spec.host=x", None),
            ("", "Pod", "spec.foo=x", Some("field label not supported: spec.foo")),
            ("", "Node", "spec.unschedulable=true,metadata.name=a", None),
            (
                "",
                "Node",
                "metadata.namespace=x",
                Some("field label not supported: metadata.namespace"),
            ),
            ("", "Namespace", "status.phase=Active", None),
            ("", "Secret", "type=Opaque", None),
            ("", "Service", "spec.type=ClusterIP,spec.clusterIP=None", None),
            ("", "ReplicationController", "status.replicas=1", None),
            (
                "",
                "Event",
                "involvedObject.kind=Pod,reason=X,source=s,reportingComponent=c",
                None,
            ),
            (
                "",
                "Event",
                "regarding.kind=Pod",
                Some("field label not supported: regarding.kind"),
            ),
            (
                "events.k8s.io",
                "Event",
                "regarding.kind=Pod,reportingController=c,type=Normal",
                None,
            ),
            (
                "events.k8s.io",
                "Event",
                "involvedObject.kind=Pod",
                Some("field label not supported: involvedObject.kind"),
            ),
            ("batch", "Job", "status.successful=1", None),
            (
                "batch",
                "Job",
                "status.failed=1",
                Some("field label \"status.failed\" not supported for Job"),
            ),
            ("apps", "DaemonSet", "metadata.name=a,metadata.namespace=b", None),
            (
                "apps",
                "ReplicaSet",
                "status.replicas=1",
                Some(
                    "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                ),
            ),
            (
                "",
                "ConfigMap",
                "foo=bar",
                Some("\"foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
            ),
            ("storage.k8s.io", "StorageClass", "metadata.namespace=", None),
        ];
        for (group, kind, input, want) in cases {
            let selector = FieldSelector::parse(input).unwrap();
            assert_eq!(
                selector.validate_for(group, kind).err().as_deref(),
                want,
                "{kind} {input}"
            );
        }
    }

    #[test]
    fn field_selector_matching() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]},
        });
        let cases = [
            ("metadata.name=p", true),
            ("metadata.name=q", false),
            ("metadata.namespace=ns,metadata.name=p", true),
            ("spec.nodeName=n1", true),
            ("spec.host=n1", true),
            ("spec.nodeName!=n1", false),
            ("spec.nodeName=", false),
            ("spec.schedulerName=", true),
            ("spec.hostNetwork=true", true),
            ("status.phase=Running", true),
            ("status.podIP=10.0.0.1", true),
            ("status.podIPs=10.0.0.1", false),
            ("status.nominatedNodeName=", true),
        ];
        for (input, want) in cases {
            let selector = FieldSelector::parse(input).unwrap();
            assert_eq!(selector.matches("", "Pod", &pod), want, "{input}");
        }
        let bare_pod = json!({"metadata": {"name": "p"}});
        assert!(
            FieldSelector::parse("spec.hostNetwork=false")
                .unwrap()
                .matches("", "Pod", &bare_pod)
        );
        let node = json!({"metadata": {"name": "n", "namespace": "bogus"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.unschedulable=false")
                .unwrap()
                .matches("", "Node", &node)
        );
        assert!(
            FieldSelector::parse("metadata.namespace=")
                .unwrap()
                .matches("", "Node", &node)
        );
        let job = json!({"status": {"succeeded": 2}});
        assert!(
            FieldSelector::parse("status.successful=2")
                .unwrap()
                .matches("batch", "Job", &job)
        );
        let rc = json!({"status": {}});
        assert!(
            FieldSelector::parse("status.replicas=0")
                .unwrap()
                .matches("", "ReplicationController", &rc)
        );
    }

    #[test]
    fn event_field_selectors_cover_both_groups() {
        let core = json!({
            "involvedObject": {"kind": "DaemonSet", "name": "ds"},
            "reason": "SuccessfulCreate",
            "reportingComponent": "daemonset-controller",
            "source": {},
            "type": "Normal",
        });
        let events_api = json!({
            "regarding": {"kind": "DaemonSet", "name": "ds"},
            "reason": "SuccessfulCreate",
            "reportingController": "daemonset-controller",
            "type": "Normal",
        });
        let core_selector =
            FieldSelector::parse("involvedObject.kind=DaemonSet,involvedObject.name=ds,source=daemonset-controller")
                .unwrap();
        assert!(core_selector.matches("", "Event", &core));
        let api_selector =
            FieldSelector::parse("regarding.kind=DaemonSet,reportingController=daemonset-controller,type=Normal")
                .unwrap();
        assert!(api_selector.matches("events.k8s.io", "Event", &events_api));
        assert!(
            !FieldSelector::parse("type=Warning")
                .unwrap()
                .matches("events.k8s.io", "Event", &events_api)
        );
    }

    #[test]
    fn escape_round_trip() {
        for raw in ["", "plain", "a,b", "a=b", "back\\slash", "\\,=\\"] {
            assert_eq!(unescape_field_value(&escape_field_value(raw)).unwrap(), raw);
        }
    }
}
