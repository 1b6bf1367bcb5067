//! CEL validation rules of custom resources (`x-kubernetes-validations`), as kube-apiserver
//! 1.33 runs them, on the `cel` crate's interpreter.
//!
//! When a definition is written, [`rule_errors`] checks every rule of a schema: that it
//! compiles, that its message, reason and field path are well formed, and that `oldSelf`
//! (a *transition rule*) is only used where old values can be found. When a custom object is
//! written, [`validate`] walks it with its schema and runs the rules of every node that has
//! a value, `self` bound to that value (and `oldSelf` to the same node of the stored object
//! on an update). A rule that fails is reported as upstream reports it:
//! `spec: Invalid value: "object": <message>` (the value is the node's schema type), with
//! `reason` and `fieldPath` honoured, and `<nil>` as the path of a rule on the root.
//!
//! Values are typed by the schema as upstream types them: integers are `int`, `number`
//! fields `double`, declared property names escaped (`namespace` is `self.__namespace__`),
//! and the root and embedded resources show only `apiVersion`, `kind` and `metadata.name` /
//! `generateName`. Besides CEL's standard library, the strings extension and Kubernetes'
//! list (`isSorted`, `sum`, `min`, `max`) and regex (`find`, `findAll`) functions are there.
//!
//! Cost: a rule is not run when the size of its value raised to the depth of its nested
//! comprehensions could pass upstream's per-call limit (1,000,000); it fails with
//! upstream's cost error instead. What is not done as upstream: there is no type checker (a
//! misspelt field is found when the rule runs, not when the definition is written), the cost
//! is estimated when the rule runs, not when the definition is written, and there are no
//! `duration`/`timestamp` values. A rule that does not use `oldSelf` and fails on a value
//! the update did not change is not reported (upstream's ratcheting, GA in 1.33).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cel::extractors::This;
use cel::objects::{Key, Map as CelMap, OptionalValue};
use cel::{Context, Env, ExecutionError, FunctionContext, Program, Value as Cel};
use serde_json::{Map, Value};

use crate::field::FieldError;
use crate::structural::MAX_DEPTH;
use crate::validation::{Errs, Path, invalid, invalid_raw, not_supported, required};

/// Extension holding a schema node's rules.
pub const VALIDATIONS_EXT: &str = "x-kubernetes-validations";

/// The reasons a rule may give, as upstream accepts them.
const REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// Longest message a `messageExpression` may produce (upstream's 5 KiB).
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// Longest rule source compiled.
const MAX_RULE_BYTES: usize = 64 * 1024;

/// The deepest expression accepted: deeper ones could exhaust a thread's stack when they
/// run (cel-go's parser stops at 250 levels of nesting; real rules nest a few).
const MAX_AST_DEPTH: usize = 100;

/// The stack of the thread that compiles: room to parse and drop any expression within
/// [`MAX_RULE_BYTES`].
const COMPILE_STACK: usize = 256 << 20;

/// How many compiled rules are kept.
const CACHE_LIMIT: usize = 1024;

/// A compiled rule or message expression.
struct Compiled {
    program: Program,
    uses_old_self: bool,
    /// How deeply its comprehensions (`all`, `exists`, `map`, `filter`) nest.
    loops: u32,
}

/// Upstream's cost limit of one evaluation. shoal estimates the cost before evaluating, as
/// the size of the value raised to how deeply the expression's comprehensions nest (each
/// level may walk every element), and refuses what could exceed it.
const PER_CALL_LIMIT: f64 = 1_000_000.0;

/// The sub-expressions of `e`.
fn children(e: &cel::IdedExpr) -> Vec<&cel::IdedExpr> {
    use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr};
    fn entries(entries: &[IdedEntryExpr]) -> Vec<&cel::IdedExpr> {
        entries
            .iter()
            .flat_map(|en| match &en.expr {
                EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
                EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect()
    }
    match &e.expr {
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Expr::Call(call) => call.target.iter().map(|t| &**t).chain(call.args.iter()).collect(),
        Expr::Select(sel) => vec![&sel.operand],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => entries(&map.entries),
        Expr::Struct(st) => entries(&st.entries),
        _ => Vec::new(),
    }
}

/// How deeply `e` nests, counted up to `limit` (a deeper one answers `limit`).
fn ast_depth(e: &cel::IdedExpr, limit: usize) -> usize {
    if limit <= 1 {
        return 1;
    }
    1 + children(e)
        .into_iter()
        .map(|c| ast_depth(c, limit - 1))
        .max()
        .unwrap_or(0)
}

/// How deeply comprehensions nest in `e` (an expression no deeper than [`MAX_AST_DEPTH`]).
fn loop_depth(e: &cel::IdedExpr) -> u32 {
    let deepest = |items: Vec<&cel::IdedExpr>| items.into_iter().map(loop_depth).max().unwrap_or(0);
    match &e.expr {
        cel::common::ast::Expr::Comprehension(c) => {
            let inner = deepest(vec![&c.loop_cond, &c.loop_step, &c.result]);
            (inner + 1).max(deepest(vec![&c.iter_range, &c.accu_init]))
        }
        _ => deepest(children(e)),
    }
}

/// How many JSON values `v` holds (itself included), counted up to a bound.
fn size_of(v: &Value, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return 1;
    }
    1 + match v {
        Value::Array(items) => items.iter().map(|i| size_of(i, depth + 1)).sum(),
        Value::Object(map) => map.values().map(|i| size_of(i, depth + 1)).sum(),
        _ => 0,
    }
}

