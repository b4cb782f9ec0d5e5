//! The Excel export: a sheet with the detail table (bold header row, numbers as numbers) and a
//! "Summary" sheet with the title, the report's lines and each summary table.
//!
//! Text goes through `write_string` only: a shared-string cell (`t="s"`, no `<f>` element), which
//! no spreadsheet evaluates, so a task titled `=HYPERLINK(…)` shows as that text. (Never `write`
//! or `write_formula` with user text.)
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::model::{Cell, Report, Table};

/// Renders `report` as an xlsx workbook.
pub fn render(report: &Report) -> Result<Vec<u8>, String> {
    build(report).map_err(|e| e.to_string())
}

fn build(report: &Report) -> Result<Vec<u8>, XlsxError> {
    let bold = Format::new().set_bold();
    let mut book = Workbook::new();
    let detail = book.add_worksheet();
    detail.set_name(&report.detail.name)?;
    write_table(detail, 0, &report.detail, &bold)?;
    detail.set_freeze_panes(1, 0)?;
    detail.autofit();

    let summary = book.add_worksheet();
    summary.set_name("Summary")?;
    summary.write_string_with_format(0, 0, &report.title, &bold)?;
    let mut row: u32 = 1;
    for line in &report.lines {
        summary.write_string(row, 0, line)?;
        row += 1;
    }
    for table in &report.summaries {
        row += 1;
        summary.write_string_with_format(row, 0, &table.name, &bold)?;
        row = write_table(summary, row + 1, table, &bold)?;
    }
    summary.autofit();
    book.save_to_buffer()
}

/// Writes `table` from `first_row`; returns the row after it.
fn write_table(
    sheet: &mut Worksheet,
    first_row: u32,
    table: &Table,
    bold: &Format,
) -> Result<u32, XlsxError> {
    for (col, h) in (0u16..).zip(&table.headers) {
        sheet.write_string_with_format(first_row, col, h, bold)?;
    }
    let mut row = first_row + 1;
    for cells in &table.rows {
        for (col, cell) in (0u16..).zip(cells) {
            match cell {
                Cell::Text(s) => {
                    sheet.write_string(row, col, s)?;
                }
                // Counts and priorities: small integers, exact as f64.
                Cell::Int(n) => {
                    sheet.write_number(row, col, *n as f64)?;
                }
                Cell::Empty => {}
            }
        }
        row += 1;
    }
    Ok(row)
}
