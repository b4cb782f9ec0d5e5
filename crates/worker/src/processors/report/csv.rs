//! The csv export: the detail table only (a header row, then one line per row), so any
//! spreadsheet or script reads it as one table; the summaries are in the xlsx and pdf exports.
//!
//! Text cells hold what users typed (task titles, names): a spreadsheet opening the file would run
//! one starting with `=` as a formula (`=HYPERLINK(…)`, DDE payloads). [`neutralise`] applies the
//! OWASP CSV-injection rule to text cells only; numbers are written as numbers, a negative one
//! included, so they stay numbers. (The xlsx export needs no such rule: `write_string` stores a
//! shared-string cell, which no spreadsheet evaluates.)
use std::borrow::Cow;

use super::model::{Cell, Report};

/// Characters that make a spreadsheet read a cell as a formula (OWASP: `=`, `+`, `-`, `@`, tab,
/// carriage return).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Renders `report` as csv.
pub fn render(report: &Report) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&report.detail.headers)
        .map_err(|e| e.to_string())?;
    for row in &report.detail.rows {
        w.write_record(row.iter().map(field))
            .map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// A cell as a csv field: text neutralised, numbers as they are.
fn field(cell: &Cell) -> String {
    match cell {
        Cell::Text(s) => neutralise(s).into_owned(),
        Cell::Int(_) | Cell::Empty => cell.text(),
    }
}

/// `text` with a single quote in front when it starts like a formula, so a spreadsheet shows it as
/// text; any other text unchanged. (Quoting for commas and double quotes is the csv writer's job.)
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::report::model::Table;

    #[test]
    fn text_starting_like_a_formula_gets_a_quote_in_front() {
        for (text, want) in [
            (
                r#"=HYPERLINK("http://x","y")"#,
                r#"'=HYPERLINK("http://x","y")"#,
            ),
            ("+1+2", "'+1+2"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
        ] {
            assert_eq!(neutralise(text), want, "{text:?}");
        }
    }

    #[test]
    fn other_text_is_left_alone() {
        for text in [
            "",
            "Design the rocket",
            "a=b",
            " =1",
            "'=1",
            "2026-11-26 02:30 UTC",
            "ada@example.com",
        ] {
            assert!(
                matches!(neutralise(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn only_text_cells_are_neutralised_and_negative_numbers_stay_numbers() {
        let report = Report {
            title: "T".into(),
            lines: vec![],
            detail: Table {
                name: "Rows".into(),
                headers: vec!["Text".into(), "Number".into(), "Empty".into()],
                rows: vec![
                    vec![Cell::Text("-5".into()), Cell::Int(-5), Cell::Empty],
                    vec![Cell::Text("=1+1".into()), Cell::Int(7), Cell::Empty],
                ],
            },
            summaries: vec![],
        };
        let csv = String::from_utf8(render(&report).expect("csv")).expect("utf-8");
        assert_eq!(csv, "Text,Number,Empty\n'-5,-5,\n'=1+1,7,\n");
    }
}