/// Whether evaluating a program with `loops` nested comprehensions over values of `size`
/// could exceed the per-call limit.
fn too_costly(loops: u32, size: usize) -> bool {
    loops >= 1 && (size as f64).powi(loops as i32) > PER_CALL_LIMIT
}

/// Upstream's error for a rule over its cost limit.
const COST_ERROR: &str = "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule";

/// The environment rules compile and run in: CEL's standard library and the strings
/// extension (the Kubernetes functions are added to each run's context).
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Only fails on a name declared twice, which a fresh standard library does not.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
}

/// Compiles `source` once: the programs of the rules in use are kept.
fn compile(source: &str) -> Result<Arc<Compiled>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Compiled>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(source) {
        return Ok(hit.clone());
    }
    if source.len() > MAX_RULE_BYTES {
        return Err(format!("must be no more than {MAX_RULE_BYTES} bytes"));
    }
    // Parsing (and dropping) an expression recurses as deep as it nests: that happens on a
    // thread with room for any expression under the size limit, and only an expression
    // shallow enough to evaluate on any thread comes back.
    let src = source.to_string();
    let built = std::thread::Builder::new()
        .name("cel-compile".into())
        .stack_size(COMPILE_STACK)
        .spawn(move || -> Result<Compiled, String> {
            let program = env().compile(&src).map_err(|e| e.to_string())?;
            if ast_depth(program.expression(), MAX_AST_DEPTH + 1) > MAX_AST_DEPTH {
                return Err(format!(
                    "expression nested too deeply: more than {MAX_AST_DEPTH} levels"
                ));
            }
            let uses_old_self = program.references().has_variable("oldSelf");
            let loops = loop_depth(program.expression());
            Ok(Compiled {
                program,
                uses_old_self,
                loops,
            })
        })
        .map_err(|e| format!("compilation failed to start: {e}"))?
        .join()
        .map_err(|_| "compilation failed".to_string())??;
    let compiled = Arc::new(built);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(source.to_string(), compiled.clone());
    Ok(compiled)
}

// ---------------------------------------------------------------------------------------
// Definition time

/// What is wrong with the rules of `schema` (a version's `openAPIV3Schema` at `p`).
pub fn rule_errors(schema: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Errs::new();
    check_rules(&mut errs, schema, &Path::new(p), None, 0);
    errs
}

/// `uncorrelatable`: the path of the list (not keyed by map keys) this node is inside, where
/// old values cannot be found.
fn check_rules(errs: &mut Errs, s: &Value, p: &Path, uncorrelatable: Option<&str>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for (i, rule) in s
        .get(VALIDATIONS_EXT)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        check_rule(errs, s, rule, &p.child(VALIDATIONS_EXT).index(i), uncorrelatable);
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            check_rules(errs, sub, &p.child("properties").key(k), uncorrelatable, depth + 1);
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        let keyed = s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
        let within = match (uncorrelatable, keyed) {
            (Some(u), _) => Some(u.to_string()),
            (None, true) => None,
            (None, false) => Some(p.s().to_string()),
        };
        check_rules(errs, items, &p.child("items"), within.as_deref(), depth + 1);
    }
    if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
        check_rules(errs, extra, &p.child("additionalProperties"), uncorrelatable, depth + 1);
    }
}

/// Go's `%#v` of an `apiextensions.ValidationRule`, as upstream prints a rule that fails to
/// compile.
fn go_rule(rule: &Value) -> String {
    let s = |k: &str| serde_json::to_string(rule[k].as_str().unwrap_or_default()).unwrap_or_default();
    let reason = match rule["reason"].as_str() {
        Some(r) => format!(
            "(*apiextensions.FieldValueErrorReason)({})",
            serde_json::to_string(r).unwrap_or_default()
        ),
        None => "(*apiextensions.FieldValueErrorReason)(nil)".into(),
    };
    let optional = match rule["optionalOldSelf"].as_bool() {
        Some(b) => format!("(*bool)({b})"),
        None => "(*bool)(nil)".into(),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{optional}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        s("fieldPath"),
    )
}

