//! The rows of a batch: props read from JSON Lines or CSV, typed by the composition's
//! schema, and the output path pattern each row names its file with.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Number, Value};

use crate::spec::Props;

/// One row as read from the file: its props, or why they cannot be used. A bad row fails
/// alone; the others still render.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A JSON object from a JSON Lines file.
    Json(Props),
    /// The cells of a CSV record, by header name, still text.
    Csv(Vec<(String, String)>),
    /// A line that is not a row of props.
    Bad(String),
}

/// Reads a props file: JSON Lines (`.jsonl`, `.ndjson`, `.json`, or a file whose first
/// character is `{`) or CSV (anything else, with a header row). Blank lines are not rows.
pub fn read(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--props-file {}: cannot read it", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let jsonl = match ext.as_str() {
        "jsonl" | "ndjson" | "json" => true,
        "csv" => false,
        _ => text.trim_start().starts_with('{'),
    };
    let rows = if jsonl {
        read_jsonl(&text)
    } else {
        read_csv(&text).with_context(|| format!("--props-file {}", path.display()))?
    };
    if rows.is_empty() {
        bail!(
            "--props-file {}: no rows (JSON Lines: one object per line; CSV: a header row, then one row per variant)",
            path.display()
        );
    }
    Ok(rows)
}

fn read_jsonl(text: &str) -> Vec<Row> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => Row::Json(map),
            Ok(_) => Row::Bad(format!("line {}: not a JSON object", i + 1)),
            Err(e) => Row::Bad(format!("line {}: not valid JSON ({e})", i + 1)),
        })
        .collect()
}

fn read_csv(text: &str) -> anyhow::Result<Vec<Row>> {
    // No comment character: a value may start with `#`, as colours do.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .context("cannot read the CSV header row")?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.iter().any(String::is_empty) {
        bail!("the CSV header row has an empty column name: {headers:?}");
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let row = match record {
            Ok(r) if r.iter().all(|c| c.trim().is_empty()) => continue,
            Ok(r) if r.len() != headers.len() => Row::Bad(format!(
                "line {}: {} values for {} columns",
                r.position().map_or(0, |p| p.line()),
                r.len(),
                headers.len()
            )),
            Ok(r) => Row::Csv(
                headers
                    .iter()
                    .cloned()
                    .zip(r.iter().map(str::to_string))
                    .collect(),
            ),
            Err(e) => Row::Bad(format!("not a CSV record: {e}")),
        };
        rows.push(row);
    }
    Ok(rows)
}

impl Row {
    /// The row's props, CSV text typed by the composition's schema (prop name →
    /// definition with a `type`): numbers, booleans and JSON (`object`, `array`, `json`)
    /// are parsed, everything else stays text; without a schema every value is text. An
    /// empty CSV cell leaves the prop out, so the composition's default applies.
    pub fn props(&self, schema: Option<&Map<String, Value>>) -> Result<Props, String> {
        let cells = match self {
            Row::Json(p) => return Ok(p.clone()),
            Row::Bad(why) => return Err(why.clone()),
            Row::Csv(cells) => cells,
        };
        let mut props = Props::new();
        for (name, text) in cells {
            if text.is_empty() {
                continue;
            }
            let kind = schema
                .and_then(|s| s.get(name))
                .and_then(|d| d.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("string");
            props.insert(name.clone(), typed(name, text, kind)?);
        }
        Ok(props)
    }
}

fn typed(name: &str, text: &str, kind: &str) -> Result<Value, String> {
    let t = text.trim();
    match kind {
        "number" => {
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::Number(i.into()));
            }
            t.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("prop {name}: {text:?} is not a number"))
        }
        "boolean" => match t.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("prop {name}: {text:?} is not true or false")),
        },
        "object" | "array" | "json" => {
            serde_json::from_str(t).map_err(|e| format!("prop {name}: {text:?} is not JSON ({e})"))
        }
        _ => Ok(Value::String(text.to_string())),
    }
}

/// An output path pattern: text with `{row}` and `{PROP}` placeholders.
#[derive(Debug, Clone)]
pub struct Pattern(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Row,
    Prop(String),
}

