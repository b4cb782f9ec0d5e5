//! Just enough PromQL reading to check a dashboard or an alert rule against real `/metrics` output:
//! the metric selectors an expression uses (name plus `label="value"` / `label=~"a|b"` matchers), the
//! expressions of a Grafana dashboard JSON and of a PrometheusRule template, and the series of a
//! Prometheus text exposition.

/// One `name{label op "value", …}` in an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    /// `(label, op, value)` with op `=`, `!=`, `=~` or `!~`.
    pub matchers: Vec<(String, String, String)>,
}

/// Aggregation operators, which may be followed by `by (…)` before their `(`.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Words that are PromQL syntax, not metric names, when not followed by `(`.
const KEYWORDS: [&str; 10] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
];

/// The metric selectors of `expr`. Grouping clauses (`by (…)`), ranges (`[…]`), function calls and
/// Helm template actions (`{{ … }}`) are skipped.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let text = strip_between(expr, "{{", "}}");
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            i = skip_past(&chars, i, ']');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || ".+-".contains(chars[i]))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            if KEYWORDS.contains(&word.as_str()) {
                if next == Some('(') && !matches!(word.as_str(), "and" | "or" | "unless") {
                    i = skip_past(&chars, j, ')');
                }
                continue;
            }
            if next == Some('(') || AGGREGATIONS.contains(&word.as_str()) {
                continue; // a function call or an aggregation
            }
            let mut matchers = Vec::new();
            if next == Some('{') {
                let end = skip_past(&chars, j, '}');
                let body: String = chars[j + 1..end.saturating_sub(1)].iter().collect();
                matchers = parse_matchers(&body);
                i = end;
            }
            out.push(Selector {
                name: word,
                matchers,
            });
        } else {
            i += 1;
        }
    }
    out
}

fn strip_between(text: &str, open: &str, close: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        match rest[start..].find(close) {
            Some(end) => rest = &rest[start + end + close.len()..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The index just past the first `close` at or after `from`.
fn skip_past(chars: &[char], from: usize, close: char) -> usize {
    chars[from..]
        .iter()
        .position(|c| *c == close)
        .map_or(chars.len(), |p| from + p + 1)
}

fn parse_matchers(body: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_owned();
        let after = rest[name_end..].trim_start();
        let op_len = after.find('"').unwrap_or(after.len());
        let op = after[..op_len].trim().to_owned();
        let value_start = &after[(op_len + 1).min(after.len())..];
        let value_end = value_start.find('"').unwrap_or(value_start.len());
        out.push((name, op, value_start[..value_end].replace("\\\"", "\"")));
        rest = value_start[(value_end + 1).min(value_start.len())..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    out
}

/// Every `"expr"` string of a Grafana dashboard JSON.
pub fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(dashboard, &mut out);
    out
}

/// Every `expr:` of a PrometheusRule YAML template (inline or a `|` block).
pub fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        if rest.trim() != "|" {
            out.push(rest.trim().to_owned());
            continue;
        }
        let indent = line.len() - trimmed.len();
        let block: Vec<&str> = lines[n + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        out.push(block.join(" "));
    }
    out
}

/// The series of a Prometheus text exposition: `(name, labels)`.
pub fn series(exposition: &str) -> Vec<(String, Vec<(String, String)>)> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            let name = l[..end].to_owned();
            let labels = if l[end..].starts_with('{') {
                let close = l.rfind('}').unwrap_or(l.len());
                parse_matchers(&l[end + 1..close])
                    .into_iter()
                    .map(|(k, _, v)| (k, v))
                    .collect()
            } else {
                Vec::new()
            };
            (name, labels)
        })
        .collect()
}

/// Whether some series satisfies `selector`: its name, every `=` matcher, and each alternative of
/// every `=~` matcher (so `cache_layer=~"l1|l2"` needs both an `l1` and an `l2` series).
pub fn satisfied(
    selector: &Selector,
    all: &[(String, Vec<(String, String)>)],
) -> Result<(), String> {
    let named: Vec<_> = all.iter().filter(|(n, _)| *n == selector.name).collect();
    if named.is_empty() {
        return Err(format!("no series named {}", selector.name));
    }
    let equal: Vec<_> = selector
        .matchers
        .iter()
        .filter(|(_, op, _)| op == "=")
        .collect();
    let has = |labels: &[(String, String)], k: &str, v: &str| {
        labels.iter().any(|(lk, lv)| lk == k && lv == v)
    };
    let mut wanted: Vec<Vec<(&str, &str)>> = vec![
        equal
            .iter()
            .map(|(k, _, v)| (k.as_str(), v.as_str()))
            .collect(),
    ];
    for (k, _, alternatives) in selector.matchers.iter().filter(|(_, op, _)| op == "=~") {
        wanted = wanted
            .into_iter()
            .flat_map(|w| {
                alternatives.split('|').map(move |alt| {
                    let mut w = w.clone();
                    w.push((k.as_str(), alt));
                    w
                })
            })
            .collect();
    }
    for w in wanted {
        if !named
            .iter()
            .any(|(_, labels)| w.iter().all(|(k, v)| has(labels, k, v)))
        {
            return Err(format!("no {} series with {w:?}", selector.name));
        }
    }
    Ok(())
}

#[test]
fn reads_selectors_rules_and_series() {
    let found = selectors(
        r#"sum by (le, job_type) (rate(queue_job_duration_seconds_bucket[$__rate_interval])) / clamp_min(sum(rate(cache_hits_total{cache_layer=~"l1|l2", key_pattern="user"}[15m])), 1e-9) > {{ $r.x }} and on() up"#,
    );
    let names: Vec<_> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "queue_job_duration_seconds_bucket",
            "cache_hits_total",
            "up"
        ]
    );
    assert_eq!(
        found[1].matchers,
        [
            ("cache_layer".into(), "=~".into(), "l1|l2".into()),
            ("key_pattern".into(), "=".into(), "user".into())
        ]
    );
    let rules = rule_exprs(
        "  - alert: A\n    expr: a > 1\n  - alert: B\n    expr: |\n      b\n        / c\n    for: 5m\n",
    );
    assert_eq!(rules, ["a > 1", "b / c"]);
    let all =
        series("# HELP x\ncache_hits_total{cache_layer=\"l1\",key_pattern=\"user\"} 3\nup 1\n");
    assert!(satisfied(&found[2], &all).is_ok());
    assert!(
        satisfied(&found[1], &all)
            .expect_err("no l2 series")
            .contains("l2")
    );
}