fn check_rule(errs: &mut Errs, s: &Value, rule: &Value, p: &Path, uncorrelatable: Option<&str>) {
    let source = rule["rule"].as_str().unwrap_or_default();
    if source.trim().is_empty() {
        required(errs, &p.child("rule"), "rule is not specified");
    } else {
        match compile(source) {
            Err(e) => invalid_raw(
                errs,
                &p.child("rule"),
                go_rule(rule),
                &format!("compilation failed: {e}"),
            ),
            Ok(c) => {
                if c.uses_old_self
                    && let Some(within) = uncorrelatable
                {
                    invalid(
                        errs,
                        &p.child("rule"),
                        source,
                        format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"),
                    );
                }
                if rule["optionalOldSelf"] == true && !c.uses_old_self {
                    invalid(
                        errs,
                        &p.child("optionalOldSelf"),
                        true,
                        "may not be set if oldSelf is not used in rule",
                    );
                }
            }
        }
    }
    if let Some(message) = rule.get("message").and_then(Value::as_str) {
        if message.trim().is_empty() {
            invalid(
                errs,
                &p.child("message"),
                message,
                "message must be non-empty if specified",
            );
        } else if message.contains('\n') {
            invalid(
                errs,
                &p.child("message"),
                message,
                "message must not contain line breaks",
            );
        }
    } else if source.contains('\n') && rule.get("messageExpression").is_none() {
        required(
            errs,
            &p.child("message"),
            "message must be specified if rule contains line breaks",
        );
    }
    if let Some(expr) = rule.get("messageExpression").and_then(Value::as_str) {
        if expr.trim().is_empty() {
            required(
                errs,
                &p.child("messageExpression"),
                "messageExpression must be non-empty if specified",
            );
        } else if let Err(e) = compile(expr) {
            invalid_raw(
                errs,
                &p.child("messageExpression"),
                go_rule(rule),
                &format!("messageExpression compilation failed: {e}"),
            );
        }
    }
    if let Some(reason) = rule.get("reason").and_then(Value::as_str)
        && !REASONS.contains(&reason)
    {
        not_supported(errs, &p.child("reason"), reason, REASONS);
    }
    if let Some(field_path) = rule.get("fieldPath").and_then(Value::as_str)
        && field_path_segments(field_path).is_none_or(|segs| !declared(s, &segs))
    {
        invalid(
            errs,
            &p.child("fieldPath"),
            field_path,
            "fieldPath must be a valid path",
        );
    }
}

/// The segments of a rule's `fieldPath` (`.spec.replicas`, `.labels['app.kubernetes.io/x']`);
/// `None` if it does not parse.
fn field_path_segments(path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']")?;
            out.push(after[..end].to_string());
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            out.push(name.to_string());
            rest = &after[end..];
        } else {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// True if the schema declares the field `segments` name (a map accepts any key).
fn declared(s: &Value, segments: &[String]) -> bool {
    let mut node = s;
    for seg in segments {
        node = match (
            node.get("properties").and_then(|p| p.get(seg)),
            node.get("additionalProperties"),
        ) {
            (Some(sub), _) => sub,
            (None, Some(extra)) if extra.is_object() => extra,
            _ => return false,
        };
    }
    true
}

// ---------------------------------------------------------------------------------------
// Write time

/// What in custom object `obj` breaks the rules of its schema; `old` is the stored object on
/// an update (for transition rules and ratcheting).
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Errs::new();
    walk(&mut errs, schema, obj, old, &Path::new(""), Node::Resource, 0);
    errs
}

/// What a schema node is, for how its value is shown to rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    /// The root or an embedded resource: only its type meta and name are visible.
    Resource,
    Other,
}

fn node_kind(s: &Value) -> Node {
    match s.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true)) {
        true => Node::Resource,
        false => Node::Other,
    }
}

fn walk(errs: &mut Errs, s: &Value, v: &Value, old: Option<&Value>, p: &Path, node: Node, depth: usize) {
    if depth > MAX_DEPTH || v.is_null() {
        return;
    }
    if let Some(rules) = s.get(VALIDATIONS_EXT).and_then(Value::as_array) {
        for rule in rules {
            run_rule(errs, s, rule, v, old, p, node);
        }
    }
    match v {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                if node == Node::Resource && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let (sub, at) = match (props.and_then(|ps| ps.get(k)), extra) {
                    (Some(sub), _) => (sub, p.child(k)),
                    (None, Some(extra)) => (extra, p.key(k)),
                    _ => continue,
                };
                let old_child = old.and_then(|o| o.get(k));
                walk(errs, sub, child, old_child, &at, node_kind(sub), depth + 1);
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = s.get("items") else { return };
            let keys: Vec<&str> = match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect(),
                _ => Vec::new(),
            };
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                // Old items are found by their map keys, and only in lists keyed by them.
                let old_item = (!keys.is_empty())
                    .then(|| {
                        old_items?
                            .iter()
                            .find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
                    })
                    .flatten();
                walk(
                    errs,
                    item_schema,
                    item,
                    old_item,
                    &p.index(i),
                    node_kind(item_schema),
                    depth + 1,
                );
            }
        }
        _ => {}
    }
}