impl Pattern {
    /// Parses `-o`. A pattern without a placeholder would give every row the same file.
    pub fn parse(pattern: &str) -> anyhow::Result<Self> {
        let mut pieces = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                bail!("-o {pattern}: a `{{` is not closed; placeholders are {{row}} and {{PROP}}");
            };
            let name = rest[open + 1..open + close].trim();
            if name.is_empty() {
                bail!("-o {pattern}: an empty placeholder `{{}}`; use {{row}} or {{PROP}}");
            }
            pieces.push(if name == "row" {
                Piece::Row
            } else {
                Piece::Prop(name.to_string())
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        if !pieces.iter().any(|p| !matches!(p, Piece::Text(_))) {
            bail!(
                "-o {pattern}: every row would write the same file; name each with {{row}} or a prop, e.g. -o 'out/{{row}}.mp4'"
            );
        }
        Ok(Self(pieces))
    }

    /// The path of row `row` (1-based) with these props.
    pub fn expand(&self, row: u32, props: &Props) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Row => out.push_str(&row.to_string()),
                Piece::Prop(name) => {
                    let value = props.get(name).ok_or_else(|| {
                        format!("the output pattern names {{{name}}}, which this row does not have")
                    })?;
                    out.push_str(&file_name_part(&scalar(name, value)?));
                }
            }
        }
        Ok(out)
    }

    /// The path for a row whose props cannot be used: only `{row}` filled in.
    pub fn fallback(&self, row: u32) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Row => row.to_string(),
                Piece::Prop(name) => format!("{{{name}}}"),
            })
            .collect()
    }
}

/// A scalar prop as JSON writes it: `12`, not `12.0`; text without quotes.
fn scalar(name: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".into()),
        Value::Number(n) => Ok(match n.as_f64() {
            // JavaScript's JSON has one number type: an integral value has no fraction.
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        }),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "the output pattern names {{{name}}}, which is not a scalar in this row"
        )),
    }
}

/// A value made safe inside one path component: separators and NUL become `_`, and `.`
/// or `..` alone cannot climb the tree.
fn file_name_part(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "." | ".." => cleaned.replace('.', "_"),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Props {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn patterns_name_rows_and_scalar_props() {
        let p = Pattern::parse("out/{row}-{name}-{score}.mp4").unwrap();
        let props = obj(json!({"name": "Ada", "score": 12.0, "x": [1]}));
        assert_eq!(p.expand(3, &props).unwrap(), "out/3-Ada-12.mp4");
        let props = obj(json!({"name": "a/../b", "score": 1.5}));
        assert_eq!(p.expand(10, &props).unwrap(), "out/10-a_.._b-1.5.mp4");
        assert!(p.expand(1, &obj(json!({"name": "x"}))).is_err());
        let q = Pattern::parse("{x}.mp4").unwrap();
        assert!(q.expand(1, &obj(json!({"x": [1]}))).is_err());
        assert_eq!(q.expand(1, &obj(json!({"x": ".."}))).unwrap(), "__.mp4");
        assert!(Pattern::parse("out.mp4").is_err());
        assert!(Pattern::parse("out/{row.mp4").is_err());
        assert!(Pattern::parse("out/{}.mp4").is_err());
        assert_eq!(p.fallback(4), "out/4-{name}-{score}.mp4");
    }

    #[test]
    fn csv_is_typed_by_the_schema_and_keeps_hashes() {
        let rows = read_csv(
            "name,score,color,on,tags\nAda,12,#ff0000,true,\"[1,2]\"\n\nBob,x,#00f,no,[]\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        let schema = obj(json!({
            "score": {"type": "number"}, "color": {"type": "color"},
            "on": {"type": "boolean"}, "tags": {"type": "array"}
        }));
        assert_eq!(
            rows[0].props(Some(&schema)).unwrap(),
            obj(
                json!({"name": "Ada", "score": 12, "color": "#ff0000", "on": true, "tags": [1, 2]})
            )
        );
        assert!(rows[1].props(Some(&schema)).unwrap_err().contains("score"));
        // Without a schema, text stays text.
        assert_eq!(
            rows[0].props(None).unwrap()["score"],
            Value::String("12".into())
        );
        let rows = read_csv("a,b\n1\n").unwrap();
        assert!(matches!(rows[0], Row::Bad(_)));
    }

    #[test]
    fn json_lines_rows_fail_alone() {
        let rows = read_jsonl("{\"a\":1}\n\n[1]\n{oops\n{\"a\":2}\n");
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], Row::Json(obj(json!({"a": 1}))));
        assert!(matches!(&rows[1], Row::Bad(w) if w.starts_with("line 3")));
        assert!(matches!(&rows[2], Row::Bad(w) if w.starts_with("line 4")));
    }
}
