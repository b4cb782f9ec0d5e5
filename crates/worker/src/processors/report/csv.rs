//! The csv export: the detail table only (a header row, then one line per row), so any
//! spreadsheet or script reads it as one table; the summaries are in the xlsx and pdf exports.
use super::model::Report;

/// Renders `report` as csv.
pub fn render(report: &Report) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&report.detail.headers)
        .map_err(|e| e.to_string())?;
    for row in &report.detail.rows {
        w.write_record(row.iter().map(|c| c.text()))
            .map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}