/// The schema type a failed rule reports as its value (`"object"`; empty when untyped).
fn type_name(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn run_rule(errs: &mut Errs, s: &Value, rule: &Value, v: &Value, old: Option<&Value>, p: &Path, node: Node) {
    let Some(source) = rule["rule"].as_str() else { return };
    let Ok(compiled) = compile(source) else {
        // The definition was refused with it; nothing to run.
        return;
    };
    let optional_old = rule["optionalOldSelf"] == true;
    if compiled.uses_old_self && old.is_none() && !optional_old {
        return;
    }
    // Ratcheting: an unchanged value keeps passing the rules it passed (or not) before.
    if !compiled.uses_old_self && old == Some(v) {
        return;
    }
    if too_costly(compiled.loops, size_of(v, 0)) {
        errs.push(FieldError::invalid(
            shown(p),
            Value::String(type_name(s).into()),
            format!("{COST_ERROR}: {}", source.trim()),
        ));
        return;
    }
    let self_value = to_cel(s, v, node, 0);
    let old_value = old.map(|o| to_cel(s, o, node, 0));
    let mut ctx = context();
    ctx.add_variable_from_value("self", self_value.clone());
    match (&old_value, optional_old) {
        (Some(o), false) => ctx.add_variable_from_value("oldSelf", o.clone()),
        (o, true) => {
            let optional = match o {
                Some(o) => OptionalValue::of(o.clone()),
                None => OptionalValue::none(),
            };
            ctx.add_variable_from_value("oldSelf", Cel::Opaque(Arc::new(optional)));
        }
        (None, false) => {}
    }
    let message = rule["message"].as_str().map(str::trim).filter(|m| !m.is_empty());
    let at = field_path(p, rule["fieldPath"].as_str());
    let ty = type_name(s);
    match compiled.program.execute(&ctx) {
        Ok(Cel::Bool(true)) => {}
        Ok(Cel::Bool(false)) => {
            let text = rule["messageExpression"]
                .as_str()
                .and_then(|expr| message_of(expr, self_value, old_value))
                .or_else(|| message.map(str::to_string))
                .unwrap_or_else(|| format!("failed rule: {}", source.trim()));
            errs.push(failure(rule["reason"].as_str(), &at, ty, text));
        }
        Ok(other) => errs.push(FieldError::invalid(
            shown(p),
            Value::String(ty.into()),
            format!(
                "rule did not evaluate to a bool ({}) evaluating rule: {}",
                kind_of(&other),
                message.unwrap_or(source.trim())
            ),
        )),
        Err(e) => errs.push(FieldError::invalid(
            shown(p),
            Value::String(ty.into()),
            runtime_error(&e, message.unwrap_or(source.trim())),
        )),
    }
}

/// The path a failure is reported at: the rule's node, then its `fieldPath`.
fn field_path(p: &Path, field_path: Option<&str>) -> String {
    let mut out = p.clone();
    for seg in field_path.and_then(field_path_segments).unwrap_or_default() {
        let plain = seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        out = if plain { out.child(&seg) } else { out.key(&seg) };
    }
    shown(&out)
}

/// A path as upstream prints it: the root (a nil path there) is `<nil>`.
fn shown(p: &Path) -> String {
    match p.s() {
        "" => "<nil>".into(),
        s => s.into(),
    }
}

/// The error of a failed rule, by its `reason`.
fn failure(reason: Option<&str>, at: &str, ty: &str, text: String) -> FieldError {
    let value = Value::String(ty.into());
    match reason {
        Some("FieldValueForbidden") => FieldError::forbidden(at, text),
        Some("FieldValueRequired") => FieldError::required(at, text),
        Some("FieldValueDuplicate") => FieldError::duplicate(at, value),
        _ => FieldError::invalid(at, value, text),
    }
}

/// Upstream's wording of a rule that could not be evaluated.
fn runtime_error(e: &ExecutionError, rule: &str) -> String {
    match runtime_message(e) {
        // cel-go has one "no such overload" for every operator or function that does not
        // take the operands' types.
        m if m == "no such overload" => format!(
            "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {rule}"
        ),
        m => format!("{m} evaluating rule: {rule}"),
    }
}

/// The message a `messageExpression` gives, if it gives a usable one (a non-empty string of
/// one line, at most 5 KiB); otherwise the rule's message is used, as upstream does.
fn message_of(expr: &str, self_value: Cel, old_value: Option<Cel>) -> Option<String> {
    let compiled = compile(expr).ok()?;
    let mut ctx = context();
    ctx.add_variable_from_value("self", self_value);
    if let Some(old) = old_value {
        ctx.add_variable_from_value("oldSelf", old);
    }
    match compiled.program.execute(&ctx) {
        Ok(Cel::String(s)) => {
            let s = s.trim();
            (!s.is_empty() && !s.contains('\n') && s.len() <= MAX_MESSAGE_BYTES).then(|| s.to_string())
        }
        _ => None,
    }
}

fn kind_of(v: &Cel) -> &'static str {
    match v {
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bytes(_) => "bytes",
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Null => "null_type",
        _ => "dyn",
    }
}

// ---------------------------------------------------------------------------------------
// Expressions over objects (admission match conditions and policies)

/// Values bound to names for expressions over whole objects (admission match conditions
/// and policies): JSON values (free-form, no schema), and a policy's `variables`.
pub struct Bindings {
    values: Vec<(String, Cel)>,
    /// How many JSON values the bound values hold (for the cost estimate).
    size: usize,
}

impl Bindings {
    /// `vars`, each name bound to its JSON value.
    pub fn new(vars: &[(&str, &Value)]) -> Bindings {
        let values = vars
            .iter()
            .map(|(name, v)| (name.to_string(), to_cel(&Value::Null, v, Node::Other, 0)))
            .collect();
        let size = vars.iter().map(|(_, v)| size_of(v, 0)).sum();
        Bindings { values, size }
    }

    /// Binds `variables`: a map of each definition's value, evaluated in order (a later one
    /// may use an earlier one as `variables.<name>`). One that fails to evaluate is left out,
    /// so an expression using it fails with the name.
    pub fn with_variables(mut self, definitions: &[(String, String)]) -> Bindings {
        let mut computed: Vec<(String, Cel)> = Vec::new();
        for (name, expr) in definitions {
            let value = self.eval_with(expr, Some(&computed));
            if let Ok(v) = value {
                computed.push((name.clone(), v));
            }
        }
        self.values.push(("variables".into(), map_of(computed)));
        self
    }

    fn eval_with(&self, expr: &str, variables: Option<&[(String, Cel)]>) -> Result<Cel, String> {
        let compiled = compile(expr)?;
        if too_costly(compiled.loops, self.size) {
            return Err("operation cancelled: actual cost limit exceeded".into());
        }
        let mut ctx = context();
        for (name, value) in &self.values {
            ctx.add_variable_from_value(name.as_str(), value.clone());
        }
        if let Some(vars) = variables {
            ctx.add_variable_from_value("variables", map_of(vars.to_vec()));
        }
        compiled.program.execute(&ctx).map_err(|e| runtime_message(&e))
    }

    /// Evaluates `expr`, which must give a bool.
    pub fn eval_bool(&self, expr: &str) -> Result<bool, String> {
        match self.eval_with(expr, None)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!("expression must evaluate to a bool, not {}", kind_of(&other))),
        }
    }

    /// Evaluates `expr` to a string; `None` when it gives null (an audit annotation left out).
    pub fn eval_string(&self, expr: &str) -> Result<Option<String>, String> {
        match self.eval_with(expr, None)? {
            Cel::String(s) => Ok(Some(s.to_string())),
            Cel::Null => Ok(None),
            other => Err(format!("expression must evaluate to a string, not {}", kind_of(&other))),
        }
    }
}

/// Whether `expr` compiles (the error says why not).
pub fn check_expression(expr: &str) -> Result<(), String> {
    compile(expr).map(|_| ())
}

/// An evaluation error in cel-go's words, without the rule (`no such key: x`).
fn runtime_message(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchOverload(_)
        | ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::ValuesNotComparable(..) => "no such overload".into(),
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Values

/// CEL's reserved words: a property of that name is `__name__` in rules.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A declared property's name as rules see it (upstream's escaping); `None` for names CEL
/// cannot select, which rules do not see.
fn escape(name: &str) -> Option<String> {
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        let (piece, len) = if rest.starts_with("__") {
            ("__underscores__", 2)
        } else {
            match rest.as_bytes()[0] {
                b'.' => ("__dot__", 1),
                b'-' => ("__dash__", 1),
                b'/' => ("__slash__", 1),
                c if c.is_ascii_alphanumeric() || c == b'_' => {
                    out.push(c as char);
                    rest = &rest[1..];
                    continue;
                }
                _ => return None,
            }
        };
        out.push_str(piece);
        rest = &rest[len..];
    }
    Some(out)
}

fn string(s: &str) -> Cel {
    Cel::String(Arc::new(s.to_string()))
}

fn map_of(entries: Vec<(String, Cel)>) -> Cel {
    let map: HashMap<Key, Cel> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), v))
        .collect();
    Cel::Map(CelMap { map: Arc::new(map) })
}

/// `v` as rules see it under schema `s`.
fn to_cel(s: &Value, v: &Value, node: Node, depth: usize) -> Cel {
    if depth > MAX_DEPTH {
        return Cel::Null;
    }
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (type_name(s), n.as_i64(), n.as_u64()) {
            ("number", _, _) => Cel::Float(n.as_f64().unwrap_or_default()),
            (_, Some(i), _) => Cel::Int(i),
            (_, None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(text) => string(text),
        Value::Array(items) => {
            let item_schema = s.get("items").unwrap_or(&Value::Null);
            let kind = node_kind(item_schema);
            Cel::List(Arc::new(
                items.iter().map(|i| to_cel(item_schema, i, kind, depth + 1)).collect(),
            ))
        }
        Value::Object(map) => object_to_cel(s, map, node, depth),
    }
}

fn object_to_cel(s: &Value, map: &Map<String, Value>, node: Node, depth: usize) -> Cel {
    let props = s.get("properties").and_then(Value::as_object);
    let extra = s.get("additionalProperties").filter(|a| a.is_object());
    let mut entries = Vec::with_capacity(map.len());
    for (k, v) in map {
        if node == Node::Resource {
            match k.as_str() {
                "apiVersion" | "kind" => {
                    entries.push((k.clone(), to_cel(&Value::Null, v, Node::Other, depth + 1)));
                    continue;
                }
                "metadata" => {
                    let names = ["name", "generateName"]
                        .into_iter()
                        .filter_map(|n| Some((n.to_string(), string(v.get(n)?.as_str()?))))
                        .collect();
                    entries.push((k.clone(), map_of(names)));
                    continue;
                }
                _ => {}
            }
        }
        match (props.and_then(|ps| ps.get(k)), extra) {
            (Some(sub), _) => {
                if let Some(name) = escape(k) {
                    entries.push((name, to_cel(sub, v, node_kind(sub), depth + 1)));
                }
            }
            (None, Some(extra)) => entries.push((k.clone(), to_cel(extra, v, node_kind(extra), depth + 1))),
            // A free-form object (x-kubernetes-preserve-unknown-fields): as it is.
            (None, None) => entries.push((k.clone(), to_cel(&Value::Null, v, Node::Other, depth + 1))),
        }
    }
    map_of(entries)
}

// ---------------------------------------------------------------------------------------
// Kubernetes' functions

/// A context with the Kubernetes library functions on top of the environment.
fn context() -> Context<'static, 'static> {
    let mut ctx = Context::with_env(env().clone());
    // Adding fails only for a name the environment declares, which these are not (a unit
    // test calls each).
    let _ = ctx.add_function("isSorted", is_sorted);
    let _ = ctx.add_function("sum", sum);
    let _ = ctx.add_function("min", min);
    let _ = ctx.add_function("max", max);
    let _ = ctx.add_function("find", find);
    let _ = ctx.add_function("findAll", find_all);
    ctx
}

fn compare(ftx: &FunctionContext, a: &Cel, b: &Cel) -> Result<std::cmp::Ordering, ExecutionError> {
    a.partial_cmp(b).ok_or_else(|| ftx.error("elements are not comparable"))
}

fn is_sorted(ftx: &FunctionContext, This(list): This<Arc<Vec<Cel>>>) -> Result<bool, ExecutionError> {
    for pair in list.windows(2) {
        if compare(ftx, &pair[0], &pair[1])? == std::cmp::Ordering::Greater {
            return Ok(false);
        }
    }
    Ok(true)
}

fn sum(ftx: &FunctionContext, This(list): This<Arc<Vec<Cel>>>) -> Result<Cel, ExecutionError> {
    let mut ints: i64 = 0;
    let mut floats: Option<f64> = None;
    for v in list.iter() {
        match v {
            Cel::Int(i) => ints = ints.checked_add(*i).ok_or_else(|| ftx.error("integer overflow"))?,
            Cel::Float(f) => *floats.get_or_insert(0.0) += f,
            _ => return Err(ftx.error("sum of a list that is not numeric")),
        }
    }
    Ok(match floats {
        Some(f) => Cel::Float(f + ints as f64),
        None => Cel::Int(ints),
    })
}

fn extreme(ftx: &FunctionContext, list: &[Cel], want: std::cmp::Ordering) -> Result<Cel, ExecutionError> {
    let mut best = list.first().ok_or_else(|| ftx.error("min or max of an empty list"))?;
    for v in &list[1..] {
        if compare(ftx, v, best)? == want {
            best = v;
        }
    }
    Ok(best.clone())
}

fn min(ftx: &FunctionContext, This(list): This<Arc<Vec<Cel>>>) -> Result<Cel, ExecutionError> {
    extreme(ftx, &list, std::cmp::Ordering::Less)
}

fn max(ftx: &FunctionContext, This(list): This<Arc<Vec<Cel>>>) -> Result<Cel, ExecutionError> {
    extreme(ftx, &list, std::cmp::Ordering::Greater)
}

fn regex_of(ftx: &FunctionContext, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ftx.error(e))
}

fn find(ftx: &FunctionContext, This(text): This<Arc<String>>, pattern: Arc<String>) -> Result<Cel, ExecutionError> {
    let re = regex_of(ftx, &pattern)?;
    Ok(string(re.find(&text).map(|m| m.as_str()).unwrap_or_default()))
}

fn find_all(ftx: &FunctionContext, This(text): This<Arc<String>>, pattern: Arc<String>) -> Result<Cel, ExecutionError> {
    let re = regex_of(ftx, &pattern)?;
    Ok(Cel::List(Arc::new(
        re.find_iter(&text).map(|m| string(m.as_str())).collect(),
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn schema() -> Value {
        json!({"type": "object",
            "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('w')", "message": "name must start with w"}],
            "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must be at most maxReplicas"},
                    {"rule": "!has(self.__namespace__) || self.__namespace__ != 'kube-system'",
                     "reason": "FieldValueForbidden", "fieldPath": ".namespace",
                     "messageExpression": "'namespace ' + self.__namespace__ + ' is reserved'"},
                    {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not go down"}],
                "properties": {
                    "replicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "namespace": {"type": "string"},
                    "ratio": {"type": "number", "x-kubernetes-validations": [{"rule": "self * 2.0 < 3.0"}]},
                    "tags": {"type": "array", "items": {"type": "string"},
                             "x-kubernetes-validations": [{"rule": "self.isSorted()", "message": "tags must be sorted"}]},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object",
                                        "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}],
                                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}}}})
    }

    fn obj(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn failing_rules_are_reported_as_upstream_reports_them() {
        let s = schema();
        assert!(rule_errors(&s, "spec.versions[0].schema.openAPIV3Schema").is_empty());
        let good = obj(json!({"replicas": 1, "maxReplicas": 3, "tags": ["a", "b"], "ratio": 1}));
        assert_eq!(messages(&validate(&s, &good, None)), Vec::<String>::new());

        let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x1"},
            "spec": {"replicas": 5, "maxReplicas": 3, "namespace": "kube-system", "tags": ["b", "a"], "ratio": 1.5}});
        assert_eq!(
            messages(&validate(&s, &bad, None)),
            [
                "<nil>: Invalid value: \"object\": name must start with w",
                "spec: Invalid value: \"object\": replicas must be at most maxReplicas",
                "spec.namespace: Forbidden: namespace kube-system is reserved",
                "spec.ratio: Invalid value: \"number\": failed rule: self * 2.0 < 3.0",
                "spec.tags: Invalid value: \"array\": tags must be sorted",
            ]
        );
    }

    #[test]
    fn transition_rules_see_the_old_value_only_on_update() {
        let s = schema();
        let old = obj(json!({"replicas": 3, "maxReplicas": 5, "ports": [{"name": "http", "port": 80}]}));
        // On create, rules with oldSelf do not run.
        assert!(validate(&s, &old, None).is_empty());
        let down = obj(json!({"replicas": 2, "maxReplicas": 5,
                             "ports": [{"name": "https", "port": 443}, {"name": "http", "port": 81}]}));
        assert_eq!(
            messages(&validate(&s, &down, Some(&old))),
            [
                "spec: Invalid value: \"object\": replicas may not go down",
                "spec.ports[1]: Invalid value: \"object\": port is immutable",
            ]
        );
    }

    #[test]
    fn an_unchanged_value_is_not_held_to_a_rule_it_already_broke() {
        let s = schema();
        let old = obj(json!({"replicas": 1, "maxReplicas": 1, "tags": ["b", "a"]}));
        let new = obj(json!({"replicas": 1, "maxReplicas": 2, "tags": ["b", "a"]}));
        assert!(validate(&s, &new, Some(&old)).is_empty());
    }

    #[test]
    fn runtime_errors_name_the_rule() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.missing == 1"}, {"rule": "self.n + 'x' == 'y'"}],
            "properties": {"n": {"type": "integer"}}}}});
        assert_eq!(
            messages(&validate(&s, &obj(json!({"n": 1})), None)),
            [
                "spec: Invalid value: \"object\": no such key: missing evaluating rule: self.missing == 1",
                "spec: Invalid value: \"object\": 'no such overload': call arguments did not match a supported operator, function or macro signature for rule: self.n + 'x' == 'y'",
            ]
        );
    }

    #[test]
    fn definitions_with_bad_rules_are_refused() {
        let s = json!({"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-validations": [
                {"rule": "self.a ==", "message": "m"},
                {"rule": "self.a == 1", "reason": "Nope", "optionalOldSelf": true},
                {"rule": "self.a == 1", "message": " ", "fieldPath": ".b"}],
                "properties": {"a": {"type": "integer"}}},
            "list": {"type": "array", "items": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}});
        let p = "spec.validation.openAPIV3Schema";
        let got = messages(&rule_errors(&s, p));
        let at = |rest: &str| format!("{p}.properties[{rest}");
        assert!(
            got[0].starts_with(&at(
                "list].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within spec.validation.openAPIV3Schema.properties[list]"
            )),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with(&at(
                "spec].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:\"self.a ==\", Message:\"m\""
            )) && got[1].contains("compilation failed: "),
            "{got:#?}"
        );
        assert_eq!(
            got[2..],
            [
                at(
                    "spec].x-kubernetes-validations[1].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
                ),
                at(
                    "spec].x-kubernetes-validations[1].reason: Unsupported value: \"Nope\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
                ),
                at(
                    "spec].x-kubernetes-validations[2].message: Invalid value: \" \": message must be non-empty if specified"
                ),
                at(
                    "spec].x-kubernetes-validations[2].fieldPath: Invalid value: \".b\": fieldPath must be a valid path"
                ),
            ]
        );
    }

    #[test]
    fn rules_whose_cost_could_exceed_the_limit_are_not_run() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.xs.all(x, x >= 0)"},
                {"rule": "self.xs.all(x, self.xs.exists(y, y == x))"}],
            "properties": {"xs": {"type": "array", "items": {"type": "integer"}}}}}});
        let big: Vec<i64> = (0..2000).collect();
        let got = messages(&validate(&s, &obj(json!({"xs": big})), None));
        // One level over 2,000 items is fine; two levels (4 million steps) are refused.
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("call cost exceeds limit for rule: self.xs.all(x, self.xs.exists(y, y == x))"));
        let small: Vec<i64> = (0..50).collect();
        assert!(validate(&s, &obj(json!({"xs": small})), None).is_empty());
        assert_eq!(
            compile("[1,2].map(x, [3].map(y, y)).size() > 0").map(|c| c.loops).ok(),
            Some(2)
        );
    }

    #[test]
    fn expressions_too_deep_to_run_are_refused_not_a_crash() {
        // Each would exhaust a stack when parsed, evaluated or dropped.
        let chain = (0..5000).map(|_| "1").collect::<Vec<_>>().join(" + ");
        let parens = format!("{}1{}", "(".repeat(20000), ")".repeat(20000));
        let lists = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        for deep in [&chain, &parens, &lists] {
            assert!(compile(deep).is_err(), "{}", &deep[..20]);
        }
        // The parser folds repeated negations: not deep.
        assert!(compile(&format!("{}true", "!".repeat(20000))).is_ok());
        // A long but shallow enough one runs.
        let ok = (0..90).map(|_| "1").collect::<Vec<_>>().join(" + ");
        let b = Bindings::new(&[]);
        assert_eq!(b.eval_bool(&format!("{ok} == 90")), Ok(true));
        let s = json!({"type": "object", "x-kubernetes-validations": [{"rule": chain}]});
        assert!(rule_errors(&s, "p")[0].message().contains("nested too deeply"));
    }

    #[test]
    fn property_names_are_escaped_as_upstream_escapes_them() {
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("a.b-c/d").as_deref(), Some("a__dot__b__dash__c__slash__d"));
        assert_eq!(escape("x__y").as_deref(), Some("x__underscores__y"));
        assert_eq!(escape("1st"), None);
        assert_eq!(escape("a b"), None);
        assert_eq!(
            field_path_segments(".spec['a.b'].c"),
            Some(vec!["spec".into(), "a.b".into(), "c".into()])
        );
        assert_eq!(field_path_segments("spec"), None);
        assert_eq!(field_path_segments(".spec['open"), None);
    }

    #[test]
    fn kubernetes_list_and_regex_functions() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.xs.sum() == 6 && self.xs.min() == 1 && self.xs.max() == 3"},
                {"rule": "self.s.find('[0-9]+') == '42' && self.s.findAll('[a-z]').size() == 2"},
                {"rule": "self.s.lowerAscii().startsWith('ab') && ['x','y'].join('-') == 'x-y'"}],
            "properties": {"xs": {"type": "array", "items": {"type": "integer"}}, "s": {"type": "string"}}}}});
        assert_eq!(
            messages(&validate(&s, &obj(json!({"xs": [3, 1, 2], "s": "ab42"})), None)),
            Vec::<String>::new()
        );
    }
}
